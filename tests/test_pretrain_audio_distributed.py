"""Multi-task pretraining: one process with batch B == two gloo processes (torchrun) with B/2 each (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file
from test_pretrain_audio_run import _recipe
from torchrun import run_two_processes

from openclap_train.multitask.train import main

pytestmark = pytest.mark.slow


def test_one_process_equals_two_gloo_processes(tmp_path: Path, shared_data: Path) -> None:
    # BatchNorm frozen, no head dropout or drop-path: the remaining randomness is per row and independent of the ranks
    recipe = _recipe(
        shared_data,
        max_steps=3,
        save_every=3,
        batchnorm="frozen",
        head={"hidden": 8, "dropout": 0.0},
        batch_size=8,
        model_overrides={"audio": {"duration": 1.0, "htsat": {"drop_path_rate": 0.0}}},
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(recipe))
    one = tmp_path / "one"
    assert main([str(cfg), "--run-dir", str(one)]) == 0
    two = tmp_path / "two"
    res = run_two_processes("openclap_train.multitask", cfg, two, timeout=500)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "2 processes" in res.stderr

    def losses(run: Path) -> list[float]:
        return [
            r["loss"]
            for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if "loss" in r
        ]

    l1, l2 = losses(one), losses(two)
    assert len(l1) == len(l2) == 3 and l1[0] == pytest.approx(l2[0], abs=1e-5)
    a = load_file(str(one / "final" / "audio_tower.safetensors"))
    b = load_file(str(two / "final" / "audio_tower.safetensors"))
    worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    assert worst < 1e-5, worst
