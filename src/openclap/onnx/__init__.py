"""ONNX deployment: ``openclap export onnx`` writes the files, ``openclap.onnx.load(dir)`` runs them.

    import openclap.onnx
    model = openclap.onnx.load("exported/")  # numpy + soundfile + soxr + tokenizers + onnxruntime
    a = model.embed_audio(["dog.wav"]); t = model.embed_text(["a dog barking"])

The export side (``openclap.onnx.export``) needs PyTorch; this package's runtime does not.
"""

from __future__ import annotations

from openclap.onnx.runtime import OnnxClap, load

__all__ = ["OnnxClap", "load"]
