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
- Two implementations of the Swin stages over the same modules and weights: ``swin`` is the plain
  reference (roll + window partition, as the Swin paper's code and msclap), ``swin_fast`` keeps the tokens
  in each block's window order and uses ``scaled_dot_product_attention`` (same numbers to ~1e-6, fewer
  copies). The fast path is the default; ``HTSAT.set_fast_path(False)`` selects the reference.

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

from openclap.audio import swin_fast
from openclap.audio.output import AudioEncoderOutput
from openclap.audio.swin import SwinStage
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
        self.fast_path = True  # see set_fast_path
        for stage in self.layers:
            for block in stage.blocks:
                swin_fast.attach_stream_layout(block)

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

    def set_fast_path(self, enabled: bool) -> None:
        """Run the Swin stages with ``swin_fast`` (True, default) or the plain reference in ``swin`` (False)."""
        self.fast_path = enabled

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
        if self.fast_path:
            x = swin_fast.stages_forward(list(self.layers), x)
        else:
            for stage in self.layers:
                x = stage(x)
        x = self.norm(x)  # (B, Hf*Wf, C), raster order
        B = x.shape[0]
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
