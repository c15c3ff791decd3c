"""Load test of `openclap serve`: N clients for T seconds on mixed endpoints, with and without a client
sending malicious requests, plus the peak memory of the issue-14 FLAC (60 s, 8 channels, 655,350 Hz).

    python benchmarks/serve_load.py [--clients 16] [--seconds 30] [--model tiny] [--work DIR]

Starts the real command (``python -m openclap serve``, token from $OPENCLAP_TOKEN) over an index of
the bundled demo clips, then runs two phases of T seconds each: honest clients only (the baseline),
then the same clients plus one that cycles through the attacks of issue 14's table. It prints
requests/s, p50/p99 latency of the honest requests, errors (an honest request that did not get 200,
or an attack that did not get its expected 4xx), and the server's RSS before, peak (VmHWM) and after.
Last, the 343 KB FLAC: the server's peak RSS around one upload of it, and ``load_audio``'s peak RSS on
it with the budget lifted, against one-read decoding (what load_audio did before) in the same run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf
from _memory import reset_peak, rss_mb  # benchmarks/_memory.py (scripts run from benchmarks/)

import openclap

DEMO = Path(openclap.__file__).parent / "assets" / "demo"
TOKEN = "load-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def issue_flac(path: Path) -> Path:
    """60 s of a constant value, 8 channels at 655,350 Hz: ~343 KB of FLAC, 1.26 GB as float32."""
    if not path.exists():
        with sf.SoundFile(path, "w", samplerate=655_350, channels=8, format="FLAC", subtype="PCM_16") as f:
            block = np.full((655_350, 8), 1000, np.int16)
            for _ in range(60):
                f.write(block)
    return path


def start_server(work: Path, model: str) -> tuple[subprocess.Popen, str]:
    index = work / "index"
    if not index.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "openclap",
                "index",
                "build",
                str(DEMO),
                "--out",
                str(index),
                "--model",
                model,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "openclap",
            "serve",
            "--index",
            str(index),
            "--port",
            str(port),
            "--model",
            model,
        ],
        env={**os.environ, "OPENCLAP_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("openclap serve did not come up")
        time.sleep(0.3)


def honest_request(client: httpx.Client, rng: random.Random, clips: list[Path]) -> int:
    clip = rng.choice(clips)
    kind = rng.choice(["text", "search", "classify", "audio", "search_audio", "health"])
    if kind == "text":
        return client.post(
            "/embed/text", json={"texts": [f"a sound number {rng.randrange(1000)}"]}
        ).status_code
    if kind == "search":
        return client.get(
            "/search", params={"q": rng.choice(["rain", "a dog", "fire"]), "top_k": 5}
        ).status_code
    files = {"file": (clip.name, clip.read_bytes())}
    if kind == "classify":
        labels = ["rain", "fire", "rooster", f"label {rng.randrange(50)}"]
        return client.post("/classify", files=files, data={"labels": labels}).status_code
    if kind == "audio":
        return client.post("/embed/audio", files=files).status_code
    if kind == "search_audio":
        return client.post("/search/audio", files=files, params={"top_k": 3}).status_code
    return client.get("/health").status_code


def attacks(big_flac: bytes) -> list[tuple[str, int, object]]:
    """(name, expected status, request(client, url) -> status) for the rows of issue 14's table."""

    def chunked_200mb(client, url):
        def body():
            yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
            for _ in range(200 * 16):
                yield b"\0" * 65536

        try:
            return client.post(
                "/embed/audio",
                content=body(),
                headers={"Content-Type": "multipart/form-data; boundary=x"},
            ).status_code
        except httpx.HTTPError:
            return 413  # the server answered 413 and closed while we were still sending

    def no_token_50mb(client, url):
        try:
            return httpx.post(
                url + "/embed/text",
                content=b"[" * 50_000_000,
                headers={"Content-Type": "application/json"},
                timeout=30,
            ).status_code
        except httpx.HTTPError:
            return 401  # answered 401 and closed before the body was sent

    return [
        (
            "flac 8ch 655 kHz",
            422,
            lambda c, u: c.post("/embed/audio", files={"file": ("x.flac", big_flac)}).status_code,
        ),
        (
            "format-spec template",
            200,
            lambda c, u: (
                c.post(
                    "/classify",
                    files={"file": ("a.flac", (DEMO / "3_theo_0.flac").read_bytes())},
                    data={"labels": ["a", "b"], "template": "{{}}{:>10000000}"},
                ).status_code
            ),
        ),
        (
            "lone surrogate",
            422,
            lambda c, u: (
                c.post(
                    "/embed/text",
                    content=b'{"texts": ["\\ud800"]}',
                    headers={"Content-Type": "application/json"},
                ).status_code
            ),
        ),
        ("chunked 200 MB", 413, chunked_200mb),
        ("no token, 50 MB", 401, no_token_50mb),
        (
            "256 x 96k chars",
            413,
            lambda c, u: c.post("/embed/text", json={"texts": ["a" * 96_000] * 256}).status_code,
        ),
        (
            "foreign Host",
            400,
            lambda c, u: (
                c.get("/search", params={"q": "x"}, headers={"Host": "attacker.example"}).status_code
            ),
        ),
        ("top_k -1", 422, lambda c, u: c.get("/search", params={"q": "x", "top_k": -1}).status_code),
        ("NUL in path", 404, lambda c, u: c.get("/audio", params={"path": "a\0.txt"}).status_code),
    ]


def attacker(url: str, stop: float, big_flac: bytes, out) -> None:
    """Cycle through the attacks until ``stop`` (in its own process: building 200 MB bodies must not
    hold the honest clients' GIL); puts (attacks sent, errors) on ``out``."""
    todo = attacks(big_flac)
    sent, errors = 0, []
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
        while time.time() < stop:
            name, expected, send = todo[sent % len(todo)]
            sent += 1
            try:
                status = send(client, url)
            except httpx.HTTPError as exc:
                status = repr(exc)
            if status != expected:
                errors.append(f"{name}: got {status}, expected {expected}")
    out.put((sent, errors))


def run_phase(url: str, pid: int, clients: int, seconds: float, malicious: bool, big_flac: bytes) -> dict:
    clips = sorted(DEMO.glob("*.flac"))
    latencies: list[float] = []
    errors: list[str] = []
    attack_log: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    rss_before, _ = rss_mb(pid)
    reset_peak(pid)

    def honest(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                try:
                    status = honest_request(client, rng, clips)
                except httpx.HTTPError as exc:
                    status = repr(exc)
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    if status != 200:
                        errors.append(f"honest: {status}")

    threads = [threading.Thread(target=honest, args=(i,)) for i in range(clients)]
    attack = None
    if malicious:
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        attack = ctx.Process(target=attacker, args=(url, time.time() + seconds, big_flac, queue))
        attack.start()
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if attack is not None:
        sent, attack_errors = queue.get(timeout=300)
        attack.join()
        attack_log.extend(["attack"] * sent)
        errors.extend(attack_errors)
    wall = time.monotonic() - t0
    rss_after, peak = rss_mb(pid)
    lat = np.array(latencies) * 1000
    return {
        "phase": "honest + attacker" if malicious else "honest only",
        "requests": len(latencies),
        "req_per_s": len(latencies) / wall,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
        "attacks": len(attack_log),
        "errors": errors,
        "rss_before_mb": rss_before,
        "rss_peak_mb": peak,
        "rss_after_mb": rss_after,
    }


DECODE_CHILD = """
import sys, numpy as np, soundfile as sf
sys.path.insert(0, sys.argv[3])  # benchmarks/, for _memory (VmHWM: ru_maxrss would include the parent's)
from _memory import peak_rss_mb
from openclap.audio.io import DecodeBudget, load_audio
base = peak_rss_mb()
if sys.argv[2] == "one-read":
    data = sf.read(sys.argv[1], dtype="float32", always_2d=True)[0]
    mono = data.mean(axis=1, dtype=np.float64).astype(np.float32)
else:
    mono = load_audio(sys.argv[1], 44100, budget=DecodeBudget(max_samples=None, max_rate=700_000))
print(peak_rss_mb() - base)
"""


def decode_peak(path: Path, how: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", DECODE_CHILD, str(path), how, str(Path(__file__).resolve().parent)],
        check=False,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--model", default="tiny")
    parser.add_argument(
        "--work", default=None, help="folder for the index and the FLAC (default: a temp dir)"
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="openclap-serve-load-"))
    work.mkdir(parents=True, exist_ok=True)
    flac = issue_flac(work / "issue14_8ch_655350hz_60s.flac")
    big = flac.read_bytes()
    proc, url = start_server(work, args.model)
    try:
        # the 343 KB FLAC alone: the server's peak RSS around one upload
        before, _ = rss_mb(proc.pid)
        reset_peak(proc.pid)
        t0 = time.perf_counter()
        r = httpx.post(url + "/embed/audio", files={"file": (flac.name, big)}, headers=AUTH, timeout=120)
        flac_row = {
            "status": r.status_code,
            "seconds": time.perf_counter() - t0,
            "server_peak_extra_mb": rss_mb(proc.pid)[1] - before,
            "detail": r.json().get("detail", "")[:120]
            if r.headers.get("content-type", "").startswith("application/json")
            else r.text[:120],
        }
        phases = [
            run_phase(url, proc.pid, args.clients, args.seconds, malicious, big)
            for malicious in (False, True)
        ]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    decode = {how: decode_peak(flac, how) for how in ("one-read", "blocks")}

    print(
        f"\n`openclap serve` load, {args.clients} clients x {args.seconds:g} s per phase, model {args.model}, "
        f"{os.cpu_count()} CPUs"
    )
    print(
        "| phase | requests | req/s | p50 ms | p99 ms | attacks sent | errors | RSS before MB | peak MB | after MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in phases:
        print(
            f"| {p['phase']} | {p['requests']} | {p['req_per_s']:.1f} | {p['p50_ms']:.0f} | {p['p99_ms']:.0f} | "
            f"{p['attacks']} | {len(p['errors'])} | {p['rss_before_mb']:.0f} | {p['rss_peak_mb']:.0f} | "
            f"{p['rss_after_mb']:.0f} |"
        )
    for p in phases:
        for e in sorted(set(p["errors"]))[:10]:
            print(f"  error ({p['phase']}): {e}")
    print(f"\n343 KB FLAC (60 s, 8 ch, 655,350 Hz), {len(big)} bytes")
    print("| what | result |")
    print("|---|---|")
    print(
        f"| server upload (default limits) | {flac_row['status']} in {flac_row['seconds']:.2f} s, "
        f"peak RSS +{flac_row['server_peak_extra_mb']:.0f} MB: {flac_row['detail']} |"
    )
    print(f"| load_audio, budget lifted, one-read decode (old) | peak RSS +{decode['one-read']:.0f} MB |")
    print(f"| load_audio, budget lifted, block decode (new) | peak RSS +{decode['blocks']:.0f} MB |")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"phases": phases, "flac": flac_row, "decode": decode}, indent=1)
        )


if __name__ == "__main__":
    main()
