"""Evaluation: zero-shot classification, retrieval and linear probe on datasets in their publishers' layouts.

    import openclap
    from openclap.eval import EmbeddingCache, load_dataset, zero_shot

    model = openclap.load("msclap-2023", checkpoint="CLAP_weights_2023.pth")
    esc50 = load_dataset("esc50", "/data/ESC-50-master")
    result = zero_shot(model, esc50, ["this is the sound of {}"])
    result.metrics["accuracy"]  # a fraction

See docs/evaluation.md for the datasets, the metrics (tie rules included) and the report format.
"""

from openclap.eval.cache import EmbeddingCache, default_cache_dir, embed_files, pipeline_fingerprint
from openclap.eval.datasets import DATASETS, EvalDataset, EvalItem, Manifest, get_adapter, load_dataset
from openclap.eval.linear_probe import LinearProbeResult, ProbeConfig, linear_probe
from openclap.eval.retrieval import RetrievalEvalResult, retrieval
from openclap.eval.suite import load_suite
from openclap.eval.zero_shot import DEFAULT_TEMPLATE, ZeroShotResult, read_templates, zero_shot

__all__ = [
    "DATASETS",
    "DEFAULT_TEMPLATE",
    "EmbeddingCache",
    "EvalDataset",
    "EvalItem",
    "LinearProbeResult",
    "Manifest",
    "ProbeConfig",
    "RetrievalEvalResult",
    "ZeroShotResult",
    "default_cache_dir",
    "embed_files",
    "get_adapter",
    "linear_probe",
    "load_dataset",
    "load_suite",
    "pipeline_fingerprint",
    "read_templates",
    "retrieval",
    "zero_shot",
]
