"""Search index: exact chunked top-k, size-chosen FAISS index above the threshold, add/remove, save/load, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import openclap
from openclap import cli
from openclap.bulk import EmbedOptions
from openclap.index import (
    IndexPlan,
    IndexRow,
    SearchIndex,
    build_index_from_files,
    check_model,
    exact_top_k,
    plan_index,
)

MY_COMMANDS = ("openclap.commands.embed", "openclap.commands.index", "openclap.commands.search")


@pytest.fixture
def cli_main(monkeypatch):
    """`openclap` main with this area's commands registered (whether or not cli.py lists them yet)."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", tuple(dict.fromkeys(cli.COMMAND_MODULES + MY_COMMANDS)))
    return cli.main


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _clustered(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(n // 50, 2), d))
    return _unit(centers[rng.integers(len(centers), size=n)] + 0.5 * rng.standard_normal((n, d)))


def _rows(n: int, prefix: str = "/data/f") -> list[IndexRow]:
    return [IndexRow(f"{prefix}{i}.wav", start=float(i), end=float(i) + 1) for i in range(n)]


def test_exact_top_k_matches_full_sort_in_blocks():
    rng = np.random.default_rng(0)
    vecs, queries = _unit(rng.standard_normal((1000, 32))), _unit(rng.standard_normal((5, 32)))
    mask = rng.random(1000) > 0.3
    scores, ids = exact_top_k(vecs, queries, 10, mask=mask, block_rows=97)
    full = queries @ vecs.T
    full[:, ~mask] = -np.inf
    ref = np.argsort(-full, axis=1)[:, :10]
    assert np.array_equal(ids, ref)
    assert np.allclose(scores, np.take_along_axis(full, ref, 1))


def test_auto_index_choice_by_size_matches_exact_search():
    """Below the threshold: exact; above: plan_index's IVF-SQ8, whose re-scored hits carry exact scores."""
    pytest.importorskip("faiss")
    vecs, queries = _clustered(4000, 64, seed=5), _clustered(40, 64, seed=6)
    small = SearchIndex(vecs[:999], _rows(999), approximate_threshold=1000)
    assert small.kind == "exact"
    plan = plan_index(4000)
    assert (plan.kind, plan.nlist, plan.nprobe, plan.refine) == ("ivf-sq8", 63, 63, 64)  # 4000 < the budget
    assert SearchIndex(vecs, _rows(4000), approximate_threshold=1000).nprobe == 63
    # probes scan SCAN_BUDGET (48k) rows: 48 of 1000 cells at 1M, 108 of 447 at 200k, at least 16
    assert plan_index(1_000_000) == IndexPlan("ivf-sq8", 1000, 48, 64)
    assert plan_index(200_000) == IndexPlan("ivf-sq8", 447, 108, 64)
    assert plan_index(10_000_000) == IndexPlan("ivf-sq8", 3162, 16, 64)
    index = SearchIndex(vecs, _rows(4000), approximate_threshold=1000, nprobe=16)  # approximate for real
    assert (index.kind, index.nlist, index.nprobe, index.refine) == ("ivf-sq8", 63, 16, 64)
    exact_scores, exact_ids = exact_top_k(vecs, queries, 10)
    approx = index.search(queries, 10, unique_files=False)
    recall = np.mean([len({h.row for h in a} & set(e)) / 10 for a, e in zip(approx, exact_ids)])
    assert recall >= 0.95
    for q, hits in zip(queries, approx):  # re-scored: each score is its row's exact inner product, best first
        scores = [h.score for h in hits]
        assert (
            np.allclose(scores, vecs[[h.row for h in hits]] @ q, atol=1e-6) and scores == sorted(scores)[::-1]
        )
    assert (approx[0][0].row, approx[0][0].score) == (
        exact_ids[0, 0],
        pytest.approx(exact_scores[0, 0], abs=1e-6),
    )
    # one query at a time (FAISS splits its cells over the threads) finds what the batch found
    for q, hits in zip(queries[:8], approx):
        assert [(h.row, h.score) for h in index.search(q, 10, unique_files=False)[0]] == [
            (h.row, h.score) for h in hits
        ]


@pytest.mark.parametrize("kind", ["ivf-sq8", "ivf", "hnsw"])
def test_approximate_recall_save_load_add_remove(tmp_path, kind):
    pytest.importorskip("faiss")
    vecs = _clustered(3000, 48, seed=1)
    index = SearchIndex(vecs, _rows(3000), {"roots": ["/data"]}, approximate_threshold=1000, approximate=kind)
    assert index.kind == kind
    queries = _clustered(50, 48, seed=2)
    approx = index.search(queries, 10, unique_files=False)
    _, exact_ids = exact_top_k(vecs, queries, 10)
    recall = np.mean([len({h.row for h in a} & set(e)) / 10 for a, e in zip(approx, exact_ids)])
    assert recall >= 0.95

    index.save(tmp_path / "ix")
    loaded = SearchIndex.load(tmp_path / "ix")
    assert loaded.kind == kind and json.loads((tmp_path / "ix" / "index.json").read_text())["rows"] == 3000
    assert [h.row for h in loaded.search(queries[0], 10)[0]] == [h.row for h in approx[0]]

    # Remove a file: its row never comes back, even from the graph.
    top = loaded.search(queries[0], 1)[0][0]
    assert loaded.remove_paths([top.path]) == 1
    assert top.path not in {h.path for h in loaded.search(queries[0], 10)[0]}
    # Re-add it with another vector (a new version of the file): the new row replaces the old one.
    new = _unit(np.ones((1, 48)))
    loaded.add(new, [IndexRow(top.path, start=0.0, end=2.0)])
    hit = loaded.search(new[0], 1)[0][0]
    assert hit.path == top.path and hit.score == pytest.approx(1.0, abs=1e-5) and len(loaded) == 3000
    # Deleting more than a quarter compacts the index and rebuilds the graph.
    loaded.remove_paths([f"/data/f{i}.wav" for i in range(1000)])
    assert len(loaded.rows) == len(loaded) == 2000 and loaded.kind == kind


def test_exact_index_unique_files_and_folder_removal():
    vecs = _unit(np.random.default_rng(3).standard_normal((6, 8)))
    rows = [
        IndexRow("/a/x.wav", 0, 0, 1),
        IndexRow("/a/x.wav", 1, 1, 2),
        IndexRow("/b/y.wav"),
        IndexRow("/b/z.wav"),
        IndexRow("/c/w.wav"),
        IndexRow("/c/w.wav", 1),
    ]
    index = SearchIndex(vecs, rows)
    assert index.kind == "exact"
    hits = index.search(vecs[0], 10)[0]
    assert len(hits) == 4 and len({h.path for h in hits}) == 4 and hits[0].path == "/a/x.wav"
    assert len(index.search(vecs[0], 10, unique_files=False)[0]) == 6
    assert index.remove_paths(["/b"]) == 2
    assert {h.path for h in index.search(vecs[0], 10)[0]} == {"/a/x.wav", "/c/w.wav"}
    with pytest.raises(ValueError, match="queries must be"):
        index.search(np.zeros(3, np.float32))


def test_cli_build_search_add_remove(tmp_path, shared_data, capsys, cli_main):
    src = sorted((shared_data / "esc10" / "audio").glob("*.flac"))
    lib = tmp_path / "lib"
    lib.mkdir()
    for p in src[:12]:
        shutil.copy(p, lib / p.name)
    ix = tmp_path / "ix"
    # tiny: 5 s windows, so each 5 s clip is one row and a file's own query matches it exactly
    assert (
        cli_main(["index", "build", str(lib), "--out", str(ix), "--num-workers", "0", "--model", "tiny"]) == 0
    )
    capsys.readouterr()
    assert cli_main(["search", "a dog barking", "--index", str(ix), "--top-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3 and all({"path", "start", "end", "score"} <= set(h) for h in hits)
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]

    query = lib / src[3].name
    assert cli_main(["search", "--audio", str(src[3]), "--index", str(ix), "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["path"] == str(query.resolve()) and hits[0]["score"] > 0.9999

    extra = tmp_path / "extra"
    extra.mkdir()
    for p in src[12:15]:
        shutil.copy(p, extra / p.name)
    assert cli_main(["index", "add", str(ix), str(extra), "--num-workers", "0"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["files"] == 15 and info["embedded"] == 3
    assert str(extra.resolve()) in json.loads((ix / "index.json").read_text())["roots"]

    (lib / src[0].name).unlink()
    (lib / src[1].name).unlink()
    assert cli_main(["index", "remove", str(ix)]) == 0
    assert json.loads(capsys.readouterr().out)["files"] == 13
    assert cli_main(["index", "remove", str(ix), str(extra)]) == 0
    assert json.loads(capsys.readouterr().out)["files"] == 10
    index = SearchIndex.load(ix)
    assert all(Path(p).parent == lib for p in index.paths())


def test_model_mismatch_is_refused(tmp_path, shared_data):
    pipe = openclap.load("tiny")
    files = sorted((shared_data / "fsdd" / "audio").glob("*.flac"))[:3]
    index, _ = build_index_from_files(pipe, files, tmp_path / "ix", EmbedOptions(num_workers=0))
    check_model(index, pipe)
    with torch.no_grad():
        pipe.model.audio_projection.linear1.weight.add_(0.01)
    with pytest.raises(ValueError, match="built with model"):
        check_model(index, pipe)
