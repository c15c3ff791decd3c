"""Fast path of HTSAT's Swin stages: the same modules and numbers as ``swin``, with less data movement.

The reference (``swin.SwinBlock.forward``) rolls, partitions, reverses and rolls back the token map in
every block: four copies of the activations per block. Here the tokens live in a window-major stream of
rows ``(window, sample, token)`` between blocks. LayerNorm, the linear layers and the residuals act per
token, so the row order does not change them; each block reorders the stream once, with one precomputed
``index_select`` (``window_token_order``: roll + window partition as one index), and patch merging
gathers its 2x2 neighbourhoods straight into the next stage's layout.

Attention: in shifted blocks, windows whose shift mask is all zero come first in the stream and run
``scaled_dot_product_attention`` with the position bias broadcast over the batch (PyTorch's fused CPU
kernel is fast with a mask broadcast over dim 0 and slow with a materialised one); only the border
windows get bias + mask expanded to the batch. Without autograd and with one intra-op thread, each block
runs over chunks of whole windows (``CHUNK_ROWS``) so the intermediates stay cache-sized.

``tests/test_audio_encoders.py`` checks this path against the reference (features and gradients).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor

from openclap.audio.swin import PatchMerging, SwinBlock, SwinStage, WindowAttention, shifted_window_mask

# Chunked inference (see block_forward): rows per chunk of windows and per intra-op thread, 0 = off.
# 4096 rows per thread keep a chunk's intermediates in each core's cache. On the quiet 2-core development
# VM with 2 threads, chunked against unchunked in interleaved rounds of one process: HTSAT 1.12x (median of
# 12 rounds), embed_audio 1.04x (ESC-10 files) and 1.16x (mixed files); benchmarks/htsat_profile.py
# --rounds N prints both rows and their per-round ratio.
# On many cores a batch's stage fits in one chunk, so nothing changes there.
CHUNK_ROWS = 4096
# oneDNN's fused linear + pointwise ops (the ones torch.compile's CPU backend emits): fc1 + GELU and
# fc2/proj + residual add in one pass over the output, which eager PyTorch otherwise reads and writes again
# per op. Same arithmetic (bit-identical in tests/test_audio_encoders.py); used without autograd in fp32
# on the CPU when this PyTorch build has oneDNN.
FUSED_LINEAR = True


def _fused(x: Tensor, module: torch.nn.Module, *linears: torch.nn.Module) -> bool:
    """Whether ``linears`` (plain float ``nn.Linear``s: not int8 copies) of ``module`` may run fused on ``x``."""
    return (
        FUSED_LINEAR
        and all(type(m) is torch.nn.Linear for m in linears)
        and not torch.is_grad_enabled()
        and not module.training
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and not torch.compiler.is_compiling()
        and not torch.is_autocast_enabled("cpu")
    )


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


def attach_stream_layout(block: SwinBlock) -> None:
    """Register the block's stream layout as non-persistent buffers (they follow ``.to(device)``).

    ``token_order`` (nW, N): raster position of each window's tokens, windows whose shift mask is all zero
    first, then the border windows that mix regions; ``stream_mask`` (nW, N, N): the shift mask in that
    window order (None in unshifted blocks); ``plain_windows``: how many windows come before the border.
    """
    H, W = block.resolution
    order = window_token_order(H, W, block.ws, block.shift)  # (nW, N) raster positions, msclap order
    windows = torch.arange(order.shape[0], device="cpu")
    block.plain_windows = order.shape[0]
    stream_mask = None
    if block.shift > 0:
        cpu_mask = shifted_window_mask(H, W, block.ws, block.shift)  # CPU even under a meta-device context
        border = cpu_mask.flatten(1).ne(0).any(dim=1)  # (nW,)
        windows = torch.cat([windows[~border], windows[border]])
        block.plain_windows = int((~border).sum())
        stream_mask = cpu_mask[windows]  # (nW, N, N) in stream window order
    block.register_buffer("token_order", order[windows], persistent=False)
    block.register_buffer("stream_mask", stream_mask, persistent=False)


def block_stream_rows(block: SwinBlock, batch: int) -> Tensor:
    """Raster rows (b * H * W + position) of the block's stream, (nW * B * N,)."""
    return stream_rows(block.token_order, batch, block.resolution[0] * block.resolution[1])


def _regather(x: Tensor, rows: Tensor, inverse: Tensor | None) -> Tensor:
    """Reorder stream rows: ``rows`` are raster rows wanted, ``inverse`` maps raster row -> row of ``x``."""
    index = rows if inverse is None else inverse[rows]
    # The identity check reads the index's values: skipped while compiling/exporting (data-dependent).
    if (
        not torch.compiler.is_compiling()
        and index.numel() == x.shape[0]
        and torch.equal(index, torch.arange(x.shape[0], device=index.device))
    ):
        return x  # already in this order (e.g. one window covering the map)
    return x.index_select(0, index)


def _inverse(rows: Tensor) -> Tensor:
    """Inverse permutation: raster row -> position in the stream."""
    inv = torch.empty_like(rows)
    inv[rows] = torch.arange(rows.numel(), device=rows.device)
    return inv


def attention(
    attn: WindowAttention,
    x: Tensor,
    batch: int,
    mask: Tensor | None,
    plain: int,
    residual: Tensor | None = None,
) -> Tensor:
    """Attention inside each window of a window-major stream (plus ``residual`` when given).

    x: (nW * B, N, C) windows, window-major (all samples of window 0, then of window 1, ...);
    mask: (nW, N, N) additive shift mask in the stream's window order, or None;
    plain: how many leading windows have an all-zero mask (they run without it);
    residual: (nW * B, N, C) added to the output (fused into the projection where possible).
    """
    BW, N, C = x.shape
    nH = attn.num_heads
    q, k, v = attn.qkv_heads(x)  # each (nW*B, nH, N, hd)
    bias = attn.position_bias()  # (nH, N, N)
    p = attn.attn_drop if attn.training else 0.0
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
    y = parts[0] if len(parts) == 1 else torch.cat(parts)
    y = y.transpose(1, 2).reshape(BW, N, C)  # (nW*B, N, C)
    if residual is not None and _fused(y, attn, attn.proj):
        return torch.ops.mkldnn._linear_pointwise.binary(y, residual, attn.proj.weight, attn.proj.bias, "add")
    y = attn.proj_drop(attn.proj(y))
    return y if residual is None else residual + y


def _mlp(block: SwinBlock, x: Tensor, residual: Tensor | None = None) -> Tensor:
    """The block's MLP on ``x`` (plus ``residual`` when given)."""
    mlp = block.mlp
    if (
        _fused(x, mlp, mlp.fc1, mlp.fc2)
        and isinstance(mlp.act, torch.nn.GELU)
        and mlp.act.approximate == "none"
    ):
        h = torch.ops.mkldnn._linear_pointwise(x, mlp.fc1.weight, mlp.fc1.bias, "gelu", [], "none")
        if residual is not None:
            return torch.ops.mkldnn._linear_pointwise.binary(h, residual, mlp.fc2.weight, mlp.fc2.bias, "add")
        return mlp.fc2(h)
    h = mlp.fc1(x)
    if not torch.is_grad_enabled() and mlp.act.approximate == "none":
        h = torch.ops.aten.gelu_(h)  # in place without autograd: one hidden-size buffer less
    else:
        h = mlp.act(h)
    y = mlp.drop(mlp.fc2(mlp.drop(h)))
    return y if residual is None else residual + y


def _block_windows(block: SwinBlock, x: Tensor, batch: int, w0: int, w1: int, out: Tensor | None) -> Tensor:
    """The block on the rows of stream windows [w0, w1) (all samples of each); ``out``: no autograd."""
    R, C = x.shape
    N = block.ws * block.ws
    mask, plain = None, 0
    if block.stream_mask is not None and w1 > block.plain_windows:
        mask = block.stream_mask[w0:w1]
        plain = max(0, block.plain_windows - w0)
    if not block.training or block.drop_path.p == 0.0:  # no stochastic depth: residuals fused where possible
        x = attention(block.attn, block.norm1(x).view(R // N, N, C), batch, mask, plain, x.view(R // N, N, C))
        x = _mlp(block, block.norm2(x.view(R, C)), x.view(R, C))
        return x if out is None else out.copy_(x)
    windows = attention(block.attn, block.norm1(x).view(R // N, N, C), batch, mask, plain)
    x = x + block.drop_path(windows.view(-1, batch, N * C), batch_dim=1).view(R, C)
    y = block.drop_path(_mlp(block, block.norm2(x)).view(-1, batch, N * C), batch_dim=1).view(R, C)
    return x + y if out is None else torch.add(x, y, out=out)


def block_forward(block: SwinBlock, x: Tensor, batch: int) -> Tensor:
    """x: (nW * B * N, C) tokens in the block's stream order (``block_stream_rows``) -> same layout.

    Every op of a block is local to a window and the stream is window-major, so without autograd the
    block runs over runs of whole windows (about ``CHUNK_ROWS`` rows each) and writes into one output: the
    intermediates (qkv, attention, the 4x-wide MLP hidden state) stay small and cache-resident instead of
    being allocated at full size (tens of MB at batch 8, which glibc maps and faults in afresh on every
    call). Same ops per window, so the same numbers. A chunk holds about ``CHUNK_ROWS`` rows per intra-op
    thread.
    """
    # Not while torch.compile traces: the chunk loop would recompile per block (dynamo's limit), and the
    # compiled graph fuses the intermediates anyway.
    chunked = CHUNK_ROWS > 0 and not torch.compiler.is_compiling() and not torch.is_grad_enabled()
    N = block.ws * block.ws
    nW = x.shape[0] // (batch * N)
    if not chunked:
        return _block_windows(block, x, batch, 0, nW, None)
    step = max(1, CHUNK_ROWS * torch.get_num_threads() // (batch * N))  # windows per chunk
    bounds = list(range(0, block.plain_windows, step)) + list(range(block.plain_windows, nW, step)) + [nW]
    if len(bounds) == 2:
        return _block_windows(block, x, batch, 0, nW, None)
    out = torch.empty_like(x)
    for w0, w1 in itertools.pairwise(bounds):
        rows = slice(w0 * batch * N, w1 * batch * N)
        _block_windows(block, x[rows], batch, w0, w1, out[rows])
    return out


def merge_source_rows(merge: PatchMerging, out_rows: Tensor) -> Tensor:
    """Raster rows of the input (B * H * W) feeding output raster rows ``out_rows`` (of B * H/2 * W/2).

    (R, 4): the 2x2 neighbourhood in the order (0,0), (1,0), (0,1), (1,1) as (row, col) offsets, as
    Swin/msclap concatenate them (the reduction weights depend on it).
    """
    H, W = merge.resolution
    L2 = (H // 2) * (W // 2)
    b, pos = out_rows // L2, out_rows % L2
    top_left = b * (H * W) + (pos // (W // 2)) * 2 * W + (pos % (W // 2)) * 2  # (R,)
    offsets = torch.tensor([0, W, 1, W + 1], device=out_rows.device)  # (0,0), (1,0), (0,1), (1,1)
    return top_left.unsqueeze(1) + offsets  # (R, 4)


def stage_forward(
    stage: SwinStage, x: Tensor, batch: int, rows: Tensor | None = None, out_rows: Tensor | None = None
) -> Tensor:
    """Tokens (B * H * W, C) -> (B * H' * W', C') of the next grid.

    ``rows``: raster rows (b * H * W + position) of ``x``'s rows (None: raster order). The output's rows
    are ``out_rows`` of the output grid (None: raster order). Each block reorders the stream once, into its
    own window-major layout; the patch merging gathers its 2x2 neighbourhoods straight into ``out_rows``.
    """
    for block in stage.blocks:
        wanted = block_stream_rows(block, batch)
        x = block_forward(block, _regather(x, wanted, None if rows is None else _inverse(rows)), batch)
        rows = wanted
    inverse = None if rows is None else _inverse(rows)
    if stage.downsample is None:
        target = out_rows if out_rows is not None else torch.arange(x.shape[0], device=x.device)
        return _regather(x, target, inverse)
    H, W = stage.downsample.resolution
    if out_rows is None:
        out_rows = torch.arange(batch * (H // 2) * (W // 2), device=x.device)
    groups = _regather(x, merge_source_rows(stage.downsample, out_rows).flatten(), inverse)  # (4 * R', C)
    return stage.downsample.reduce(groups.view(out_rows.numel(), 4 * x.shape[1]))


def stages_forward(stages: list[SwinStage], x: Tensor) -> Tensor:
    """(B, H*W, C) raster tokens through all stages -> (B, H_f*W_f, C_f) raster tokens, like the reference."""
    B, L, D = x.shape
    x = x.reshape(B * L, D)
    rows = None  # raster order
    for i, stage in enumerate(stages):
        nxt = block_stream_rows(stages[i + 1].blocks[0], B) if i + 1 < len(stages) else None
        x = stage_forward(stage, x, B, rows, out_rows=nxt)
        rows = nxt
    return x.view(B, -1, x.shape[-1])
