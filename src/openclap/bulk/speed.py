"""Optional speed-ups for CPU inference, each with its accuracy cost measured (see docs/inference.md)."""

from __future__ import annotations

import copy
import logging
import warnings

import torch
from torch import nn

logger = logging.getLogger(__name__)


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` dynamically quantized to int8 (CPU only).

    Weights are stored as int8, activations quantized per batch at run time
    (``torch.ao.quantization.quantize_dynamic``). Audio and text embeddings stay within a cosine of
    about 0.999 of fp32 (measured in benchmarks/embed_throughput.py); convolutions and attention
    matmuls stay fp32. The copy remembers the fp32 model's fingerprint, tagged ``+int8``.
    """
    from openclap.bulk.job import model_fingerprint

    fingerprint = model_fingerprint(model) + "+int8"
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantized = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(model).cpu().eval(), {nn.Linear}, dtype=torch.qint8
        )
    quantized.openclap_fingerprint = fingerprint
    return quantized
