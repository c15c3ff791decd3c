"""ClipLoss: values against a naive formula, and a real 2-process gloo group against one process."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torchrun import free_port

from openclap.loss import ClipLoss, positive_mask


def _naive_loss(audio: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Per-row written InfoNCE, no vectorised cross-entropy."""
    scale = logit_scale.exp().clamp(max=100.0)
    logits = scale * audio @ text.T
    n = logits.shape[0]
    a2t = -sum(logits[i, i] - torch.logsumexp(logits[i], 0) for i in range(n)) / n
    t2a = -sum(logits[i, i] - torch.logsumexp(logits[:, i], 0) for i in range(n)) / n
    return (a2t + t2a) / 2


def _inputs(seed: int = 0, n: int = 8, d: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(
        n, d, generator=g, dtype=torch.float64
    )


def test_single_process_matches_naive_formula():
    raw_a, raw_t = _inputs()
    a, t = F.normalize(raw_a, dim=-1), F.normalize(raw_t, dim=-1)
    scale = torch.tensor(math.log(1 / 0.07), dtype=torch.float64)
    got = ClipLoss()(a, t, scale)
    assert got.item() == pytest.approx(_naive_loss(a, t, scale).item(), rel=1e-12)
    # perfectly aligned pairs at a large scale: loss near zero; the scale clamp caps at 100
    same = F.normalize(torch.eye(8, 16, dtype=torch.float64), dim=-1)
    assert ClipLoss()(same, same, torch.tensor(10.0, dtype=torch.float64)).item() < 1e-12
    big = torch.tensor(10.0, dtype=torch.float64)
    assert ClipLoss().logits(a, t, big).abs().max().item() <= 100.0 + 1e-9


def test_shape_errors():
    a, t = _inputs()
    with pytest.raises(ValueError, match="must both be"):
        ClipLoss()(a, t[:4], torch.tensor(1.0))
    with pytest.raises(ValueError, match="rank"):
        ClipLoss(rank=2, world_size=2)
    with pytest.raises(RuntimeError, match="not initialised"):
        ClipLoss(rank=0, world_size=2)(a, t, torch.tensor(1.0))


# ----------------------------------------------------------------------------- multi-positive (labels)
def test_multi_positive_hand_computed_4x4():
    # audio = text = the 4 unit vectors, scale 2: logits = 2 * I. Labels [0, 0, 1, 2]: rows 0 and 1 have
    # the positives {0, 1}, rows 2 and 3 only themselves. With L = log(e^2 + 3) (every row's logsumexp):
    #   rows 0, 1: -(1/2) * ((2 - L) + (0 - L)) = L - 1 ; rows 2, 3: -(2 - L) = L - 2
    # mean = L - 1.5 on each side (the mask is symmetric), so the loss is L - 1.5 = 0.840753
    e = torch.eye(4, dtype=torch.float64)
    scale = torch.tensor(math.log(2.0), dtype=torch.float64)
    big_l = math.log(math.e**2 + 3)
    got = ClipLoss()(e, e, scale, labels=torch.tensor([0, 0, 1, 2]))
    assert got.item() == pytest.approx(big_l - 1.5, rel=1e-12)
    assert got.item() == pytest.approx(0.840753, abs=1e-6)
    # the plain loss on the same inputs: every row L - 2
    assert ClipLoss()(e, e, scale).item() == pytest.approx(big_l - 2, rel=1e-12)


def test_multi_positive_reduces_to_clip_loss_and_matches_loop():
    raw_a, raw_t = _inputs(seed=3)
    a, t = F.normalize(raw_a, dim=-1), F.normalize(raw_t, dim=-1)
    scale = torch.tensor(math.log(1 / 0.07), dtype=torch.float64)
    plain = ClipLoss()(a, t, scale)
    distinct = ClipLoss()(a, t, scale, labels=torch.arange(8) * 7)
    assert distinct.item() == pytest.approx(plain.item(), rel=1e-12)
    # two label columns: positive when either agrees; compared with a per-row loop
    labels = torch.tensor([[0, 10], [0, 11], [1, 12], [2, 12], [3, 13], [3, 14], [4, 15], [5, 16]])
    mask = positive_mask(labels)
    assert mask.sum().item() == 8 + 2 + 2 + 2  # diagonal + pairs (0,1), (2,3), (4,5) both ways
    logits = scale.exp() * a @ t.T
    want = 0.0
    for m in (logits, logits.T):
        rows = []
        for i in range(8):
            pos = [j for j in range(8) if mask[i, j]]
            rows.append(-sum(m[i, j] - torch.logsumexp(m[i], 0) for j in pos) / len(pos))
        want += sum(rows) / 8 / 2
    got = ClipLoss()(a, t, scale, labels=labels)
    assert got.item() == pytest.approx(float(want), rel=1e-12)
    assert got.item() != pytest.approx(plain.item(), rel=1e-3)  # the positives change the value
    with pytest.raises(ValueError, match="labels have 4 rows"):
        ClipLoss()(a, t, scale, labels=torch.arange(4))


LABELS = torch.tensor([0, 1, 0, 2, 1, 3, 3, 4])  # positives cross the two ranks' halves (0-2, 1-4)


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        raw_a, raw_t = _inputs()
        b = raw_a.shape[0] // world_size
        local_a = raw_a[rank * b : (rank + 1) * b].clone().requires_grad_(True)
        local_t = raw_t[rank * b : (rank + 1) * b].clone().requires_grad_(True)
        scale = torch.tensor(math.log(1 / 0.07), dtype=torch.float64, requires_grad=True)
        # plain, then multi-positive (the labels are gathered like the features)
        for prefix, labels in (("", None), ("labels_", LABELS[rank * b : (rank + 1) * b])):
            for x in (local_a, local_t, scale):
                x.grad = None
            loss = ClipLoss(rank, world_size)(
                F.normalize(local_a, dim=-1), F.normalize(local_t, dim=-1), scale, labels=labels
            )
            loss.backward()
            torch.save(
                {"loss": loss.detach(), "ga": local_a.grad, "gt": local_t.grad, "gs": scale.grad},
                os.path.join(out_dir, f"{prefix}rank{rank}.pt"),
            )
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_match_one(tmp_path):
    world_size = 2
    mp.spawn(_worker, args=(world_size, free_port(), str(tmp_path)), nprocs=world_size, join=True)
    raw_a, raw_t = _inputs()
    raw_a.requires_grad_(True)
    raw_t.requires_grad_(True)
    scale = torch.tensor(math.log(1 / 0.07), dtype=torch.float64, requires_grad=True)
    b = raw_a.shape[0] // world_size
    # plain loss against the naive formula, then the multi-positive loss against one process
    for prefix, reference in (
        ("", _naive_loss),
        ("labels_", lambda a, t, s: ClipLoss()(a, t, s, labels=LABELS)),
    ):
        for x in (raw_a, raw_t, scale):
            x.grad = None
        ref = reference(F.normalize(raw_a, dim=-1), F.normalize(raw_t, dim=-1), scale)
        ref.backward()
        for rank in range(world_size):
            got = torch.load(tmp_path / f"{prefix}rank{rank}.pt", weights_only=True)
            assert got["loss"].item() == pytest.approx(ref.item(), rel=1e-12)
            # each rank's local gradient is world_size * dL/d(local); DDP's averaging divides it back
            sl = slice(rank * b, (rank + 1) * b)
            torch.testing.assert_close(got["ga"] / world_size, raw_a.grad[sl], rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(got["gt"] / world_size, raw_t.grad[sl], rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(got["gs"], scale.grad, rtol=1e-10, atol=1e-12)
