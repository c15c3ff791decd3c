"""Shared pytest fixtures (generic ones only; append yours below)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

# The committed test corpus: a subset of ../shared/data in the same layout (see tests/data/README.md).
TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The committed real-audio corpus ``tests/data`` (esc10/, fsdd/, instruments/, laid out as ../shared/data)."""
    if not (TEST_DATA / "esc10" / "manifest.csv").is_file():
        raise FileNotFoundError(
            f"{TEST_DATA}/esc10/manifest.csv is missing: the test corpus is part of the "
            "repository (rebuild it with scripts/make_test_corpus.py)"
        )
    return TEST_DATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``):
    the tiny model and the probe make many small calls, which one thread runs faster on a busy CPU."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def write_esc10_caption_manifest(shared_data: Path):
    """``write(path, n_train=12, n_test=4) -> (path, train_rows, test_rows)``: a path,caption,split
    manifest of real ESC-10 clips; the rows are dicts with absolute ``path``, ``caption`` and ``split``."""

    def write(path: Path, n_train: int = 12, n_test: int = 4) -> tuple[Path, list[dict], list[dict]]:
        with open(shared_data / "esc10" / "manifest.csv", newline="") as f:
            rows = [
                {"path": str(shared_data / "esc10" / r["path"]), "caption": r["caption"], "split": r["split"]}
                for r in csv.DictReader(f)
            ]
        train = [r for r in rows if r["split"] == "train"][:n_train]
        test = [r for r in rows if r["split"] == "test"][:n_test]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["path", "caption", "split"])
            w.writeheader()
            w.writerows(train + test)
        return path, train, test

    return write
