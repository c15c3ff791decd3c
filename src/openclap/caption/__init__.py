"""Audio captioning: CLAP audio embedding -> mapping network -> GPT-2 decoder (msclap's "clapcap").

    from openclap.caption import load_captioner
    cap = load_captioner("clapcap-2023", checkpoint="clapcap_weights_2023.pth")   # or a trained model dir
    for r in cap.caption(["dog.wav", "street.flac"]):
        print(r.source, r.caption, [(w.start, w.end, w.caption) for w in r.windows])

Presets: ``list_caption_models()`` (``openclap/caption/configs/*.json``). Attributes are imported on
first use so that importing the package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_captioner": "openclap.caption.pipeline",
    "CaptionPipeline": "openclap.caption.pipeline",
    "CaptionResult": "openclap.caption.pipeline",
    "CaptionTokenizer": "openclap.caption.pipeline",
    "WindowCaption": "openclap.caption.pipeline",
    "CaptionModel": "openclap.caption.model",
    "CaptionConfig": "openclap.caption.config",
    "MapperConfig": "openclap.caption.config",
    "list_caption_models": "openclap.caption.config",
    "get_caption_config": "openclap.caption.config",
    "GenerationConfig": "openclap.caption.generate",
    "Hypothesis": "openclap.caption.generate",
    "ClapReranker": "openclap.caption.rerank",
    "Reranker": "openclap.caption.rerank",
    "create_caption_model": "openclap.caption.factory",
    "load_caption_model": "openclap.caption.factory",
    "score_captions": "openclap.caption.metrics",
    "evaluate_captioning": "openclap.caption.evaluate",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'openclap.caption' has no attribute {name!r}")
