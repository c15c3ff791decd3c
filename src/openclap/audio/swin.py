"""Swin Transformer parts of HTSAT, written plainly: the reference implementation.

This is the op order of the Swin paper's code (Liu et al., 2021) as msclap's ``htsat.py`` uses it: a block
takes raster tokens ``(B, H*W, C)``, rolls the map by ``-shift``, partitions it into ``ws x ws`` windows,
runs attention with a relative position bias (plus the shift mask in shifted blocks) inside each window,
reverses the partition and rolls back. Patch merging concatenates each 2x2 neighbourhood.

It is the version to read and to test against. The default inference path (``swin_fast``) computes the
same numbers with fewer copies: it keeps the tokens in each block's window order between blocks instead of
rolling and partitioning every time; ``tests/test_audio_encoders.py`` checks the two against each other.
Module names and parameter shapes are msclap's, so both paths run the same state dict.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from openclap.config import HTSATConfig

# msclap's shifted-window mask value (Swin uses -100, not -inf).
MASK_VALUE = -100.0


def drop_path(x: Tensor, p: float, training: bool, batch_dim: int = 0) -> Tensor:
    """Stochastic depth: zero whole samples of a residual branch with probability p, rescale the rest.

    ``batch_dim`` is the axis that indexes samples (1 for the fast path's window-major stream).
    """
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    shape = [1] * x.ndim
    shape[batch_dim] = x.shape[batch_dim]
    mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor, batch_dim: int = 0) -> Tensor:
        return drop_path(x, self.p, self.training, batch_dim)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def window_partition(x: Tensor, ws: int) -> Tensor:
    """(B, H, W, C) -> (B * nW, ws * ws, C), windows in row-major order inside each sample."""
    B, H, W, C = x.shape
    x = x.view(B, H // ws, ws, W // ws, ws, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, C)


def window_reverse(windows: Tensor, ws: int, H: int, W: int) -> Tensor:
    """(B * nW, ws * ws, C) -> (B, H, W, C); inverse of ``window_partition``."""
    C = windows.shape[-1]
    x = windows.view(-1, H // ws, W // ws, ws, ws, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, H, W, C)


def relative_position_index(ws: int) -> Tensor:
    """(ws*ws, ws*ws) index into the (2ws-1)^2 bias table for each (query, key) pair of a window."""
    ys, xs = torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])  # (2, N): row and column of each token
    rel = coords[:, :, None] - coords[:, None, :]  # (2, N, N), in [-(ws-1), ws-1]
    rel = rel + (ws - 1)  # shift to start from 0
    return rel[0] * (2 * ws - 1) + rel[1]  # (N, N)


def shifted_window_mask(H: int, W: int, ws: int, shift: int) -> Tensor:
    """(nW, N, N) additive mask for shifted windows: 0 inside a region, -100 across regions.

    After the cyclic shift, a window at the border mixes tokens from up to 4 image regions that are
    not neighbours; tokens attend only within their own region (Swin, as in msclap).
    """
    region = torch.zeros(1, H, W, 1, device="cpu")  # CPU even under a meta-device context (converters)
    bounds = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    label = 0
    for hs in bounds:
        for wsl in bounds:
            region[:, hs, wsl, :] = label
            label += 1
    region_windows = window_partition(region, ws).squeeze(-1)  # (nW, N)
    diff = region_windows[:, None, :] - region_windows[:, :, None]  # (nW, N, N)
    return torch.zeros_like(diff).masked_fill(diff != 0, MASK_VALUE)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ws x ws windows with a learned relative position bias."""

    def __init__(self, dim: int, ws: int, num_heads: int, qkv_bias: bool, attn_drop: float, proj_drop: float):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads {num_heads}")
        self.ws = ws
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attn_drop = attn_drop
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, num_heads))
        # msclap persists this buffer; it is derived from ws, so we recompute it (see HTSAT.msclap_buffers).
        self.register_buffer("relative_position_index", relative_position_index(ws), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def position_bias(self) -> Tensor:
        N = self.ws * self.ws
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]  # (N*N, nH)
        return bias.view(N, N, self.num_heads).permute(2, 0, 1)  # (nH, N, N)

    def qkv_heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(W, N, C) windows -> q, k, v, each (W, nH, N, head_dim)."""
        BW, N, _ = x.shape
        qkv = self.qkv(x).view(BW, N, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B * nW, N, C) windows, sample-major as ``window_partition`` gives; mask: (nW, N, N) or None."""
        BW, N, C = x.shape
        q, k, v = self.qkv_heads(x)
        attn = (q * self.head_dim**-0.5) @ k.transpose(-2, -1)  # (B*nW, nH, N, N)
        attn = attn + self.position_bias().unsqueeze(0)
        if mask is not None:
            nW = mask.shape[0]
            attn = attn.view(BW // nW, nW, self.num_heads, N, N) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(BW, self.num_heads, N, N)
        attn = F.dropout(attn.softmax(dim=-1), p=self.attn_drop, training=self.training)
        y = (attn @ v).transpose(1, 2).reshape(BW, N, C)
        return self.proj_drop(self.proj(y))


class SwinBlock(nn.Module):
    """LN -> (shifted) window attention -> residual; LN -> MLP -> residual. Raster tokens in and out."""

    def __init__(
        self,
        dim: int,
        resolution: tuple[int, int],
        num_heads: int,
        ws: int,
        shift: int,
        cfg: HTSATConfig,
        drop_path_p: float,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        if min(resolution) <= ws:  # the window covers the whole map: no partition, no shift (Swin rule)
            ws, shift = min(resolution), 0
        H, W = resolution
        if H % ws or W % ws:
            raise ValueError(
                f"token grid {H}x{W} is not divisible by window_size {ws}; adjust spec_size/window_size"
            )
        self.ws = ws
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, ws, num_heads, cfg.qkv_bias, cfg.attn_drop_rate, cfg.drop_rate)
        self.drop_path = DropPath(drop_path_p)  # per sample; identity when p == 0 or in eval
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio), cfg.drop_rate)
        # msclap persists attn_mask for shifted blocks; we recompute it (see HTSAT.msclap_buffers).
        mask = shifted_window_mask(H, W, ws, shift) if shift > 0 else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """(B, H*W, C) raster tokens -> same."""
        H, W = self.resolution
        B, L, C = x.shape
        h = self.norm1(x).view(B, H, W, C)
        if self.shift:
            h = torch.roll(h, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = self.attn(window_partition(h, self.ws), self.attn_mask)  # (B*nW, N, C)
        h = window_reverse(windows, self.ws, H, W)
        if self.shift:
            h = torch.roll(h, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + self.drop_path(h.reshape(B, L, C))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """(B, H*W, C) -> (B, H/2*W/2, 2C): concatenate each 2x2 neighbourhood, LN, linear."""

    def __init__(self, resolution: tuple[int, int], dim: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def reduce(self, groups: Tensor) -> Tensor:
        """(..., 4C) concatenated neighbourhoods -> (..., 2C)."""
        return self.reduction(self.norm(groups))

    def forward(self, x: Tensor) -> Tensor:
        H, W = self.resolution
        B, _, C = x.shape
        x = x.view(B, H, W, C)
        # Order (row, col) = (0,0), (1,0), (0,1), (1,1), as Swin/msclap: the reduction weights depend on it.
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduce(x.view(B, -1, 4 * C))


class SwinStage(nn.Module):
    """``depth`` blocks alternating plain and shifted windows, then an optional patch merging."""

    def __init__(
        self,
        dim: int,
        resolution: tuple[int, int],
        depth: int,
        num_heads: int,
        cfg: HTSATConfig,
        drop_path_ps: list[float],
        downsample: bool,
    ) -> None:
        super().__init__()
        ws = cfg.window_size
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, num_heads, ws, 0 if i % 2 == 0 else ws // 2, cfg, drop_path_ps[i])
            for i in range(depth)
        )
        if downsample and (resolution[0] % 2 or resolution[1] % 2):
            raise ValueError(f"patch merging needs an even token grid, got {resolution}; adjust spec_size")
        self.downsample = PatchMerging(resolution, dim) if downsample else None

    def forward(self, x: Tensor) -> Tensor:
        """(B, H*W, C) raster tokens -> (B, H'*W', C') of the next grid."""
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)
