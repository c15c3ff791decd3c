"""Parity of openclap's captioner with msclap's clapcap (``CLAPWrapper.generate_caption``), same random weights.

    python scripts/parity/clapcap_parity.py [--side-python .sidevenv/bin/python] [--clips 3] [--steps 20]

1. (openclap venv) writes a few demo clips as 44.1 kHz WAV files (shorter than 7 s, so msclap's loader
   repeat-pads them deterministically instead of random-cropping).
2. (side venv, ``scripts/parity/setup_sidevenv.sh``) builds msclap 1.3.4's ``ClapCaptionModel`` with the
   clapcap config (HTSAT + transformer mapper, prefix 40, 8 layers, GPT-2 base) from seeded random weights
   -- GPT-2 comes from ``GPT2Config()`` since nothing may be downloaded, with a wider init
   (``--init-std``) so that random logits are not near-ties -- saves it in msclap's checkpoint format
   (``{'model': state_dict}``), and runs msclap's own ``generate_caption`` (beam 1 = greedy, and beam K)
   on the files, recording the token ids msclap decodes, the audio embeddings, the prefixes and the
   teacher-forced logits of the greedy sequence.
3. (openclap venv) converts that checkpoint with ``openclap.convert.clapcap`` into the ``clapcap-2023``
   preset, captions the same files, and compares: token sequences (greedy and beam), audio embeddings,
   prefixes, logits end to end and from msclap's own audio embedding.

msclap pieces replaced because they need the network or compiled extensions: ``from_pretrained("gpt2")``
(random GPT-2 base instead), ``AutoTokenizer.from_pretrained("gpt2")`` (the same GPT-2 BPE files, bundled
with openclap), ``torchaudio.load`` (soundfile; the files are already at 44.1 kHz so no resampling runs).
Exit status 0 when tokens are identical and logits agree within ``--atol``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "src" / "openclap" / "assets" / "demo"
GPT2_FILES = REPO / "src" / "openclap" / "assets" / "tokenizers" / "gpt2"
CLIPS = [
    "4-183992-A-dog.flac",
    "4-160999-A-rain.flac",
    "fluidr3_p040_violin_m071_v110.flac",
    "4-164859-A-rooster.flac",
    "3_theo_0.flac",
]


# ------------------------------------------------------------------------------------------ reference
def reference(
    out_dir: Path, files: list[str], steps: int, beam: int, init_std: float, seed: int, fill_seed: int | None
) -> None:
    """Runs in the side venv: msclap's ClapCaptionModel and generate_caption."""
    import re
    import types

    sys.path.insert(0, str(Path(__file__).parent))
    import numpy as np
    import soundfile as sf
    import torch
    from fixture_state import describe_state, seeded_fill, state_sha256
    from msclap.CLAPWrapper import CLAPWrapper
    from msclap.models import mapper
    from msclap.models.clap import AudioEncoder
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    torch.manual_seed(seed)
    # msclap/configs/config_clapcap.yml values
    audio = AudioEncoder("HTSAT", 768, 1024, 44100, 1024, 320, 64, 50, 8000, 527)
    mapper.GPT2LMHeadModel = types.SimpleNamespace(
        from_pretrained=lambda name: GPT2LMHeadModel(GPT2Config(initializer_range=init_std))
    )
    model = mapper.ClapCaptionModel(
        types.SimpleNamespace(audio_encoder=audio), "gpt2", 40, 40, 1024, 8, True, "transformer", True, True
    ).eval()
    entries = seeded_fill(model, fill_seed) if fill_seed is not None else None  # regenerable (fixtures)
    state = model.state_dict()
    torch.save({"model": state}, out_dir / "clapcap_random.pth")

    tok = GPT2TokenizerFast(
        vocab_file=str(GPT2_FILES / "vocab.json"), merges_file=str(GPT2_FILES / "merges.txt")
    )
    tok.add_special_tokens({"pad_token": "!"})
    decoded: list[list[int]] = []
    plain_decode = tok.decode

    def recording_decode(ids, *a, **k):
        decoded.append([int(i) for i in ids])
        return plain_decode(ids, *a, **k)

    tok.decode = recording_decode
    wrapper = object.__new__(CLAPWrapper)
    wrapper.clapcap, wrapper.tokenizer, wrapper.use_cuda = model, tok, False
    wrapper.args = types.SimpleNamespace(
        normalize_prefix=True, prefix_length=40, duration=7, sampling_rate=44100
    )
    wrapper.np_str_obj_array_pattern = re.compile(r"[SaUO]")
    wrapper.default_collate_err_msg_format = "default_collate: unexpected {}"

    def read_audio(path, resample=True):
        data, rate = sf.read(path, dtype="float32")
        assert rate == 44100, rate
        return torch.from_numpy(np.ascontiguousarray(data)).reshape(1, -1), rate

    wrapper.read_audio = read_audio
    results = {"files": files, "greedy": [], "beam": [], "greedy_text": [], "beam_text": []}
    for f in files:
        for name, k in (("greedy", 1), ("beam", beam)):
            decoded.clear()
            (text,) = wrapper.generate_caption([f], beam_size=k, entry_length=steps)
            # generate_caption sorts the decoded beams; keep the ids of the returned (best) one
            best = next(ids for ids in decoded if plain_decode(ids).capitalize() == text)
            results[name].append(best)
            results[name + "_text"].append(text)
    tensors = {}
    with torch.no_grad():
        wave = torch.stack([wrapper.load_audio_into_tensor(f, 7, False) for f in files])  # (N, samples)
        embeds = model.clap(wave)[0]  # (N, 1024) projected, not normalised
        prefix = model.clap_project(embeds / embeds.norm(2, -1).reshape(-1, 1)).view(-1, 40, 768)
        tensors["audio_embeds"] = embeds
        tensors["prefix"] = prefix
        for i, ids in enumerate(results["greedy"]):
            tokens = torch.tensor(ids)[None]
            inputs = torch.cat([prefix[i : i + 1], model.gpt.transformer.wte(tokens)], dim=1)
            tensors[f"logits_{i}"] = model.gpt(inputs_embeds=inputs).logits[
                0, 39:
            ]  # predicts each generated token
    torch.save(tensors, out_dir / "reference_tensors.pt")
    if entries is not None:
        recipe, constants = describe_state(state, model, entries)
        results["state"] = {
            "seed": fill_seed,
            "wrapper": {"model": None},
            "sha256": state_sha256(state),
            **recipe,
        }
        np.savez_compressed(out_dir / "state_constants.npz", **constants)
    (out_dir / "reference.json").write_text(json.dumps(results, indent=1))


# ------------------------------------------------------------------------------------------- openclap
def write_inputs(out: Path, n: int) -> list[str]:
    """The first ``n`` demo clips as 44.1 kHz float WAV files of just under 7 s (msclap repeat-pads them)."""
    import soundfile as sf

    from openclap.audio.io import load_audio

    files = []
    for name in CLIPS[:n]:
        wave = load_audio(DEMO / name, 44100)[: 7 * 44100 - 1]
        path = out / (Path(name).stem + ".wav")
        sf.write(path, wave, 44100, subtype="FLOAT")
        files.append(str(path))
    return files


def fixture_columns(seed: int = 0, n: int = 512, vocab: int = 50257) -> list[int]:
    """The fixed vocabulary columns whose logits a fixture stores (besides each step's top 16)."""
    import numpy as np

    return sorted(np.random.default_rng(seed).choice(vocab, n, replace=False).tolist())


def write_fixture(out_dir: Path, files: list[str], steps: int, beam: int, dest: Path) -> None:
    """The committed clapcap fixture: state recipe and hash, decoded ids, embeddings, prefixes, logit samples."""
    import numpy as np
    import torch

    ref = json.loads((out_dir / "reference.json").read_text())
    ref_t = torch.load(out_dir / "reference_tensors.pt", weights_only=True)
    constants = np.load(out_dir / "state_constants.npz")
    columns = fixture_columns()
    arrays = {k: constants[k] for k in constants.files}
    arrays["ref/audio_embeds"] = ref_t["audio_embeds"].numpy()
    arrays["ref/prefix"] = ref_t["prefix"].numpy()
    for i in range(len(files)):
        logits = ref_t[f"logits_{i}"]
        top = logits.topk(16, dim=-1).indices
        arrays[f"ref/top_ids_{i}"] = top.numpy()
        arrays[f"ref/top_logits_{i}"] = logits.gather(1, top).numpy()
        arrays[f"ref/column_logits_{i}"] = logits[:, columns].numpy()
    dest.mkdir(parents=True, exist_ok=True)
    meta = {
        "family": "clapcap", "preset": "clapcap-2023", "checkpoint": "clapcap_random.pth", "state": ref["state"],
        "inputs": {"demo_clips": [Path(f).stem for f in files], "how": "write_inputs in clapcap_parity.py"},
        "steps": steps, "beam": beam, "columns_seed": 0,
        "greedy": ref["greedy"], "beam_ids": ref["beam"], "greedy_text": ref["greedy_text"],
        "beam_text": ref["beam_text"], "made_with": "scripts/parity/clapcap_parity.py --fixture (msclap 1.3.4)",
    }  # fmt: skip
    (dest / "clapcap.json").write_text(json.dumps(meta) + "\n")
    np.savez_compressed(dest / "clapcap.npz", **arrays)
    print(f"clapcap fixture -> {dest}/clapcap.{{json,npz}}")


def compare(out_dir: Path, files: list[str], steps: int, beam: int, atol: float) -> int:
    import torch

    from openclap.caption.generate import DecoderStepper, beam_search, greedy
    from openclap.caption.pipeline import load_captioner
    from openclap.convert.clapcap import convert_clapcap_file

    ref = json.loads((out_dir / "reference.json").read_text())
    ref_t = torch.load(out_dir / "reference_tensors.pt", weights_only=True)
    cap = load_captioner("clapcap-2023", checkpoint=out_dir / "clapcap_random.pth")
    _, report = convert_clapcap_file(out_dir / "clapcap_random.pth", cap.config)
    print(report.summary())
    model, stop = cap.model, cap.tokenizer.stop_id

    def with_stop(h):
        return h.tokens + ([stop] if h.finished else [])

    ok = True
    embeds = torch.from_numpy(cap.audio.embed_audio(files))  # (N, D) normalised
    ref_norm = torch.nn.functional.normalize(ref_t["audio_embeds"], dim=-1)
    emb_err = (embeds - ref_norm).abs().max().item()
    print(f"audio embedding (normalised) max |diff|: {emb_err:.2e}")
    rows = {
        "end-to-end (openclap audio tower)": embeds,
        "from msclap's audio embedding": ref_t["audio_embeds"],
    }
    summary = {"audio_embedding_max_abs_diff": emb_err}
    for label, source in rows.items():
        with torch.no_grad():
            prefix = model.prefix(source)
        perr = (prefix - ref_t["prefix"]).abs().max().item()
        g = greedy(DecoderStepper(model.decoder), prefix, stop, steps)
        b = beam_search(
            DecoderStepper(model.decoder), prefix, stop, steps, beam_size=beam, length_penalty=1.0
        )
        same_g = [with_stop(h) == r for h, r in zip(g, ref["greedy"])]
        same_b = [with_stop(hs[0]) == r for hs, r in zip(b, ref["beam"])]
        lerr = scale = 0.0
        for i, ids in enumerate(ref["greedy"]):
            tokens = torch.tensor(ids)[None]
            with torch.no_grad():
                out = model.decoder(
                    inputs_embeds=torch.cat([prefix[i : i + 1], model.embed_tokens(tokens)], dim=1)
                )
            lerr = max(
                lerr, (out.logits[0, model.prefix_length - 1 :] - ref_t[f"logits_{i}"]).abs().max().item()
            )
            scale = max(scale, ref_t[f"logits_{i}"].abs().max().item())
        print(
            f"{label}: prefix max |diff| {perr:.2e}; greedy tokens identical {sum(same_g)}/{len(files)}; "
            f"beam-{beam} tokens identical {sum(same_b)}/{len(files)}; logits max |diff| {lerr:.2e} "
            f"(max |logit| {scale:.1f})"
        )
        summary[label] = {
            "prefix": perr,
            "greedy_same": sum(same_g),
            "beam_same": sum(same_b),
            "logits": lerr,
            "max_logit": scale,
        }
        ok = ok and all(same_g) and all(same_b) and lerr <= atol
    # the user-facing path: CaptionPipeline.caption with beam search, against msclap's returned text
    res = cap.caption(files, generation=cap.generation_config(beam_size=beam, max_length=steps))
    texts = [r.caption for r in res]
    same_text = [t.lower() == rt.strip().lower() for t, rt in zip(texts, ref["beam_text"])]
    print(f"caption() text equal to msclap's generate_caption: {sum(same_text)}/{len(files)}")
    for t, rt in zip(texts, ref["beam_text"]):
        print(f"  openclap {t[:60]!r}\n  msclap   {rt.strip()[:60]!r}")
    summary["caption_text_same"] = sum(same_text)
    (out_dir / "parity_summary.json").write_text(json.dumps(summary, indent=1))
    print("PARITY OK" if ok else "PARITY FAILED")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side-python", default=str(REPO / ".sidevenv" / "bin" / "python"))
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="tokens to generate (msclap entry_length)")
    parser.add_argument("--beam", type=int, default=3)
    parser.add_argument(
        "--init-std", type=float, default=0.02, help="std of the random GPT-2 init (GPT-2's own: 0.02)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--atol", type=float, default=1e-4)
    parser.add_argument("--out", default=None, help="working directory (default: a temporary one)")
    parser.add_argument(
        "--fill-seed",
        type=int,
        default=None,
        help="refill every weight from this seed (fixture_state.seeded_fill): regenerable weights",
    )
    parser.add_argument(
        "--fixture",
        type=Path,
        default=None,
        help="write the committed fixture into this folder (needs --fill-seed; tests/data/parity)",
    )
    parser.add_argument("--reference", default=None, help=argparse.SUPPRESS)  # internal: run the msclap side
    parser.add_argument("--files", nargs="*", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reference:
        reference(
            Path(args.reference), args.files, args.steps, args.beam, args.init_std, args.seed, args.fill_seed
        )
        return 0
    if args.fixture is not None and args.fill_seed is None:
        parser.error("--fixture needs --fill-seed (the fixture's weights must be regenerable)")
    if not Path(args.side_python).is_file():
        print(
            f"side venv python {args.side_python} not found: run scripts/parity/setup_sidevenv.sh",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        out.mkdir(parents=True, exist_ok=True)
        files = write_inputs(out, args.clips)
        cmd = [
            args.side_python,
            __file__,
            "--reference",
            str(out),
            "--steps",
            str(args.steps),
            "--beam",
            str(args.beam),
            "--init-std",
            str(args.init_std),
            "--seed",
            str(args.seed),
            *(["--fill-seed", str(args.fill_seed)] if args.fill_seed is not None else []),
            "--files",
            *files,
        ]
        subprocess.run(cmd, check=True)
        status = compare(out, files, args.steps, args.beam, args.atol)
        if status == 0 and args.fixture is not None:
            write_fixture(out, files, args.steps, args.beam, args.fixture)
        return status


if __name__ == "__main__":
    sys.exit(main())
