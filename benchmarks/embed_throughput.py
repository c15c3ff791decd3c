"""Files -> embeddings throughput of openclap against msclap's own CLAPWrapper, same files, same weights.

    python benchmarks/embed_throughput.py                    # 7 s 44.1 kHz clips + a mixed folder + prompts
    python benchmarks/embed_throughput.py --profile          # also print torch.profiler / cProfile top entries
    python benchmarks/embed_throughput.py --long-minutes 60  # also: a 1-hour file, peak RSS, planted-sound search
    python benchmarks/embed_throughput.py --threads 1 --clips 4 --mixed 3 --repeats 2   # a small, quick run

Speed options (docs/inference.md): after the msclap table, the same workloads with dynamic int8,
compiled float32 (``compile=True``: compiled once into the package cache, then timed from a warm start
that loads the packages; both start times in the label), bfloat16 autocast and ONNX Runtime, each
against float32 eager on the same weights (speed ratio and minimum cosine to float32), timed after one
warm-up pass whose seconds are shown. Each option's peak RSS comes from a fresh process of its own that
loads the model with that option and embeds every workload once (the timing process holds all of them).

Audio: real ESC-10 recordings (../shared/data) resampled to 44.1 kHz and cut to 7 s, and a mixed folder of
real files at 8 and 16 kHz. Model: msclap-2023 with random weights. When the side venv of the weights
issue exists (``.sidevenv`` or ``../sidevenv`` with msclap), ``benchmarks/_msclap_side.py`` builds msclap's model with
seeded random weights, saves them in msclap's checkpoint format and times
``CLAPWrapper.get_audio_embeddings_per_batch`` / ``get_text_embeddings_per_batch``; openclap then loads
that very checkpoint, so the cosine column compares the same model. Without the side venv (or without
openclap's msclap converter) the msclap column says why it is missing and openclap uses its own seeded
random weights. Peak memory is each process's peak RSS.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import dataclasses
import io
import json
import math
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
from _machine import machine_line  # benchmarks/_machine.py (scripts run from benchmarks/)
from _memory import peak_rss_mb, wait_peak_rss_mb
from htsat_profile import reference_gflop  # benchmarks/htsat_profile.py

import openclap
import openclap.onnx as openclap_onnx
from openclap.bulk import EmbedOptions, embed_to_arrays
from openclap.bulk.speed import quantize_int8
from openclap.onnx.export import export_onnx
from openclap.pipeline import ClapPipeline

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
# msclap's side venv: the repository's own .sidevenv, else one beside the checkout (../sidevenv).
SIDEVENV = next(
    (
        p
        for p in (REPO / ".sidevenv" / "bin" / "python", REPO.parent / "sidevenv" / "bin" / "python")
        if p.exists()
    ),
    REPO / ".sidevenv" / "bin" / "python",
)
# ESC-50 class names (Piczak 2015), the prompts of the paper's zero-shot table.
LABELS = [
    "dog",
    "rooster",
    "pig",
    "cow",
    "frog",
    "cat",
    "hen",
    "insects",
    "sheep",
    "crow",
    "rain",
    "sea_waves",
    "crackling_fire",
    "crickets",
    "chirping_birds",
    "water_drops",
    "wind",
    "pouring_water",
    "toilet_flush",
    "thunderstorm",
    "crying_baby",
    "sneezing",
    "clapping",
    "breathing",
    "coughing",
    "footsteps",
    "laughing",
    "brushing_teeth",
    "snoring",
    "drinking_sipping",
    "door_wood_knock",
    "mouse_click",
    "keyboard_typing",
    "door_wood_creaks",
    "can_opening",
    "washing_machine",
    "vacuum_cleaner",
    "clock_alarm",
    "clock_tick",
    "glass_breaking",
    "helicopter",
    "chainsaw",
    "siren",
    "car_horn",
    "engine",
    "train",
    "church_bells",
    "airplane",
    "fireworks",
    "hand_saw",
]


# One speed option in a process of its own: load, embed every workload once, print the peak RSS in MB. The
# timing process holds every option's model at once, so its own peak says nothing about one option.
MEMORY_CHILD = r"""
import json, sys, torch, openclap
import openclap.onnx as openclap_onnx
spec = json.loads(sys.argv[1])
sys.path.insert(0, spec["benchmarks"])
from _memory import peak_rss_mb
torch.set_num_threads(spec["threads"])
option = spec["option"]
if option == "onnx":
    pipe = openclap_onnx.load(spec["onnx_dir"], threads=spec["threads"])
else:
    kwargs = {"checkpoint": spec["checkpoint"]} if spec["checkpoint"] else {"pretrained": False}
    pipe = openclap.load("msclap-2023", int8=option == "int8", compile=option == "compile",
                         dtype="bfloat16" if option == "bf16" else "float32", **kwargs)
for files in spec["sets"]:
    pipe.embed_audio(files, batch_size=spec["batch_size"])
pipe.embed_text(spec["prompts"])
print(peak_rss_mb())
"""


def option_peak_rss_mb(option: str, spec: dict) -> float:
    """Peak RSS (MB) of a fresh process that embeds every workload once with one speed option."""
    run = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, json.dumps({**spec, "option": option})],
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        print(f"peak RSS of option {option}: the child failed: {run.stderr.strip()[-500:]}")
        return float("nan")
    return float(run.stdout.strip().splitlines()[-1])


def make_sets(folder: Path, clips: int, mixed: int) -> dict[str, list[str]]:
    """7 s 44.1 kHz WAVs made from real ESC-10 audio, and a mixed folder of real files as they are."""
    esc = sorted((DATA / "esc10" / "audio").glob("*.flac"))
    seven = []
    for i in range(clips):
        a, ra = sf.read(esc[2 * i], dtype="float32")
        b, _ = sf.read(esc[2 * i + 1], dtype="float32")
        wave = soxr.resample(np.concatenate([a, b]), ra, 44100)[: 7 * 44100]
        path = folder / f"clip{i:03d}.wav"
        sf.write(path, wave, 44100, subtype="PCM_16")
        seven.append(str(path))
    fsdd = sorted((DATA / "fsdd" / "audio").rglob("*.flac"))
    inst = sorted((DATA / "instruments" / "audio").rglob("*.flac"))
    third = max(1, mixed // 3)
    mixed_files = [str(p) for p in esc[-third:] + fsdd[:third] + inst[: mixed - 2 * third]]
    return {"7s_44k": seven, "mixed": mixed_files}


def timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def matmul_roof() -> float:
    """GFLOP/s of a 2048^2 float32 matmul with the current thread count (best of 5)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    t, _ = timed(lambda: a @ b, 5)
    return 2 * 2048**3 / t / 1e9


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def time_variant(
    variant,
    sets: dict[str, list[str]],
    prompts: list[str],
    fp32: dict[str, np.ndarray],
    temb: np.ndarray,
    batch_size: int,
    repeats: int,
) -> tuple[dict[str, float], dict[str, float], float]:
    """Items/s and min cosine to float32 per workload, after a timed warm-up pass over all of them."""
    t0 = time.perf_counter()
    for files in sets.values():
        variant.embed_audio(files, batch_size=batch_size)
    variant.embed_text(prompts)
    warm = time.perf_counter() - t0
    speeds, cosines = {}, {}
    for name, files in sets.items():
        t, e = timed(lambda files=files: variant.embed_audio(files, batch_size=batch_size), repeats)
        speeds[name], cosines[name] = len(files) / t, float(cosine_rows(e, fp32[name]).min())
    t, e = timed(lambda: variant.embed_text(prompts), repeats)
    speeds["text"], cosines["text"] = len(prompts) / t, float(cosine_rows(e, temb).min())
    return speeds, cosines, warm


def best_msclap(a: dict, b: dict | None) -> dict:
    """msclap's result with each workload's best speed over two side runs."""
    if b is None:
        return a
    out = copy.deepcopy(a)
    for name, entry in out["sets"].items():
        entry["clips_per_s"] = max(entry["clips_per_s"], b["sets"][name]["clips_per_s"])
    out["text"]["texts_per_s"] = max(out["text"]["texts_per_s"], b["text"]["texts_per_s"])
    out["peak_rss_mb"] = max(out["peak_rss_mb"], b["peak_rss_mb"])
    return out


def run_msclap(
    work: Path, sets: dict[str, list[str]], prompts: list[str], repeats: int
) -> tuple[dict | None, str]:
    if not SIDEVENV.exists():
        return (
            None,
            f"side venv {SIDEVENV.parent.parent} not found (scripts/parity/setup_sidevenv.sh builds it)",
        )
    check = subprocess.run(
        [str(SIDEVENV), "-c", "import msclap"], capture_output=True, text=True, check=False
    )
    if check.returncode != 0:
        return None, f"msclap does not import in the side venv: {check.stderr.strip().splitlines()[-1:]}"
    (work / "files.json").write_text(json.dumps(sets))
    (work / "texts.json").write_text(json.dumps(prompts))
    tok = REPO / "src" / "openclap" / "assets" / "tokenizers" / "gpt2"
    cmd = [
        str(SIDEVENV),
        str(REPO / "benchmarks" / "_msclap_side.py"),
        "--out",
        str(work),
        "--tokenizer",
        str(tok),
        "--files-json",
        str(work / "files.json"),
        "--texts-json",
        str(work / "texts.json"),
        "--repeats",
        str(repeats),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0:
        return None, "msclap side run failed: " + proc.stderr.strip()[-600:]
    return json.loads((work / "msclap_result.json").read_text()), ""


def profile_report(pipe, files: list[str]) -> None:
    from torch.profiler import ProfilerActivity, profile

    wave = torch.from_numpy(np.stack([openclap.load_audio(f, pipe.sample_rate) for f in files[:8]]))
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        pipe.model.encode_audio(wave)
    print("\ntorch.profiler, encode_audio of 8 clips (top 12 by self CPU time):")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    prof_c = cProfile.Profile()
    prof_c.enable()
    embed_to_arrays(pipe, files, EmbedOptions(num_workers=0, batch_size=8))
    prof_c.disable()
    s = io.StringIO()
    pstats.Stats(prof_c, stream=s).sort_stats("cumulative").print_stats(15)
    print("cProfile, files -> embeddings in one process (top 15 cumulative):")
    print("\n".join(s.getvalue().splitlines()[:40]))


def long_file_run(work: Path, minutes: float) -> None:
    """A long real-audio file with a dog planted into silence: bounded-memory embedding and search."""
    rate = 16000
    esc = sorted((DATA / "esc10" / "audio").glob("*.flac"))
    ambience = [sf.read(p, dtype="float32")[0] for p in esc if "rain" in p.name or "sea_waves" in p.name]
    dog_path = next(p for p in esc if p.name.endswith("-dog.flac"))
    dog = sf.read(dog_path, dtype="float32")[0]
    at = round(minutes * 60 * 0.61 / 2.5) * 2.5  # on the hop grid of the tiny model's 2.5 s hop
    path = work / "long.flac"
    total = int(minutes * 60 * rate)
    with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as f:  # written block-wise, never whole
        pos, i = 0, 0
        while pos < total:
            clip = 0.05 * ambience[i % len(ambience)]
            block = np.concatenate([clip, np.zeros(rate, np.float32)])[: total - pos]
            lo, hi = int((at - 10) * rate), int((at + 15) * rate)
            s, e = pos, pos + len(block)
            if e > lo and s < hi:  # silence around the planted sound, then the sound
                block[max(lo, s) - s : min(hi, e) - s] = 0.0
                d0, d1 = int(at * rate), int(at * rate) + len(dog)
                if e > d0 and s < d1:
                    block[max(d0, s) - s : min(d1, e) - s] = dog[max(d0, s) - d0 : min(d1, e) - d0]
            f.write(block)
            pos, i = e, i + 1
    print(
        f"\nlong file: {minutes:g} min at {rate} Hz ({path.stat().st_size / 1e6:.0f} MB FLAC), dog planted at {at} s"
    )
    out = work / "long_out"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "openclap",
            "embed",
            str(path),
            "--out",
            str(out),
            "--pool",
            "none",
            "--model",
            "tiny",
            "--num-workers",
            "1",
            "--no-progress",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(work / "long_embed.err").open("w"),  # a file: a pipe left unread while polling could fill
    )
    streamed_rss = wait_peak_rss_mb(proc)  # the embed process and its decode workers
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print("  openclap embed failed:", (work / "long_embed.err").read_text()[-800:])
        return
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); from _memory import peak_rss_mb;"
        f"import openclap; p = openclap.load('tiny'); p.embed_audio([{str(path)!r}]); print(peak_rss_mb())"
    )
    whole = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    whole_rss = float(whole.stdout.strip().splitlines()[-1]) if whole.returncode == 0 else float("nan")
    from openclap.bulk import ChunkStore

    table = ChunkStore(out).read_table()
    pipe = openclap.load("tiny")
    query = pipe.embed_audio([str(dog_path)])[0]
    best = int(np.argmax(table.vectors @ query))
    hit = table.rows[best]
    print(
        f"  openclap embed --pool none (block decoding): {len(table.rows)} windows in {wall:.1f} s, "
        f"peak RSS of the embed processes {streamed_rss:.0f} MB"
    )
    print(
        f"  whole-file pipeline.embed_audio (for comparison): peak RSS {whole_rss:.0f} MB "
        f"(audio alone: {total * 4 / 1e6:.0f} MB as float32)"
    )
    print(
        f"  audio search for the planted dog: best window {hit.start:.1f}-{hit.end:.1f} s "
        f"(planted at {at:.1f} s) -> {'OK' if abs(hit.start - at) < 1e-6 else 'WRONG'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=16, help="7 s 44.1 kHz clips")
    parser.add_argument("--mixed", type=int, default=16, help="files in the mixed folder")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1, help="best of N timings")
    parser.add_argument(
        "--rounds", type=int, default=2, help="msclap and openclap take turns N times; best of each"
    )
    parser.add_argument("--no-msclap", action="store_true", help="skip the msclap column")
    parser.add_argument("--no-int8", action="store_true", help="skip the dynamic int8 rows")
    parser.add_argument(
        "--no-compile", action="store_true", help="skip the torch.compile rows (compiling takes minutes)"
    )
    parser.add_argument("--no-bf16", action="store_true", help="skip the bfloat16 autocast rows")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime rows")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--long-minutes", type=float, default=0.0, help="also run the long-file check (e.g. 60)"
    )
    parser.add_argument("--only-long", action="store_true", help="run only the long-file check")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(machine_line())
    prompts = [f"this is the sound of {label.replace('_', ' ')}" for label in LABELS]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.only_long:
            long_file_run(work, args.long_minutes or 60.0)
            return
        sets = make_sets(work, args.clips, args.mixed)
        ms, why = (
            (None, "skipped (--no-msclap)")
            if args.no_msclap
            else run_msclap(work, sets, prompts, args.repeats)
        )
        pth = work / "msclap_random_2023.pth"
        same_weights = False
        if ms is not None and pth.exists():
            try:
                pipe = openclap.load("msclap-2023", checkpoint=pth)
                same_weights = True
            except Exception as exc:  # noqa: BLE001 - the converter may not exist yet: time openclap anyway
                why = f"openclap could not load msclap's checkpoint ({type(exc).__name__}: {str(exc)[:200]})"
                pipe = openclap.load("msclap-2023", pretrained=False)
        else:
            pipe = openclap.load("msclap-2023", pretrained=False)
        pipe.embed_audio(sets["7s_44k"][:2], batch_size=args.batch_size)  # warm-up
        # msclap and openclap take turns (--rounds): on a shared machine the speed of both drifts by tens of
        # percent from minute to minute, so each side's best over the rounds is compared, not two moments
        best: dict[str, list[float]] = {name: [math.inf, math.inf] for name in sets}
        fp32: dict[str, np.ndarray] = {}
        for round_ in range(args.rounds):
            if round_ > 0 and ms is not None:
                again, _ = run_msclap(work, sets, prompts, args.repeats)
                ms = best_msclap(ms, again)
            for name, files in sets.items():
                t_pipe, fp32[name] = timed(
                    lambda files=files: pipe.embed_audio(files, batch_size=args.batch_size), args.repeats
                )
                opts = EmbedOptions(num_workers=2, batch_size=args.batch_size)
                t_bulk, _ = timed(
                    lambda files=files, opts=opts: embed_to_arrays(pipe, files, opts), args.repeats
                )
                best[name] = [min(best[name][0], t_pipe), min(best[name][1], t_bulk)]
        rows = []
        for name, files in sets.items():
            ms_set = ms["sets"][name] if ms else None
            cos = "n/a"
            if ms_set and same_weights:
                c = cosine_rows(fp32[name], np.load(work / f"msclap_{name}.npy"))
                cos = f"{c.min():.6f} (min)"
            rows.append(
                (
                    f"audio {name} ({len(files)} files)",
                    ms_set["clips_per_s"] if ms_set else None,
                    len(files) / best[name][0],
                    len(files) / best[name][1],
                    cos,
                )
            )
        t_text, temb = timed(lambda: pipe.embed_text(prompts), args.repeats)
        cos = "n/a"
        if ms and same_weights:
            cos = f"{cosine_rows(temb, np.load(work / 'msclap_text.npy')).min():.6f} (min)"
        rows.append(
            (
                f"text prompts ({len(prompts)})",
                ms["text"]["texts_per_s"] if ms else None,
                len(prompts) / t_text,
                None,
                cos,
            )
        )

        # Padding to the longest prompt instead of 77 tokens: the pooled state must not change.
        cfg77 = dataclasses.replace(pipe.config.text, padding="max_length")
        from openclap.text.tokenizer import TextTokenizer

        tok_longest = pipe.tokenizer
        pipe.tokenizer = TextTokenizer(cfg77)
        t77, temb77 = timed(lambda: pipe.embed_text(prompts), args.repeats)
        pipe.tokenizer = tok_longest
        pad_diff = float(np.abs(temb77 - temb).max())

        # Speed options on the same weights, each timed like the float32 baseline after a warm-up pass over
        # every workload (for --compile that pass compiles, once per new batch shape), reported apart. The
        # float32 baseline is timed again after each option and its best so far is the ratio's denominator.
        variants = [("float32 (eager, the default)", lambda: pipe.model, "float32", False, "fp32")]
        if not args.no_int8:
            variants.append(
                (
                    "dynamic int8 (per-channel, heads + merges fp32)",
                    lambda: quantize_int8(pipe.model),
                    "float32",
                    False,
                    "int8",
                )
            )
        if not args.no_compile:
            variants.append(
                (
                    "compiled float32 (AOTInductor)",
                    lambda: copy.deepcopy(pipe.model),
                    "float32",
                    True,
                    "compile",
                )
            )
        if not args.no_bf16:
            variants.append(
                ("bfloat16 autocast (CPU)", lambda: copy.deepcopy(pipe.model), "bfloat16", False, "bf16")
            )
        if not args.no_onnx:  # the exported towers on ONNX Runtime, numpy front end (openclap.onnx)
            variants.append(("ONNX Runtime (float32)", None, "float32", False, "onnx"))
        option_rows, baseline, option_rss = [], None, {}
        memory_spec = {
            "checkpoint": str(pth) if same_weights else None,
            "threads": torch.get_num_threads(),
            "batch_size": args.batch_size,
            "sets": list(sets.values()),
            "prompts": prompts,
            "onnx_dir": str(work / "onnx"),
            "benchmarks": str(Path(__file__).resolve().parent),
        }
        roof = matmul_roof()
        with torch.no_grad():  # FLOPs of one 7 s clip through the audio encoder, for the "of roof" column
            one_clip = torch.zeros(1, 7 * pipe.config.audio.frontend.sample_rate)
            gflop_7s = reference_gflop(pipe.model.audio_encoder, pipe.model.audio_frontend(one_clip))
        for label, make_model, dtype, compile_, option in variants:
            if make_model is None:
                export_onnx(pipe, work / "onnx")
                variant = openclap_onnx.load(work / "onnx", threads=torch.get_num_threads())
            elif (
                compile_
            ):  # compile once (cold: compiles into the cache), then a warm start loads the packages
                t0 = time.perf_counter()
                ClapPipeline(make_model(), pipe.tokenizer, compile=True)
                cold = time.perf_counter() - t0
                t0 = time.perf_counter()
                variant = ClapPipeline(make_model(), pipe.tokenizer, compile=True)
                label = f"{label}, warm (start: cold {cold:.0f} s, warm {time.perf_counter() - t0:.1f} s)"
            else:
                variant = ClapPipeline(make_model(), pipe.tokenizer, dtype=dtype, compile=compile_)
            speeds, cosines, warm = time_variant(
                variant, sets, prompts, fp32, temb, args.batch_size, args.repeats
            )
            if baseline is None:
                eager, baseline = variant, speeds
            else:  # float32 timed again right after the option: its ratio compares one moment, not two
                again, _, _ = time_variant(eager, sets, prompts, fp32, temb, args.batch_size, args.repeats)
                baseline = {k: max(baseline[k], again[k]) for k in baseline}
            option_rss[label] = option_peak_rss_mb(option, memory_spec)  # after the option's own run
            for work_name, speed in speeds.items():
                work_label = f"audio {work_name}" if work_name in sets else "text prompts"
                option_rows.append(
                    (label, work_label, speed, speed / baseline[work_name], cosines[work_name], warm)
                )

        print()
        print(
            "| workload | msclap CLAPWrapper /s | openclap embed_audio/embed_text /s | openclap bulk (2 decode workers) /s | speed-up | cosine to msclap |"
        )
        print("|---|---|---|---|---|---|")
        for label, m, o, b, c in rows:
            fast = max(o, b or 0)
            sp = f"{fast / m:.2f}x" if m else "n/a"
            print(
                f"| {label} | {f'{m:.2f}' if m else 'n/a'} | {o:.2f} | {f'{b:.2f}' if b else '-'} | {sp} | {c} |"
            )
        own = option_rss.get("float32 (eager, the default)")
        print(
            "\npeak RSS: "
            + (f"msclap process {ms['peak_rss_mb']:.0f} MB, " if ms else "")
            + (f"openclap float32 in a process of its own {own:.0f} MB, " if own else "")
            + f"this timing process (every option's model at once) {peak_rss_mb():.0f} MB"
        )
        if ms is None or not same_weights:
            print(f"msclap column: {why}")
        print(
            f"text padded to the longest prompt vs to 77 tokens: {len(prompts) / t_text:.1f} vs {len(prompts) / t77:.1f} "
            f"prompts/s, max |difference| of the embeddings {pad_diff:.2e}"
        )
        if option_rows:
            roof = max(roof, matmul_roof())  # measured before and after the rows: the quieter one
            print(
                f"\nroof: a 2048^2 float32 matmul ran at {roof:.0f} GFLOP/s with {torch.get_num_threads()} threads; "
                f"HTSAT-tiny (msclap-2023) is {gflop_7s:.2f} GFLOP per 7 s clip (torch.utils.flop_counter)"
            )
            print(
                "| speed option (CPU) | workload | /s | vs float32 | min cosine to float32 | warm-up pass (s) "
                "| of roof | peak RSS, own process (MB) |"
            )
            print("|---|---|---|---|---|---|---|---|")
            for label, work_name, speed, ratio, c, warm in option_rows:
                frac = f"{speed * gflop_7s / roof:.0%}" if work_name == "audio 7s_44k" else "-"
                print(
                    f"| {label} | {work_name} | {speed:.2f} | {ratio:.2f}x | {c:.6f} | {warm:.0f} | {frac} "
                    f"| {option_rss[label]:.0f} |"
                )
        if args.profile:
            profile_report(pipe, sets["7s_44k"])
        if args.long_minutes > 0:
            long_file_run(work, args.long_minutes)


if __name__ == "__main__":
    main()
