"""PANNs CNN14 (Kong et al., 2020), the msclap-2022 audio encoder, on log-mel input.

Six VGG-style blocks (two 3x3 conv + BatchNorm + ReLU, then 2x2 average pooling; no pooling after the
last), mean over frequency, max + mean over time, ``fc1`` + ReLU -> 2048-d ``features``, and
``fc_audioset`` -> AudioSet logits.

    log-mel (B, T=690, 64) -> bn0 over mel bins    (B, 1, 690, 64)
      -> conv_block1..5 (pool 2x2), conv_block6     (B, 2048, 21, 2)
      -> mean over freq, max + mean over time       (B, 2048)
      -> fc1 + ReLU = features                      (B, 2048)
      -> fc_audioset = clipwise_logits              (B, 527)

Checkpoint compatibility (facts from microsoft/CLAP ``msclap/models/audio.py``, ``Cnn14``): names and
shapes equal msclap's, so ``CLAP_weights_2022.pth`` loads after stripping ``audio_encoder.base.`` and
dropping ``CNN14_MSCLAP_DROPPED_KEYS`` (the torchlibrosa front end). msclap projects ``embedding``
(dropout(ReLU(fc1(x))), identity in eval), which is our ``features``; its ``clipwise_output`` is
``sigmoid(clipwise_logits)``, computed from the fc1 activation before that dropout (as here).
Differences: the front end is a separate module; training-time mixup/SpecAugment live in the data
pipeline; ``bn0`` has ``n_mels`` channels (msclap hard-codes 64, its mel count).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from openclap.audio.output import AudioEncoderOutput
from openclap.config import CNN14Config

# msclap Cnn14 keys with no counterpart here (torchlibrosa Spectrogram/LogmelFilterBank).
CNN14_MSCLAP_DROPPED_KEYS: tuple[str, ...] = (
    "spectrogram_extractor.stft.conv_real.weight",
    "spectrogram_extractor.stft.conv_imag.weight",
    "logmel_extractor.melW",
)

# PANNs/msclap dropout around the embedding layer (fixed in their code, not configurable).
_FC_DROPOUT = 0.5


class ConvBlock(nn.Module):
    """(conv3x3 -> BN -> ReLU) x 2, then average pooling."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: Tensor, pool: int) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool) if pool > 1 else x


class CNN14(nn.Module):
    """CNN14 audio encoder on log-mel input.

    Args:
        cfg: channel plan, classes and dropout (``CNN14Config``; defaults are the published CNN14).
        n_mels: mel bins of the front end (64 for msclap-2022).

    ``forward(logmel)`` takes (B, T, n_mels) log-mel in dB and returns ``AudioEncoderOutput`` with
    features (B, cfg.width), clipwise_logits (B, num_classes) and ``framewise=None``.
    """

    def __init__(self, cfg: CNN14Config, n_mels: int) -> None:
        super().__init__()
        if not cfg.channels:
            raise ValueError("CNN14Config.channels must not be empty")
        self.cfg = cfg
        self.n_mels = n_mels
        self.num_pools = len(cfg.channels) - 1  # every block but the last halves time and frequency
        if n_mels < 2**self.num_pools:
            raise ValueError(
                f"n_mels ({n_mels}) must be >= {2**self.num_pools} for {len(cfg.channels)} conv blocks"
            )
        self.bn0 = nn.BatchNorm2d(n_mels)
        c_in = 1
        for i, c_out in enumerate(cfg.channels, start=1):  # conv_block1..N, msclap's names
            self.add_module(f"conv_block{i}", ConvBlock(c_in, c_out))
            c_in = c_out
        self.fc1 = nn.Linear(cfg.width, cfg.width)
        self.fc_audioset = nn.Linear(cfg.width, cfg.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # PANNs init: Xavier-uniform weights, zero biases, unit BatchNorm.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, logmel: Tensor) -> AudioEncoderOutput:
        if logmel.ndim != 3 or logmel.shape[-1] != self.n_mels:
            raise ValueError(
                f"expected log-mel of shape (batch, frames, {self.n_mels}), got {tuple(logmel.shape)}"
            )
        if logmel.shape[1] < 2**self.num_pools:
            raise ValueError(f"CNN14 needs at least {2**self.num_pools} frames, got {logmel.shape[1]}")
        x = logmel.unsqueeze(1)  # (B, 1, T, F)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # BatchNorm over mel bins
        p = self.cfg.dropout
        for i in range(1, len(self.cfg.channels) + 1):
            block: ConvBlock = getattr(self, f"conv_block{i}")
            x = block(x, pool=2 if i <= self.num_pools else 1)  # (B, C_i, T/2^i, F/2^i)
            x = F.dropout(x, p=p, training=self.training)
        x = x.mean(dim=3)  # (B, C, T'): mean over frequency
        x = x.amax(dim=2) + x.mean(dim=2)  # (B, C): max + mean over time
        x = F.dropout(x, p=_FC_DROPOUT, training=self.training)
        x = F.relu(self.fc1(x))  # (B, C)
        features = F.dropout(x, p=_FC_DROPOUT, training=self.training)
        return AudioEncoderOutput(features=features, clipwise_logits=self.fc_audioset(x), framewise=None)


__all__ = ["CNN14", "CNN14_MSCLAP_DROPPED_KEYS", "ConvBlock"]
