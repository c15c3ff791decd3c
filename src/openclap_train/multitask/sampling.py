"""Task sampling: how tasks of different sizes share the batches, deterministically from (seed, step).

``task_probabilities`` turns task sizes ``n_i`` into the probability that a batch row (``mixed``) or a
whole batch (``homogeneous``) comes from task ``i``: ``proportional`` p_i ~ n_i, ``uniform`` p_i = 1/K,
``temperature`` p_i ~ n_i^T (T = 1: proportional, T = 0: uniform; multilingual-BERT/T5 style mixing,
which the paper's 22-task stage needs because its tasks differ in size by orders of magnitude).

Within a task, rows are visited in epochs: a permutation per (seed, task, epoch), walked by a cursor, so
each row of a task is seen once before any is seen twice. The task draws of step ``s`` come from a
generator seeded with ``(seed, s)`` only, so a resumed run replays the cursors (integer work, no audio)
and continues exactly where the interrupted run was.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from openclap_train.config import TrainConfigError

Key = tuple[int, int, int]  # (task, row index in the task, epoch of that task)


def task_probabilities(sizes: Sequence[int], policy: str, temperature: float = 1.0) -> torch.Tensor:
    """(K,) float64 probabilities of the tasks under ``policy`` (proportional, uniform, temperature)."""
    n = torch.tensor([float(s) for s in sizes], dtype=torch.float64)
    if len(n) == 0 or bool((n <= 0).any()):
        raise ValueError(f"task sizes must be positive, got {list(sizes)}")
    if policy == "proportional":
        w = n
    elif policy == "uniform":
        w = torch.ones_like(n)
    elif policy == "temperature":
        if not 0.0 <= temperature <= 1.0:
            raise ValueError(f"temperature must be in [0, 1], got {temperature}")
        w = n.pow(temperature)
    else:
        raise ValueError(f"unknown sampling policy {policy!r}; use proportional, uniform or temperature")
    return w / w.sum()


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_033 + step * 7_919 + 17) % (1 << 62))


class MultiTaskBatchSampler:
    """Yields this rank's micro-batches of ``(task, index, epoch)`` keys from global step ``start_step`` on.

    The global batch of step ``s`` is drawn identically on every rank; it is cut into ``grad_accum``
    micro-batches and each of those into ``world_size`` contiguous parts (as ``openclap train`` does), so
    N processes see exactly what one process would.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        probabilities: torch.Tensor,
        batch_size: int,
        seed: int,
        mode: str = "mixed",
        rank: int = 0,
        world_size: int = 1,
        grad_accum: int = 1,
        start_step: int = 0,
    ) -> None:
        if batch_size % (world_size * grad_accum):
            raise TrainConfigError(
                f"batch_size {batch_size} must be divisible by processes x grad_accum = "
                f"{world_size * grad_accum}"
            )
        if mode not in ("mixed", "homogeneous"):
            raise ValueError(f"mode must be mixed or homogeneous, got {mode!r}")
        if len(sizes) != len(probabilities):
            raise ValueError(f"{len(sizes)} task sizes but {len(probabilities)} probabilities")
        self.sizes, self.probabilities = list(sizes), probabilities.double()
        self.batch_size, self.seed, self.mode = batch_size, seed, mode
        self.rank, self.world_size, self.grad_accum = rank, world_size, grad_accum
        self.start_step = start_step
        self.micro = batch_size // (world_size * grad_accum)

    def step_tasks(self, step: int) -> torch.Tensor:
        """(B,) task of each row of the global batch of ``step`` (a pure function of seed and step)."""
        g = _step_generator(self.seed, step)
        if self.mode == "homogeneous":
            task = torch.multinomial(self.probabilities, 1, generator=g)
            return task.expand(self.batch_size).clone()
        return torch.multinomial(self.probabilities, self.batch_size, replacement=True, generator=g)

    def _permutation(self, task: int, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + task * 10_007 + epoch)
        return torch.randperm(self.sizes[task], generator=g).tolist()

    def global_batches(self) -> Iterator[list[Key]]:
        """Endless global batches from ``start_step`` on (cursors replayed from step 0)."""
        cursors = [0] * len(self.sizes)
        for step in range(self.start_step):  # replay: count rows only
            counts = torch.bincount(self.step_tasks(step), minlength=len(self.sizes)).tolist()
            cursors = [c + k for c, k in zip(cursors, counts)]
        perms: dict[int, tuple[int, list[int]]] = {}
        step = self.start_step
        while True:
            keys: list[Key] = []
            for t in self.step_tasks(step).tolist():
                epoch, pos = divmod(cursors[t], self.sizes[t])
                if t not in perms or perms[t][0] != epoch:
                    perms[t] = (epoch, self._permutation(t, epoch))
                keys.append((t, perms[t][1][pos], epoch))
                cursors[t] += 1
            yield keys
            step += 1

    def __iter__(self) -> Iterator[list[Key]]:
        chunk = self.batch_size // self.grad_accum  # one micro-batch, all ranks
        for batch in self.global_batches():
            for a in range(self.grad_accum):
                yield batch[a * chunk : (a + 1) * chunk][
                    self.rank * self.micro : (self.rank + 1) * self.micro
                ]
