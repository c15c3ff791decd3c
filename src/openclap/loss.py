"""Symmetric InfoNCE (CLIP/CLAP) loss with cross-process gathering of the features.

The loss knows only ``rank`` and ``world_size``. With ``world_size > 1`` every rank all-gathers the audio
and text embeddings of the global batch (ranks in order, so the gathered batch equals the batch one
process would see), computes the same global loss, and gradients flow back to each rank's *local*
features through :class:`_GatherWithGrad`, whose backward sums the incoming gradients over ranks and
keeps the local slice.

Gradient convention: DDP averages parameter gradients over ranks. The global loss is identical on every
rank, so each rank's local-feature gradient is ``world_size * dL/d(local)`` after the sum, and DDP's
average turns it into exactly the single-process gradient of the global-batch loss. So one process with
batch ``B`` and ``W`` processes with ``B / W`` each give the same parameter gradients (the equivalence the
trainer's tests check). Without DDP, divide local gradients by ``world_size`` to get the same numbers.

Source of the design: open_clip's ``ClipLoss`` (gather then full loss on each rank); the loss here is the
paper's symmetric cross-entropy (Elizalde et al. 2023, Eq. 3), logits scaled by ``exp(logit_scale)``
clamped at 100 (CLIP's convention, kept by msclap).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from openclap.model import MAX_LOGIT_SCALE

__all__ = ["MAX_LOGIT_SCALE", "ClipLoss", "gather_features", "gather_labels", "positive_mask"]


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward all-reduces (sum) the gradient and returns this rank's slice."""

    @staticmethod
    def forward(ctx, local: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:  # type: ignore[override]
        ctx.rank, ctx.world_size, ctx.batch = rank, world_size, local.shape[0]
        parts = [torch.empty_like(local) for _ in range(world_size)]
        dist.all_gather(parts, local.contiguous())
        return torch.cat(parts, dim=0)  # (W * B_local, D)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.batch
        return grad[start : start + ctx.batch], None, None


def gather_features(features: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """(B_local, D) on each rank -> (world_size * B_local, D), rank order; gradients reach local rows.

    Every rank must pass the same ``B_local`` (the trainer drops incomplete batches).
    """
    if world_size == 1:
        return features
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            f"world_size={world_size} but torch.distributed is not initialised; call "
            "torch.distributed.init_process_group first (torchrun does it for the trainer)"
        )
    return _GatherWithGrad.apply(features, rank, world_size)


def gather_labels(labels: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """(B_local, ...) integer labels on each rank -> (world_size * B_local, ...), rank order (no gradient)."""
    if world_size == 1:
        return labels
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(f"world_size={world_size} but torch.distributed is not initialised")
    parts = [torch.empty_like(labels) for _ in range(world_size)]
    dist.all_gather(parts, labels.contiguous())
    return torch.cat(parts, dim=0)


def positive_mask(labels: torch.Tensor) -> torch.Tensor:
    """(N,) or (N, K) integer labels -> (N, N) bool: pairs that agree in at least one of the K columns.

    The diagonal is always positive (a clip and its own caption).
    """
    if labels.ndim == 1:
        labels = labels[:, None]
    if labels.ndim != 2:
        raise ValueError(f"labels must be (N,) or (N, K), got shape {tuple(labels.shape)}")
    mask = (labels[:, None, :] == labels[None, :, :]).any(-1)  # (N, N)
    return mask | torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)


class ClipLoss(nn.Module):
    """Symmetric cross-entropy over the (global) audio-text similarity matrix.

    ``forward(audio_embeds (B, D), text_embeds (B, D), logit_scale ())`` with L2-normalised embeddings
    and ``logit_scale`` the *log* inverse temperature (the model parameter); returns the scalar loss
    ``(CE(logits_per_audio) + CE(logits_per_text)) / 2`` over the global batch.

    Multi-positive form: ``forward(..., labels=L)`` with ``L`` (B,) or (B, K) integers (gathered like the
    features) treats every pair ``(i, j)`` whose labels agree in some column as a positive: the target of
    row ``i`` is uniform over its positives ``P_i``, so the audio-side term is
    ``-mean_i (1/|P_i|) sum_{j in P_i} log softmax_j(logits_i)``, and the text side the same on the
    transposed logits (the mask is symmetric). With all labels distinct it equals the plain loss. (The
    soft-target form of supervised contrastive learning, Khosla et al. 2020, applied across modalities.)
    """

    def __init__(self, rank: int = 0, world_size: int = 1, max_scale: float = MAX_LOGIT_SCALE) -> None:
        super().__init__()
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"need world_size >= 1 and 0 <= rank < world_size, got rank={rank}, world_size={world_size}"
            )
        self.rank, self.world_size, self.max_scale = rank, world_size, max_scale

    def logits(
        self, audio_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor
    ) -> torch.Tensor:
        """(N, N) scaled similarities of the gathered batch, audio rows, text columns."""
        if audio_embeds.shape != text_embeds.shape or audio_embeds.ndim != 2:
            raise ValueError(
                f"audio and text embeddings must both be (B, D), got {tuple(audio_embeds.shape)} "
                f"and {tuple(text_embeds.shape)}"
            )
        audio_all = gather_features(audio_embeds, self.rank, self.world_size)  # (N, D)
        text_all = gather_features(text_embeds, self.rank, self.world_size)  # (N, D)
        scale = logit_scale.exp().clamp(max=self.max_scale)
        return scale * audio_all @ text_all.T  # (N, N)

    def forward(
        self,
        audio_embeds: torch.Tensor,
        text_embeds: torch.Tensor,
        logit_scale: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        logits_per_audio = self.logits(audio_embeds, text_embeds, logit_scale)
        # half-precision logits (autocast) are scored in float32; float64 stays float64
        logits = logits_per_audio.to(torch.promote_types(logits_per_audio.dtype, torch.float32))
        if labels is None:
            target = torch.arange(logits.shape[0], device=logits.device)
            return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        if labels.shape[0] != audio_embeds.shape[0]:
            raise ValueError(f"labels have {labels.shape[0]} rows for a batch of {audio_embeds.shape[0]}")
        mask = positive_mask(gather_labels(labels.to(logits.device), self.rank, self.world_size))  # (N, N)
        soft = mask.to(logits.dtype) / mask.sum(1, keepdim=True)  # row i: uniform over its positives
        per_audio = -(soft * F.log_softmax(logits, dim=1)).sum(1).mean()
        per_text = (
            -(soft * F.log_softmax(logits.T, dim=1)).sum(1).mean()
        )  # mask symmetric: soft.T rows = soft
        return 0.5 * (per_audio + per_text)
