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

LAION-CLAP's HTSAT (``laion_clap/clap_module/htsat.py``) has the same module tree and forward, with
these differences: it always builds the tscam head; with ``enable_fusion`` it adds ``mel_conv1d`` and
``fusion_model`` (AFF/iAFF/DAF over a global view plus 3 local crops of long clips, and a 2-D variant
inside ``patch_embed``) which are not implemented here; it also returns a fine-grained (per-time)
embedding. Its front end runs at 48 kHz with hop 480.
"""

from __future__ import annotations

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


def drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    """Stochastic depth: zero whole samples of a residual branch with probability p, rescale the rest."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.p, self.training)

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
    region = torch.zeros(1, H, W, 1)
    bounds = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    label = 0
    for hs in bounds:
        for wsl in bounds:
            region[:, hs, wsl, :] = label
            label += 1
    region_windows = window_partition(region, ws).squeeze(-1)  # (nW, N)
    diff = region_windows[:, None, :] - region_windows[:, :, None]  # (nW, N, N)
    return torch.zeros_like(diff).masked_fill(diff != 0, _MASK_VALUE)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


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

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B*nW, N, C) windows; mask: (nW, N, N) additive shift mask or None."""
        BW, N, C = x.shape
        qkv = self.qkv(x).view(BW, N, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B*nW, nH, N, hd)
        bias = self.position_bias().unsqueeze(0)  # (1, nH, N, N)
        if mask is not None:
            nW = mask.shape[0]
            bias = bias + mask.unsqueeze(1).to(bias.dtype)  # (nW, nH, N, N)
            # Materialised per window (the size of one attention matrix): a 4-D mask matching the batch
            # keeps SDPA on its fused CPU kernel; 5-D or (nW, ...)-broadcast masks fall back to a slow path.
            bias = bias.unsqueeze(0).expand(BW // nW, -1, -1, -1, -1).reshape(BW, self.num_heads, N, N)
        p = self.attn_drop if self.training else 0.0
        if self.fused:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=p)
        else:
            attn = (q * self.head_dim**-0.5) @ k.transpose(-2, -1) + bias  # (B*nW, nH, N, N)
            attn = F.dropout(attn.softmax(dim=-1), p=p, training=self.training)
            y = attn @ v
        y = y.transpose(1, 2).reshape(BW, N, C)  # (B*nW, N, C)
        return self.proj_drop(self.proj(y))


class SwinBlock(nn.Module):
    """LN -> (shifted) window attention -> residual; LN -> MLP -> residual."""

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
        self.drop_path = DropPath(drop_path_p) if drop_path_p > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio), cfg.drop_rate)
        # msclap persists attn_mask for shifted blocks; we recompute it (see HTSAT.msclap_buffers).
        mask = shifted_window_mask(H, W, ws, shift) if shift > 0 else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        H, W = self.resolution
        B, L, C = x.shape
        shortcut = x
        x = self.norm1(x).view(B, H, W, C)
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = window_partition(x, self.ws)  # (B*nW, ws*ws, C)
        windows = self.attn(windows, self.attn_mask)  # (B*nW, ws*ws, C)
        x = window_reverse(windows, self.ws, H, W)  # (B, H, W, C)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        x = shortcut + self.drop_path(x.reshape(B, L, C))
        return x + self.drop_path(self.mlp(self.norm2(x)))  # (B, H*W, C)


class PatchMerging(nn.Module):
    """(B, H*W, C) -> (B, H/2*W/2, 2C): concatenate each 2x2 neighbourhood, LN, linear."""

    def __init__(self, resolution: tuple[int, int], dim: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        H, W = self.resolution
        B, _, C = x.shape
        x = x.view(B, H, W, C)
        # Order (0,0), (1,0), (0,1), (1,1) as in Swin/msclap; the reduction weights depend on it.
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        x = x.view(B, -1, 4 * C)  # (B, H/2*W/2, 4C)
        return self.reduction(self.norm(x))


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
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


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
        dpr = torch.linspace(0, cfg.drop_path_rate, sum(cfg.depths)).tolist()  # stochastic depth decay rule
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
        for stage in self.layers:
            x = stage(x)  # (B, H/2^i * W/2^i, D*2^i)
        x = self.norm(x)  # (B, Hf*Wf, C)
        B, _, C = x.shape
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
