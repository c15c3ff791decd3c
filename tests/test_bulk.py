"""Bulk embedding job: parallel decoding, chunks, resume (also after kill -9), errors, shards, merge."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import openclap
from openclap.audio.io import load_audio
from openclap.audio.windows import split_windows
from openclap.bulk import ChunkStore, EmbedOptions, embed_to_arrays, merge_outputs, run_embed_job
from openclap.bulk.reader import WindowPlan, iter_file_windows
from openclap.bulk.store import OutputBusyError
from openclap.cli import main as cli_main


@pytest.fixture(scope="module")
def pipe():
    return openclap.load("tiny")


@pytest.fixture(scope="module")
def esc_files(shared_data) -> list[str]:
    return [str(p) for p in sorted((shared_data / "esc10" / "audio").glob("*.flac"))]


@pytest.fixture(scope="module")
def fsdd_files(shared_data) -> list[str]:
    return [str(p) for p in sorted((shared_data / "fsdd" / "audio").glob("*.flac"))]


def _concat_file(path: Path, sources: list[str], rate: int, gap_s: float = 0.37) -> np.ndarray:
    parts = []
    for s in sources:
        x, r = sf.read(s, dtype="float32")
        assert r == rate
        parts += [x, np.zeros(int(gap_s * rate), np.float32)]
    wave = np.concatenate(parts)
    sf.write(path, wave, rate, subtype="PCM_16")
    return wave


@pytest.mark.parametrize("model_rate", [8000, 16000])
def test_streamed_windows_equal_split_windows(tmp_path, fsdd_files, model_rate):
    """Block-wise windowing of a long file gives exactly the windows of the whole decoded waveform."""
    path = tmp_path / "long.flac"
    _concat_file(path, fsdd_files[:40], 8000)  # ~25 s at 8 kHz, not a multiple of the hop
    n, hop = int(2.0 * model_rate), int(0.7 * model_rate)
    plan = WindowPlan(model_rate, n, hop, "repeat", block_seconds=1.3, max_piece_windows=5)
    got_w, got_s = [], []
    for w, s in iter_file_windows(path, plan):
        assert len(w) <= 5
        got_w.append(w)
        got_s += s
    ref_w, ref_s = split_windows(torch.from_numpy(load_audio(path, model_rate)), n, hop, "repeat", model_rate)
    got = np.concatenate(got_w)
    assert got.shape == tuple(ref_w.shape)
    assert got_s == ref_s
    assert np.abs(got - ref_w.numpy()).max() < (1e-6 if model_rate == 8000 else 1e-4)


def test_short_file_padded_like_split_windows(fsdd_files):
    plan = WindowPlan(8000, 8000, 4000, "repeat", block_seconds=0.1)
    ((w, s),) = list(iter_file_windows(fsdd_files[0], plan))
    ref_w, ref_s = split_windows(
        torch.from_numpy(load_audio(fsdd_files[0], 8000)), 8000, 4000, "repeat", 8000
    )
    assert s == ref_s and np.array_equal(w, ref_w.numpy())


def test_job_matches_pipeline_reports_errors_and_resumes(tmp_path, pipe, esc_files, fsdd_files):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    inputs = esc_files[:9] + fsdd_files[:4] + [str(bad), str(silent)]
    out = tmp_path / "out"
    opts = EmbedOptions(num_workers=2, chunk_files=4, batch_size=6)
    report = run_embed_job(pipe, inputs, out, opts)
    assert (report.total, report.embedded, report.failed, report.skipped) == (15, 13, 2, 0)

    table = ChunkStore(out).read_table()
    paths = [r.path for r in table.rows]
    assert sorted(paths) == sorted(str(Path(p).resolve()) for p in esc_files[:9] + fsdd_files[:4])
    ref = pipe.embed_audio(paths)
    assert np.allclose((table.vectors * ref).sum(1), 1.0, atol=1e-5)
    r0 = next(r for r in table.rows if r.path.endswith(Path(fsdd_files[0]).name))
    assert r0.sample_rate == 8000 and 0.1 < r0.duration < 2.0 and r0.status == "ok"

    with open(out / "errors.csv", newline="") as f:
        errors = {Path(r["path"]).name: r["reason"] for r in csv.DictReader(f)}
    assert set(errors) == {"broken.wav", "silent.wav"}
    assert "broken.wav" in errors["broken.wav"] and "silent" in errors["silent.wav"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["files"], manifest["rows"], manifest["errors"], manifest["pool"]) == (13, 13, 2, "mean")
    assert len(manifest["chunks"]) == 4  # 15 files, 4 per chunk

    again = run_embed_job(pipe, inputs, out, opts)
    assert (again.skipped, again.embedded, again.failed) == (15, 0, 0)

    # A changed file (new mtime) is embedded again and its old rows are superseded, not duplicated.
    changed = tmp_path / "copy.flac"
    changed.write_bytes(Path(esc_files[0]).read_bytes())
    run_embed_job(pipe, inputs + [str(changed)], out, opts)
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    third = run_embed_job(pipe, inputs + [str(changed)], out, opts)
    assert (third.embedded, third.skipped) == (1, 15)
    table = ChunkStore(out).read_table()
    assert len(table.rows) == len({r.path for r in table.rows}) == 14

    with pytest.raises(ValueError, match="other settings"):
        run_embed_job(pipe, inputs, out, EmbedOptions(pool="max", num_workers=0))


def test_pool_none_and_max(pipe, esc_files, fsdd_files, tmp_path):
    long_path = tmp_path / "long.flac"
    _concat_file(long_path, esc_files[:3], 16000)  # ~16 s -> several 5 s windows
    files = [str(long_path), fsdd_files[0]]
    vecs, rows = embed_to_arrays(pipe, files, EmbedOptions(pool="none", num_workers=0, block_seconds=3.0))
    results = pipe.embed_audio(files, return_windows=True)
    ref = np.concatenate([r.window_embeddings for r in results])
    assert len(rows) == len(ref) == sum(len(r.spans) for r in results) > 3
    assert np.abs(vecs - ref).max() < 1e-4
    assert [(r.start, r.end) for r in rows] == [(s.start, s.end) for r in results for s in r.spans]
    maxed, _ = embed_to_arrays(pipe, files, EmbedOptions(pool="max", num_workers=0))
    long_windows = results[0].window_embeddings.max(axis=0)
    assert np.allclose(maxed[0], long_windows / np.linalg.norm(long_windows), atol=1e-5)


def test_rows_follow_input_order_not_path_order(pipe, esc_files, tmp_path):
    """Rows come in the order the inputs were given, whichever path sorts first on this machine."""
    late = tmp_path / "zzz.flac"  # sorts after /tmp/... and before nothing in particular
    early = tmp_path / "aaa.flac"
    _concat_file(late, esc_files[:1], 16000)
    _concat_file(early, esc_files[1:2], 16000)
    for order in ([late, early], [early, late], [late, early, late]):
        _, rows = embed_to_arrays(pipe, order, EmbedOptions(num_workers=0))
        assert [Path(r.path).name for r in rows] == [p.name for p in dict.fromkeys(order)]


def test_shards_are_disjoint_and_merge(tmp_path, pipe, esc_files):
    files = esc_files[:14]
    dirs = []
    for i in range(2):
        d = tmp_path / f"shard{i}"
        run_embed_job(pipe, files, d, EmbedOptions(num_workers=0, shard=(i, 2), chunk_files=3))
        dirs.append(d)
    parts = [{r.path for r in ChunkStore(d).read_table().rows} for d in dirs]
    assert parts[0].isdisjoint(parts[1]) and len(parts[0] | parts[1]) == 14 and parts[0] and parts[1]
    manifest = merge_outputs(dirs, tmp_path / "merged")
    assert manifest["files"] == 14 and manifest["rows"] == 14
    merged = ChunkStore(tmp_path / "merged").read_table()
    whole, rows = embed_to_arrays(pipe, files, EmbedOptions(num_workers=0))
    order = {r.path: i for i, r in enumerate(rows)}
    idx = [order[r.path] for r in merged.rows]
    assert np.allclose(merged.vectors, whole[idx], atol=1e-6)


HOLD_LOCK = """import sys
from openclap.bulk import ChunkStore
with ChunkStore(sys.argv[1]).exclusive():
    print("held", flush=True)
    sys.stdin.read()
"""


def test_second_writer_of_one_directory_is_refused_and_a_killed_holder_frees_it(
    tmp_path, pipe, esc_files, capsys
):
    # Another job (a real process) holds the directory and has a chunk in flight: a second job must not
    # start (it would delete that chunk as a killed run's leftovers); once the holder dies, even by
    # SIGKILL, the directory is free again.
    out = tmp_path / "out"
    (out / "chunks").mkdir(parents=True)
    in_flight = out / "chunks" / "c00000000000000000001.npy.tmp"
    in_flight.write_bytes(b"half a chunk")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLD_LOCK,
            str(out),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputBusyError, match=r"being written by another openclap job.*own --out"):
            run_embed_job(pipe, esc_files[:2], out, EmbedOptions(num_workers=0))
        run_embed_job(pipe, esc_files[2:3], tmp_path / "source", EmbedOptions(num_workers=0))
        with pytest.raises(OutputBusyError, match=str(out)):
            merge_outputs([tmp_path / "source"], out)
        code = cli_main(["embed", *esc_files[:2], "--out", str(out), "--model", "tiny", "--num-workers", "0"])
        assert code == 2 and "being written by another openclap job" in capsys.readouterr().err
        assert in_flight.read_bytes() == b"half a chunk" and not (out / "job.json").exists()
    finally:
        holder.kill()
        holder.wait()
    report = run_embed_job(pipe, esc_files[:2], out, EmbedOptions(num_workers=0))
    assert report.embedded == 2 and not in_flight.exists()  # now a dead job's leftover: cleaned


def test_cli_npz_and_exit_codes(tmp_path, esc_files, capsys):
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"not audio at all")
    out = tmp_path / "small.npz"
    code = cli_main(
        [
            "embed",
            *esc_files[:3],
            str(bad),
            "--out",
            str(out),
            "--num-workers",
            "0",
            "--pool",
            "none",
            "--model",
            "tiny",
        ]
    )
    assert code == 1
    data = np.load(out)
    assert data["embeddings"].shape == (3, 64) and len(data["paths"]) == 3
    assert list(data["error_paths"]) == [str(bad.resolve())] and "bad.flac" in data["error_reasons"][0]
    assert cli_main(["embed", "--out", str(tmp_path / "x"), "--shard", "3/2", *esc_files[:1]]) == 2


def _run_cli(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "openclap", *args], env=env, start_new_session=True, **kw)


def test_kill9_then_resume_has_no_duplicate_or_missing_rows(tmp_path, pipe, esc_files, fsdd_files):
    files = esc_files[:60] + fsdd_files[:60]
    listing = tmp_path / "files.txt"
    listing.write_text("\n".join(files) + "\n")
    out = tmp_path / "out"
    args = [
        "embed",
        str(listing),
        "--out",
        str(out),
        "--chunk-files",
        "4",
        "--num-workers",
        "1",
        "--no-progress",
        "--model",
        "tiny",
    ]
    proc = _run_cli(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((out / "chunks").glob("*.csv"))) >= 2 if (out / "chunks").is_dir() else False:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the job finished before it could be killed; make it longer"
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its decoding worker
    finally:
        proc.wait(timeout=30)
    committed = ChunkStore(out).read_table(with_vectors=False)
    assert 0 < len(committed.rows) < len(files)
    assert not (out / "manifest.json").exists()

    done = _run_cli(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = done.communicate(timeout=300)
    assert done.returncode == 0, stderr.decode()[-2000:]
    summary = json.loads(stdout.decode().strip().splitlines()[-1])
    assert summary["skipped"] >= len(committed.rows) and summary["skipped"] + summary["embedded"] == len(
        files
    )

    table = ChunkStore(out).read_table()
    paths = [r.path for r in table.rows]
    assert len(paths) == len(set(paths)) == len(files)
    assert {str(Path(p).resolve()) for p in paths} == {str(Path(p).resolve()) for p in files}
    assert not list((out / "chunks").glob("*.tmp"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"] == len(files) and manifest["errors"] == 0
    pick = [0, len(paths) // 2, len(paths) - 1]
    ref = pipe.embed_audio([paths[i] for i in pick])
    assert np.allclose((table.vectors[pick] * ref).sum(1), 1.0, atol=1e-5)


def test_long_recording_search_finds_planted_window(tmp_path, pipe, esc_files, shared_data):
    """A 12-minute file (quiet real ambience, a dog clip planted into silence at 400 s): search finds 400 s."""
    from openclap.index import build_index_from_files

    rate = 16000
    rng = np.random.default_rng(0)
    background = [sf.read(p, dtype="float32")[0] for p in esc_files if "rain" in p or "sea_waves" in p][:20]
    minutes = 12
    wave = np.zeros(minutes * 60 * rate, np.float32)
    pos = 0
    while pos < len(wave):  # quiet real ambience, 1 s gaps of silence
        clip = 0.05 * background[int(rng.integers(len(background)))]
        end = min(len(wave), pos + len(clip))
        wave[pos:end] = clip[: end - pos]
        pos = end + rate
    dog = next(p for p in esc_files if p.endswith("-dog.flac"))
    planted, _ = sf.read(dog, dtype="float32")
    at = 400.0
    wave[int((at - 10) * rate) : int((at + 15) * rate)] = 0.0  # silence around the planted sound
    wave[int(at * rate) : int(at * rate) + len(planted)] = planted
    long_path = tmp_path / "archive" / "long.flac"
    long_path.parent.mkdir()
    sf.write(long_path, wave, rate, subtype="PCM_16")
    others = [p for p in esc_files if "-dog" not in p][:20]
    index, report = build_index_from_files(
        pipe,
        [str(long_path.parent), *others],
        tmp_path / "index",
        EmbedOptions(pool="none", num_workers=1, block_seconds=30.0),
    )
    assert report.failed == 0
    long_rows = [r for r in index.rows if r.path == str(long_path.resolve())]
    assert len(long_rows) == 1 + int(np.ceil((minutes * 60 - 5) / 2.5))
    query = pipe.embed_audio([dog])[0]
    hits = index.search(query, top_k=3)[0]
    assert hits[0].path == str(long_path.resolve())
    assert hits[0].start == pytest.approx(at) and hits[0].end == pytest.approx(at + 5.0)
    assert hits[0].score > 0.999


def test_parse_shard(monkeypatch):
    from openclap.bulk import parse_shard

    assert parse_shard("1/4") == (1, 4)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert parse_shard("auto") == (2, 3)
    for bad in ["4/4", "x", "1/0", "-1/2"]:
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)
