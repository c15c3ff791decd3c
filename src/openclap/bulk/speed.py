"""Optional speed-ups for CPU inference, each with its accuracy cost measured (see docs/inference.md)."""

from __future__ import annotations

import copy
import logging
import warnings

import torch
from torch import nn

logger = logging.getLogger(__name__)


# Linear layers kept in fp32 by quantize_int8 (regexes over module names), chosen by measuring each group
# alone (benchmarks/int8_sensitivity.py): the projection heads (their output is the embedding itself; small,
# so keeping them costs little time) and the patch-merging reductions (LayerNorm'd 4C-wide inputs whose
# per-tensor activation scale is set by a few large channels); and the whole text tower: BERT's and RoBERTa's
# blocks in int8 measured min cosine 0.9975 / 0.9964 to fp32 on full-size msclap-2022 / LAION networks
# (tests/test_int8.py, slow), under the 0.999 the audio tower keeps, and prompts are embedded once and cached.
# (GPT-2's blocks are Conv1D modules, never quantized: msclap-2023's text tower was always fp32.)
INT8_KEEP_FP32: tuple[str, ...] = (
    r"^audio_projection\.",
    r"^text_projection\.",
    r"\.downsample\.reduction$",
    r"^text_encoder\.",
)


def quantize_int8(
    model: nn.Module,
    keep_fp32: tuple[str, ...] | None = None,
    per_channel: bool = True,
    inplace: bool = False,
) -> nn.Module:
    """A copy of ``model`` with its ``nn.Linear`` layers dynamically quantized to int8 (CPU only).

    Weights are stored as int8 with one scale per output channel (``per_channel``), activations quantized
    per call at run time (``torch.ao.quantization.quantize_dynamic``); layers whose name matches a regex of
    ``keep_fp32`` (default ``INT8_KEEP_FP32``) stay fp32, as do convolutions and attention matmuls.
    Accuracy and speed are measured in benchmarks/int8_sensitivity.py and benchmarks/embed_throughput.py.
    The copy remembers the fp32 model's fingerprint, tagged ``+int8``. ``inplace=True`` quantizes ``model``
    itself and returns it: for a caller that owns the model, no second float32 copy in memory meanwhile.
    """
    import re

    from openclap.errors import model_fingerprint

    keep = INT8_KEEP_FP32 if keep_fp32 is None else keep_fp32
    fingerprint = model_fingerprint(model) + "+int8"
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        qconfig = (
            torch.ao.quantization.per_channel_dynamic_qconfig
            if per_channel
            else torch.ao.quantization.default_dynamic_qconfig
        )
        spec = {
            name: qconfig
            for name, module in model.named_modules()
            if type(module) is nn.Linear and not any(re.search(k, name) for k in keep)
        }
        target = model if inplace else copy.deepcopy(model)
        quantized = torch.ao.quantization.quantize_dynamic(
            target.cpu().eval(), spec, dtype=torch.qint8, inplace=inplace
        )
    quantized.openclap_fingerprint = fingerprint
    logger.info("int8: %d Linear layers quantized, kept fp32: %s", len(spec), keep)
    return quantized
