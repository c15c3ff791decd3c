"""Cold vs warm start of ``--compile``: a fresh process compiling, a later one loading the cached packages.

    python benchmarks/compile_start.py                        # tiny (random weights), 4 demo clips
    python benchmarks/compile_start.py --model msclap-2023    # the full model (its compile: long on 2 cores)

Each row is a new Python process (``openclap.load(MODEL, pretrained=False, ...)``), so nothing is shared
through memory: eager float32 (the baseline), compile with an empty package cache (cold: compiles and
writes the packages) and compile again with that cache (warm: loads them). Columns: seconds to import
openclap, to load the model (cold: including the compile), to the first audio and text embeddings, and
the steady audio rate afterwards; max abs difference to eager's embeddings. The package cache
(``OPENCLAP_COMPILE_CACHE``) and inductor's kernel cache (``TORCHINDUCTOR_CACHE_DIR``) are fresh temporary
directories, removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _machine import machine_line  # benchmarks/_machine.py (scripts run from benchmarks/)

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "src" / "openclap" / "assets" / "demo"
PROMPTS = ["a dog barks", "rain falls on a tin roof", "a rooster crows at dawn", "waves crash on the shore"]

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np, torch, openclap
torch.set_num_threads(int(sys.argv[4]))
t1 = time.perf_counter()
pipe = openclap.load(sys.argv[1], pretrained=False, compile=sys.argv[2] == "1")
t2 = time.perf_counter()
files = json.loads(sys.argv[3])
audio = pipe.embed_audio(files)
t3 = time.perf_counter()
text = pipe.embed_text(PROMPTS)
t4 = time.perf_counter()
pipe.embed_audio(files)
t5 = time.perf_counter()
np.save(sys.argv[5] + "_audio.npy", audio); np.save(sys.argv[5] + "_text.npy", text)
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "first_audio": t3 - t2, "first_text": t4 - t3,
                  "clips_per_s": len(files) / (t5 - t4)}))
""".replace("PROMPTS", repr(PROMPTS))


def run_child(model: str, compile_: bool, files: list[str], threads: int, out: str, env: dict) -> dict:
    """One fresh process; its timings."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, model, "1" if compile_ else "0", json.dumps(files), str(threads), out],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import numpy as np

    files = [str(p) for p in sorted(DEMO.glob("*.flac"))[: args.clips]]
    print(
        f"{machine_line()}; "
        f"model {args.model} (random weights), {len(files)} demo clips, {len(PROMPTS)} prompts, "
        f"{args.threads} threads"
    )
    with tempfile.TemporaryDirectory() as tmp:
        # Both caches fresh: openclap's packages and inductor's own kernel cache (cold = nothing reused).
        env = {
            **os.environ,
            "OPENCLAP_COMPILE_CACHE": str(Path(tmp) / "cache"),
            "TORCHINDUCTOR_CACHE_DIR": str(Path(tmp) / "inductor"),
        }
        rows = []
        for label, compile_ in (("eager float32", False), ("compile, cold", True), ("compile, warm", True)):
            out = str(Path(tmp) / label.replace(" ", "_").replace(",", ""))
            rows.append((label, run_child(args.model, compile_, files, args.threads, out, env), out))
        ref_audio, ref_text = (np.load(rows[0][2] + f"_{k}.npy") for k in ("audio", "text"))
        print()
        print(
            "| process | import (s) | load (s) | first audio (s) | first text (s) | start to first "
            "results (s) | clips/s after | max abs diff to eager |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for label, t, out in rows:
            diff = max(
                np.abs(np.load(out + "_audio.npy") - ref_audio).max(),
                np.abs(np.load(out + "_text.npy") - ref_text).max(),
            )
            total = t["import"] + t["load"] + t["first_audio"] + t["first_text"]
            print(
                f"| {label} | {t['import']:.1f} | {t['load']:.1f} | {t['first_audio']:.1f} | "
                f"{t['first_text']:.1f} | {total:.1f} | {t['clips_per_s']:.2f} | {diff:.1e} |"
            )
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
