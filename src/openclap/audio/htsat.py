"""HTSAT: Hierarchical Token-Semantic Audio Transformer (Chen et al., ICASSP 2022), one file.

A Swin Transformer over the log-mel spectrogram folded into a square "image", followed by the
token-semantic CNN head (``tscam_conv``) that turns the last stage's tokens into AudioSet logits.
msclap-2023 uses HTSAT-tiny as its audio tower and projects ``features`` (msclap's ``latent_output``,
the mean of the final tokens, 768-d).

Data flow, with HTSAT-tiny sizes (spec_size 256, 64 mels, so ``freq_ratio = 256 // 64 = 4``):

    log-mel (B, T=965, 64)
      -> bn0 over mel bins                                   (B, 1, 965, 64)
      -> bicubic resample time to spec_size * freq_ratio     (B, 1, 1024, 64)
      -> fold time into freq_ratio chunks stacked on freq    (B, 1, 256, 256)   rows = 4 x 64 mel bins
      -> patch embed (4x4 conv) + LayerNorm                  (B, 64*64, 96)
      -> Swin stages with patch merging                      (B, 8*8, 768)
      -> LayerNorm, unfold chunks back into time             (B, 768, 2, 32)
      -> features = mean over all tokens                     (B, 768)
      -> tscam_conv (kernel 2x3) -> framewise logits         (B, 527, 32)  -> mean -> clip logits

Checkpoint compatibility (facts read from microsoft/CLAP ``msclap/models/htsat.py``,
``HTSAT_Swin_Transformer``): module names and parameter shapes here equal msclap's, so the published
``CLAP_weights_2023.pth`` loads after stripping ``audio_encoder.base.htsat.`` and dropping the
torchlibrosa front-end tensors listed in ``HTSAT_MSCLAP_DROPPED_KEYS``. msclap also stores two
derived buffers, ``layers.i.blocks.j.attn.relative_position_index`` (every block) and
``layers.i.blocks.j.attn_mask`` (shifted blocks); here they are non-persistent buffers computed from
the config, and ``HTSAT.msclap_buffers()`` returns them under msclap's names so a converter can check
the checkpoint's values against ours before dropping them. ``head`` (num_classes x num_classes) exists
in msclap's state dict but its forward never uses it when the token-semantic head is on (always, in
msclap's config: ``enable_tscam = True``); we keep it for key compatibility and freeze it so that
optimisers and DDP ignore it.

Differences from msclap, on purpose:
- The front end (STFT + mel filterbank) is a separate module; this encoder starts at ``bn0``.
- Training-only parts are not in the model: SpecAugment and mixup belong to the data pipeline.
- msclap's eval path for inputs longer than ``spec_size * freq_ratio`` frames (hard-coded 689-frame
  crops every 344 frames, averaged) is not reproduced: long clips are windowed before the encoder, and
  a longer input raises ``ValueError``.
- ``clipwise_logits`` are returned before the sigmoid (msclap returns ``sigmoid(logits)``).
- Attention uses ``scaled_dot_product_attention`` with the relative position bias (plus the shift
  mask, -100 where msclap puts -100) as an additive float mask; ``HTSAT.set_fused_attention(False)``
  switches to the explicit softmax for checking.
- Same numbers, other data movement (CPU speed): the tokens live in a window-major stream of rows
  ``(window, sample, token)`` between blocks. Each block reorders the stream with one precomputed
  ``index_select`` (``window_token_order``: roll + window partition as one index), instead of msclap's
  roll, partition, reverse and roll back; patch merging gathers its 2x2 neighbourhoods straight into the
  next stage's layout. LayerNorm, the linear layers and the residuals act per token, so the order does
  not change them. In shifted blocks, windows that mix no regions come first and run SDPA with the bias
  broadcast over the batch; only the border windows get the bias + mask expanded to the batch. Without
  autograd and with one intra-op thread, each block runs over chunks of whole windows (see
  ``SwinBlock.forward``). ``tests/test_audio_encoders.py`` checks all this against msclap's op order.
  Measured with ``benchmarks/htsat_speed.py``-style runs (one thread, CPU time, batch 8 of 7 s clips,
  shared 2-core machine): 226 -> 188 ms per clip, features bit-identical to the previous code.

LAION-CLAP's HTSAT (``laion_clap/clap_module/htsat.py``) has the same module tree and forward, with
these differences: it always builds the tscam head; with ``enable_fusion`` it adds ``mel_conv1d`` and
``fusion_model`` (AFF/iAFF/DAF over a global view plus 3 local crops of long clips, and a 2-D variant
inside ``patch_embed``) which are not implemented here; it also returns a fine-grained (per-time)
embedding. Its front end runs at 48 kHz with hop 480.
"""

from __future__ import annotations

import itertools
import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from openclap.audio.output import AudioEncoderOutput
from openclap.config import HTSATConfig

logger = logging.getLogger(__name__)

# Keys of msclap's HTSAT_Swin_Transformer state dict with no counterpart here (torchlibrosa front end;
# our front end designs its own STFT basis and filterbank). Source: torchlibrosa Spectrogram/STFT
# (conv_real, conv_imag) and LogmelFilterBank (melW), built with freeze_parameters=True.
HTSAT_MSCLAP_DROPPED_KEYS: tuple[str, ...] = (
    "spectrogram_extractor.stft.conv_real.weight",
    "spectrogram_extractor.stft.conv_imag.weight",
    "logmel_extractor.melW",
)

# msclap's shifted-window mask value (Swin uses -100, not -inf).
_MASK_VALUE = -100.0


def drop_path(x: Tensor, p: float, training: bool, batch_dim: int = 0) -> Tensor:
    """Stochastic depth: zero whole samples of a residual branch with probability p, rescale the rest.

    ``batch_dim`` is the axis that indexes samples (1 for the window-major ``(nW, B, N, C)`` stream).
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
    return torch.zeros_like(diff).masked_fill(diff != 0, _MASK_VALUE)


def window_token_order(H: int, W: int, ws: int, shift: int) -> Tensor:
    """(nW, ws*ws) raster position (row * W + col) of each token of each window, msclap's order.

    Window ``w`` and token ``n`` of ``window_partition(torch.roll(x, (-shift, -shift), (1, 2)), ws)``
    hold the token at this position of the unshifted (H, W) map: one index replaces roll + partition.
    """
    ys = torch.arange(H, device="cpu").view(H // ws, 1, ws, 1)  # (window row, 1, row in window, 1)
    xs = torch.arange(W, device="cpu").view(1, W // ws, 1, ws)  # (1, window col, 1, col in window)
    pos = ((ys + shift) % H) * W + (xs + shift) % W  # (H/ws, W/ws, ws, ws)
    return pos.reshape(-1, ws * ws)


def stream_rows(order: Tensor, batch: int, tokens: int) -> Tensor:
    """Rows of a raster (B * tokens, C) tensor in window-major stream order (window, sample, token).

    ``order`` is (nW, N) raster positions; the result, (nW * B * N,), is what ``index_select`` takes.
    """
    offsets = torch.arange(batch, device=order.device).mul_(tokens).view(1, batch, 1)
    return (order.unsqueeze(1) + offsets).flatten()  # (nW, B, N) -> flat


def _regather(x: Tensor, rows: Tensor, inverse: Tensor | None) -> Tensor:
    """Reorder stream rows: ``rows`` are raster rows wanted, ``inverse`` maps raster row -> row of ``x``."""
    index = rows if inverse is None else inverse[rows]
    if index.numel() == x.shape[0] and torch.equal(index, torch.arange(x.shape[0], device=index.device)):
        return x  # already in this order (e.g. one window covering the map)
    return x.index_select(0, index)


def _inverse(rows: Tensor) -> Tensor:
    """Inverse permutation: raster row -> position in the stream."""
    inv = torch.empty_like(rows)
    inv[rows] = torch.arange(rows.numel(), device=rows.device)
    return inv


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc1(x)
        if not torch.is_grad_enabled() and isinstance(self.act, nn.GELU) and self.act.approximate == "none":
            h = torch.ops.aten.gelu_(h)  # in place without autograd: one hidden-size buffer less
        else:
            h = self.act(h)
        return self.drop(self.fc2(self.drop(h)))


class PatchEmbed(nn.Module):
    """(B, C_in, S, S) image -> (B, H*W, D) tokens with a strided conv and LayerNorm."""

    def __init__(self, img_size: int, patch_size: int, stride: tuple[int, int], in_chans: int, dim: int):
        super().__init__()
        self.img_size = img_size
        self.grid = (img_size // stride[0], img_size // stride[1])
        padding = ((patch_size - stride[0]) // 2, (patch_size - stride[1]) // 2)
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x)  # (B, D, H, W)
        x = x.flatten(2).transpose(1, 2)  # (B, H*W, D)
        return self.norm(x)


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
        self.fused = True  # scaled_dot_product_attention; False = explicit softmax (reference)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, num_heads))
        # msclap persists this buffer; it is derived from ws, so we recompute it (see msclap_buffers).
        self.register_buffer("relative_position_index", relative_position_index(ws), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def position_bias(self) -> Tensor:
        N = self.ws * self.ws
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]  # (N*N, nH)
        return bias.view(N, N, self.num_heads).permute(2, 0, 1)  # (nH, N, N)

    def forward(self, x: Tensor, batch: int, mask: Tensor | None = None, plain: int = 0) -> Tensor:
        """Attention inside each window of a window-major stream.

        x: (nW * B, N, C) windows, window-major (all samples of window 0, then of window 1, ...);
        mask: (nW, N, N) additive shift mask in the stream's window order, or None;
        plain: how many leading windows have an all-zero mask (the fused path runs them without it).
        """
        BW, N, C = x.shape
        nH = self.num_heads
        qkv = self.qkv(x).view(BW, N, 3, nH, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (nW*B, nH, N, hd)
        bias = self.position_bias()  # (nH, N, N)
        p = self.attn_drop if self.training else 0.0
        if not self.fused:  # reference: explicit softmax over the full mask
            full = (
                bias.unsqueeze(0) if mask is None else bias + mask.unsqueeze(1).to(bias.dtype)
            )  # (nW|1, nH, N, N)
            attn = (q * self.head_dim**-0.5) @ k.transpose(-2, -1)  # (nW*B, nH, N, N)
            attn = (attn.view(-1, batch, nH, N, N) + full.unsqueeze(1)).view(BW, nH, N, N)
            attn = F.dropout(attn.softmax(dim=-1), p=p, training=self.training)
            y = (attn @ v).transpose(1, 2)  # (nW*B, N, nH, hd)
        else:
            # SDPA's fused CPU kernel is fast with a mask broadcast over dim 0 and slow with a
            # materialised per-window mask, so windows without a shift mask (the leading `plain` ones)
            # get the bias alone; only the border windows of a shifted block get bias + mask, expanded
            # over the batch (window-major order makes both groups contiguous slices).
            split = BW if mask is None else plain * batch
            parts = []
            if split > 0:
                m = bias.unsqueeze(0).to(q.dtype)  # (1, nH, N, N)
                parts.append(
                    F.scaled_dot_product_attention(q[:split], k[:split], v[:split], attn_mask=m, dropout_p=p)
                )
            if split < BW:
                assert mask is not None
                m = bias + mask[plain:].unsqueeze(1).to(bias.dtype)  # (nb, nH, N, N)
                m = m.unsqueeze(1).expand(-1, batch, -1, -1, -1).reshape(-1, nH, N, N).to(q.dtype)
                parts.append(
                    F.scaled_dot_product_attention(q[split:], k[split:], v[split:], attn_mask=m, dropout_p=p)
                )
            y = parts[0].transpose(1, 2) if len(parts) == 1 else torch.cat([t.transpose(1, 2) for t in parts])
        y = y.reshape(BW, N, C)  # (nW*B, N, C)
        return self.proj_drop(self.proj(y))


class SwinBlock(nn.Module):
    """LN -> (shifted) window attention -> residual; LN -> MLP -> residual."""

    # Chunked inference (see forward): rows per chunk of windows, 0 = off. Used only with at most
    # chunk_max_threads intra-op threads: on the shared 2-core machine, 2 threads over many small chunks
    # were slower (each op's parallel region waits for both threads, and busy cores make that wait long).
    chunk_rows = 4096
    chunk_max_threads = 1

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
        # Window-major stream layout of this block (see HTSAT.forward): windows whose shift mask is all
        # zero first, then the border windows that mix regions; tokens inside a window in msclap's order.
        order = window_token_order(H, W, ws, shift)  # (nW, N) raster positions, msclap window order
        windows = torch.arange(order.shape[0], device="cpu")
        self.plain_windows = order.shape[0]
        stream_mask = None
        if shift > 0:
            cpu_mask = shifted_window_mask(H, W, ws, shift)  # on the CPU even under a meta-device context
            border = cpu_mask.flatten(1).ne(0).any(dim=1)  # (nW,)
            windows = torch.cat([windows[~border], windows[border]])
            self.plain_windows = int((~border).sum())
            stream_mask = cpu_mask[windows]  # (nW, N, N) in stream window order
        self.register_buffer("token_order", order[windows], persistent=False)  # (nW, N)
        self.register_buffer("stream_mask", stream_mask, persistent=False)

    def stream_rows(self, batch: int) -> Tensor:
        """Raster rows (b * H * W + position) of this block's stream, (nW * B * N,)."""
        return stream_rows(self.token_order, batch, self.resolution[0] * self.resolution[1])

    def forward(self, x: Tensor, batch: int) -> Tensor:
        """x: (nW * B * N, C) tokens in this block's stream order (``stream_rows``) -> same layout.

        Every op of a block is local to a window and the stream is window-major, so without autograd the
        block runs over runs of whole windows (about ``chunk_rows`` rows each) and writes into one output:
        the intermediates (qkv, attention, the 4x-wide MLP hidden state) stay small and cache-resident
        instead of being allocated at full size (tens of MB at batch 8, which glibc maps and faults in
        afresh on every call). Same ops per window, so the same numbers. One intra-op thread only (see
        ``chunk_max_threads``).
        """
        # Not while torch.compile traces: the chunk loop would recompile per block (dynamo's limit), and
        # the compiled graph fuses the intermediates anyway.
        chunked = (
            self.chunk_rows > 0
            and torch.get_num_threads() <= self.chunk_max_threads
            and not torch.compiler.is_compiling()
        )
        if torch.is_grad_enabled() or not chunked:
            return self._forward_windows(x, batch, 0, x.shape[0] // (batch * self.ws * self.ws))
        N = self.ws * self.ws
        nW = x.shape[0] // (batch * N)
        step = max(1, self.chunk_rows // (batch * N))  # windows per chunk
        bounds = list(range(0, self.plain_windows, step)) + list(range(self.plain_windows, nW, step)) + [nW]
        if len(bounds) == 2:
            return self._forward_windows(x, batch, 0, nW)
        out = torch.empty_like(x)
        for w0, w1 in itertools.pairwise(bounds):
            rows = slice(w0 * batch * N, w1 * batch * N)
            self._forward_windows(x[rows], batch, w0, w1, out=out[rows])
        return out

    def _forward_windows(self, x: Tensor, batch: int, w0: int, w1: int, out: Tensor | None = None) -> Tensor:
        """The block on the rows of stream windows [w0, w1) (all samples of each); ``out``: no autograd."""
        R, C = x.shape
        N = self.ws * self.ws
        mask, plain = None, 0
        if self.stream_mask is not None and w1 > self.plain_windows:
            mask = self.stream_mask[w0:w1]
            plain = max(0, self.plain_windows - w0)
        windows = self.attn(self.norm1(x).view(R // N, N, C), batch, mask, plain)
        x = x + self.drop_path(windows.view(-1, batch, N * C), batch_dim=1).view(R, C)
        y = self.drop_path(self.mlp(self.norm2(x)).view(-1, batch, N * C), batch_dim=1).view(R, C)
        return x + y if out is None else torch.add(x, y, out=out)


class PatchMerging(nn.Module):
    """(B, H*W, C) -> (B, H/2*W/2, 2C): concatenate each 2x2 neighbourhood, LN, linear."""

    def __init__(self, resolution: tuple[int, int], dim: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def source_rows(self, out_rows: Tensor) -> Tensor:
        """Raster rows of the input (B * H * W) feeding output raster rows ``out_rows`` (of B * H/2 * W/2).

        (R, 4): the 2x2 neighbourhood in the order (0,0), (1,0), (0,1), (1,1) as (row, col) offsets, as
        Swin/msclap concatenate them (the reduction weights depend on it).
        """
        H, W = self.resolution
        L2 = (H // 2) * (W // 2)
        b, pos = out_rows // L2, out_rows % L2
        top_left = b * (H * W) + (pos // (W // 2)) * 2 * W + (pos % (W // 2)) * 2  # (R,)
        offsets = torch.tensor([0, W, 1, W + 1], device=out_rows.device)  # (0,0), (1,0), (0,1), (1,1)
        return top_left.unsqueeze(1) + offsets  # (R, 4)

    def reduce(self, groups: Tensor) -> Tensor:
        """(..., 4C) concatenated neighbourhoods -> (..., 2C)."""
        return self.reduction(self.norm(groups))

    def forward(self, x: Tensor) -> Tensor:
        """(B, H*W, C) raster tokens -> (B, H/2*W/2, 2C); HTSAT.forward fuses the gather instead."""
        H, W = self.resolution
        B, _, C = x.shape
        # (B, H/2, row offset, W/2, col offset, C) -> (B, H/2, W/2, col offset, row offset, C): the
        # concatenation order (0,0), (1,0), (0,1), (1,1) of Swin/msclap in one copy.
        x = x.view(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 4, 2, 5)
        return self.reduce(x.reshape(B, (H // 2) * (W // 2), 4 * C))


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

    def forward(
        self, x: Tensor, batch: int, rows: Tensor | None = None, out_rows: Tensor | None = None
    ) -> Tensor:
        """Tokens (B * H * W, C) -> (B * H' * W', C') of the next grid.

        ``rows``: raster rows (b * H * W + position) of ``x``'s rows (None: raster order). The output's
        rows are ``out_rows`` of the output grid (None: raster order). Each block reorders the stream once,
        into its own window-major layout (a single ``index_select`` instead of roll + partition + reverse
        + roll); the patch merging gathers its 2x2 neighbourhoods straight into ``out_rows`` order.
        """
        for block in self.blocks:
            wanted = block.stream_rows(batch)
            x = block(_regather(x, wanted, None if rows is None else _inverse(rows)), batch)
            rows = wanted
        inverse = None if rows is None else _inverse(rows)
        if self.downsample is None:
            target = out_rows if out_rows is not None else torch.arange(x.shape[0], device=x.device)
            return _regather(x, target, inverse)
        H, W = self.downsample.resolution
        if out_rows is None:
            out_rows = torch.arange(batch * (H // 2) * (W // 2), device=x.device)
        groups = _regather(x, self.downsample.source_rows(out_rows).flatten(), inverse)  # (4 * R', C)
        return self.downsample.reduce(groups.view(out_rows.numel(), 4 * x.shape[1]))


class HTSAT(nn.Module):
    """HTSAT audio encoder on log-mel input.

    Args:
        cfg: sizes (``HTSATConfig``; defaults are HTSAT-tiny as in msclap-2023).
        n_mels: mel bins of the front end. ``freq_ratio = spec_size // n_mels`` time chunks are stacked
            along frequency; ``spec_size`` must be divisible by ``freq_ratio`` (any multiple of n_mels
            is; otherwise the mel axis is resampled up to ``spec_size // freq_ratio`` rows, as msclap).

    ``forward(logmel)`` takes (B, T, n_mels) log-mel in dB with ``T <= spec_size * freq_ratio`` and
    returns ``AudioEncoderOutput`` with features (B, cfg.width), clipwise_logits (B, num_classes) and
    framewise logits (B, T', num_classes).
    """

    def __init__(self, cfg: HTSATConfig, n_mels: int) -> None:
        super().__init__()
        freq_ratio = cfg.spec_size // n_mels if n_mels > 0 else 0
        if freq_ratio < 1 or cfg.spec_size % freq_ratio:
            raise ValueError(
                f"spec_size ({cfg.spec_size}) must be >= n_mels ({n_mels}) and divisible by "
                f"spec_size // n_mels ({freq_ratio}); e.g. a multiple of n_mels"
            )
        self.cfg = cfg
        self.n_mels = n_mels
        self.freq_ratio = freq_ratio  # time chunks stacked along the frequency axis
        self.target_frames = cfg.spec_size * freq_ratio  # time frames the image holds
        self.target_mels = cfg.spec_size // freq_ratio  # mel rows per chunk (n_mels, or resampled up to it)
        num_stages = len(cfg.depths)

        self.bn0 = nn.BatchNorm2d(n_mels)
        self.patch_embed = PatchEmbed(
            cfg.spec_size, cfg.patch_size, cfg.patch_stride, cfg.in_chans, cfg.embed_dim
        )
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        # stochastic depth decay rule; on the CPU even under a meta-device context (converters build on meta)
        dpr = torch.linspace(0, cfg.drop_path_rate, sum(cfg.depths), device="cpu").tolist()
        H, W = self.patch_embed.grid
        self.layers = nn.ModuleList()
        for i in range(num_stages):
            start = sum(cfg.depths[:i])
            self.layers.append(
                SwinStage(
                    dim=cfg.embed_dim * 2**i,
                    resolution=(H // 2**i, W // 2**i),
                    depth=cfg.depths[i],
                    num_heads=cfg.num_heads[i],
                    cfg=cfg,
                    drop_path_ps=dpr[start : start + cfg.depths[i]],
                    downsample=i < num_stages - 1,
                )
            )
        self.final_grid = (H // 2 ** (num_stages - 1), W // 2 ** (num_stages - 1))
        if self.final_grid[0] % self.freq_ratio:
            raise ValueError(
                f"final token grid height {self.final_grid[0]} is not divisible by freq_ratio {self.freq_ratio}; "
                "adjust spec_size, patch_stride or depths"
            )
        self.norm = nn.LayerNorm(cfg.width)
        # Token-semantic head: a conv over (freq bins per chunk, 3 time steps) gives per-time class logits.
        freq_bins = self.final_grid[0] // self.freq_ratio
        self.tscam_conv = nn.Conv2d(cfg.width, cfg.num_classes, kernel_size=(freq_bins, 3), padding=(0, 1))
        # In msclap's state dict but unused by its forward (tscam on); frozen so optimisers/DDP skip it.
        self.head = nn.Linear(cfg.num_classes, cfg.num_classes)
        self.apply(self._init_weights)
        self.head.requires_grad_(False)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # As msclap/Swin: truncated normal (std 0.02) linear weights, zero biases, unit LayerNorms.
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def set_fused_attention(self, enabled: bool) -> None:
        """Use ``scaled_dot_product_attention`` (True, default) or the explicit softmax (False)."""
        for m in self.modules():
            if isinstance(m, WindowAttention):
                m.fused = enabled

    def msclap_buffers(self) -> dict[str, Tensor]:
        """The derived buffers msclap stores in its state dict, under msclap's names, as we compute them."""
        out: dict[str, Tensor] = {}
        for i, stage in enumerate(self.layers):
            for j, block in enumerate(stage.blocks):
                prefix = f"layers.{i}.blocks.{j}."
                out[prefix + "attn.relative_position_index"] = block.attn.relative_position_index
                if block.attn_mask is not None:
                    out[prefix + "attn_mask"] = block.attn_mask
        return out

    def to_image(self, x: Tensor) -> Tensor:
        """(B, 1, T, F) normalised log-mel -> (B, 1, spec_size, spec_size) image (msclap reshape_wav2img)."""
        B, C, T, Fm = x.shape
        if T < self.target_frames:  # bicubic, align_corners=True: msclap's choice, the weights saw it
            x = F.interpolate(x, size=(self.target_frames, Fm), mode="bicubic", align_corners=True)
        if Fm < self.target_mels:
            x = F.interpolate(x, size=(x.shape[2], self.target_mels), mode="bicubic", align_corners=True)
        x = x.transpose(2, 3)  # (B, 1, F, T')
        x = x.reshape(B, C, self.target_mels, self.freq_ratio, self.cfg.spec_size)  # (B, 1, F, r, S)
        x = x.transpose(2, 3)  # (B, 1, r, F, S): chunk k holds frames [k*S, (k+1)*S)
        return x.reshape(B, C, self.freq_ratio * self.target_mels, self.cfg.spec_size)  # (B, 1, S, S)

    def forward(self, logmel: Tensor) -> AudioEncoderOutput:
        if logmel.ndim != 3 or logmel.shape[-1] != self.n_mels:
            raise ValueError(
                f"expected log-mel of shape (batch, frames, {self.n_mels}), got {tuple(logmel.shape)}"
            )
        if logmel.shape[1] > self.target_frames:
            raise ValueError(
                f"HTSAT holds at most {self.target_frames} frames (spec_size * freq_ratio), got "
                f"{logmel.shape[1]}; split long audio into windows before the encoder"
            )
        x = logmel.unsqueeze(1)  # (B, 1, T, F)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # BatchNorm over mel bins, as msclap/PANNs
        x = self.to_image(x)  # (B, 1, S, S)
        x = self.pos_drop(self.patch_embed(x))  # (B, H*W, D)
        B, L, D = x.shape
        # The token stream is kept as rows (B * H * W, C) in the window-major layout of the block that
        # consumes it; every per-token op (LayerNorm, Linear, residual) is order-free, so reordering once
        # per block replaces msclap's roll/partition/reverse/roll copies with identical results.
        x = x.reshape(B * L, D)
        rows = None  # raster order
        for i, stage in enumerate(self.layers):
            nxt = self.layers[i + 1].blocks[0].stream_rows(B) if i + 1 < len(self.layers) else None
            x = stage(x, B, rows, out_rows=nxt)
            rows = nxt
        x = self.norm(x.view(B, -1, x.shape[-1]))  # (B, Hf*Wf, C), raster order
        C = x.shape[-1]
        Hf, Wf = self.final_grid
        r = self.freq_ratio
        x = x.transpose(1, 2).reshape(B, C, r, Hf // r, Wf)  # (B, C, chunk, freq, time)
        x = x.transpose(2, 3).reshape(B, C, Hf // r, r * Wf)  # (B, C, freq, chunks in time order)
        features = x.flatten(2).mean(dim=-1)  # (B, C): msclap's latent_output
        frame_logits = self.tscam_conv(x).flatten(2)  # (B, classes, r*Wf)
        clip_logits = frame_logits.mean(dim=-1)  # (B, classes)
        return AudioEncoderOutput(
            features=features, clipwise_logits=clip_logits, framewise=frame_logits.transpose(1, 2)
        )
