"""Convert a peer's checkpoint into an openclap model directory (config.json + model.safetensors +
tokenizer/ + conversion_report.json) that ``openclap.load(DIR)`` reads offline."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from openclap.config import ClapConfig
from openclap.convert import detect_format
from openclap.convert.common import ConversionError
from openclap.convert.hf import config_from_hf, convert_hf, read_hf_dir
from openclap.convert.io import load_state_dict
from openclap.convert.laion import convert_laion, likely_laion_preset
from openclap.convert.msclap import convert_msclap, is_clapcap, likely_msclap_preset
from openclap.convert.report import ConversionReport

logger = logging.getLogger(__name__)

REPORT_NAME = "conversion_report.json"
# Tokenizer files a transformers model directory may hold (copied into the converted directory).
_HF_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "vocab.txt")


def _hf_tokenizer_dir(source: Path) -> Path | None:
    if (source / "tokenizer.json").is_file() or (
        (source / "vocab.json").is_file() and (source / "merges.txt").is_file()
    ):
        return source
    return None


def convert_to_dir(
    format: str,
    source: str | os.PathLike,
    out: str | os.PathLike,
    model: str | ClapConfig | None = None,
    tokenizer: str | os.PathLike | None = None,
    text_from: str | os.PathLike | None = None,
) -> tuple[Path, ConversionReport]:
    """Convert ``source`` (format ``msclap``, ``laion`` or ``hf``) and write an openclap model directory.

    ``model`` is the target preset (default: the one the checkpoint looks like; for ``hf`` the config is
    derived from the directory's config.json). ``tokenizer`` is a tokenizer directory (default: the
    preset's bundled tokenizer, the transformers directory's own files, or the hub cache).
    ``text_from`` is the msclap CLAP checkpoint that supplies the text tower of a clapcap checkpoint.
    """
    from openclap.factory import create_model, load_weights, resolve_config
    from openclap.hub import resolve_tokenizer
    from openclap.pipeline import ClapPipeline
    from openclap.text.tokenizer import TextTokenizer

    src = Path(source)
    if format not in ("msclap", "laion", "hf"):
        raise ValueError(f"format must be msclap, laion or hf, got {format!r}")
    if not src.exists():
        from openclap.pretrained import missing_file_message

        raise FileNotFoundError(missing_file_message(str(src), format=format))
    state_dict = load_state_dict(src)
    detected = detect_format(state_dict)
    if detected == "openclap":
        raise ConversionError(
            f"{src} is already an openclap state dict: nothing to convert. Load it with --checkpoint {src} "
            "and the --model preset it was saved from, or use its model directory with --model DIR"
        )
    if detected != format:
        hint = src.parent if detected == "hf" and src.is_file() else src  # hf converts the whole directory
        raise ConversionError(
            f"{src} looks like a {detected} checkpoint, not {format}: run `openclap convert {detected} {hint} ...`"
        )
    tok_dir: Path | None = Path(tokenizer) if tokenizer is not None else None
    if format == "hf":
        if not src.is_dir():
            raise ConversionError(
                f"{src}: the hf format needs a transformers ClapModel directory, not a file"
            )
        if model is None:
            hf_config, preprocessor = read_hf_dir(src)
            config = config_from_hf(hf_config, preprocessor, name=f"hf-{src.resolve().name}")
        else:
            config = resolve_config(model)
        tok_dir = tok_dir or _hf_tokenizer_dir(src)
        converted, report = convert_hf(state_dict, config, source=str(src))
    else:
        guess = likely_msclap_preset(state_dict) if format == "msclap" else likely_laion_preset(state_dict)
        if model is None and guess is None:
            raise ConversionError(
                f"{src}: cannot tell which preset this {format} checkpoint is for; pass --model"
            )
        config = resolve_config(model if model is not None else guess)  # type: ignore[arg-type]
        if format == "msclap":
            text_source = load_state_dict(text_from) if text_from is not None else None
            if text_source is not None and not is_clapcap(state_dict):
                raise ConversionError(
                    f"--text-from applies to clapcap checkpoints only; {src} is a CLAP checkpoint"
                )
            converted, report = convert_msclap(state_dict, config, source=str(src), text_source=text_source)
        else:
            converted, report = convert_laion(state_dict, config, source=str(src))
    tok_dir = tok_dir or resolve_tokenizer(config.text)
    text_tokenizer = TextTokenizer(config.text, tok_dir)  # fails early, naming the tokenizer files needed
    clap = create_model(config)
    load_weights(clap, converted, str(src))
    out_dir = ClapPipeline(clap, text_tokenizer).save_pretrained(out)
    (out_dir / REPORT_NAME).write_text(json.dumps(report.to_dict(), indent=1) + "\n")
    logger.info("%s", report.summary())
    return out_dir, report
