"""Offline-first download of published checkpoints and tokenizers through huggingface_hub's cache.

Order: the hub cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else huggingface_hub's default, all read at
call time), then -- unless ``HF_HUB_OFFLINE`` is set -- a download. Without network the call fails fast
(a 3-second reachability check instead of huggingface_hub's retries) with a message naming the file,
its repository and the ``checkpoint=`` / ``--checkpoint`` option. Nothing is fetched at import time.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from openclap.config import TextConfig
from openclap.pretrained import PretrainedBundle, download_message

logger = logging.getLogger(__name__)

_TRUE = {"1", "on", "yes", "true"}
_REACH_TIMEOUT_S = 3.0

# Tokenizer names used by presets -> hub repositories (canonical id first, legacy alias second) and the
# files the TextTokenizer needs from them.
TOKENIZER_REPOS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "roberta-base": (("FacebookAI/roberta-base", "roberta-base"), ("vocab.json", "merges.txt")),
    "bert-base-uncased": (
        ("google-bert/bert-base-uncased", "bert-base-uncased"),
        ("vocab.txt", "tokenizer_config.json"),
    ),
    "gpt2": (("openai-community/gpt2", "gpt2"), ("vocab.json", "merges.txt")),
}


class CheckpointUnavailableError(FileNotFoundError):
    """A published checkpoint is neither cached nor downloadable."""


class TokenizerUnavailableError(FileNotFoundError):
    """A tokenizer is neither local, bundled, cached nor downloadable."""


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) asks for no network."""
    return any(
        os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_cache_dir() -> str | None:
    """The hub cache directory from the environment (None: huggingface_hub's default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def _endpoint_reachable() -> bool:
    """Whether the hub endpoint answers a TCP connect within a few seconds (skipped behind a proxy)."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=_REACH_TIMEOUT_S):
            return True
    except OSError as exc:
        logger.debug("hub endpoint %s:%s unreachable: %s", host, port, exc)
        return False


def _cached(repo_id: str, filename: str, cache_dir: str | None) -> Path | None:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, filename, cache_dir=cache_dir, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - LocalEntryNotFoundError and friends: not in the cache
        logger.debug("%s/%s not in the hub cache %s: %s", repo_id, filename, cache_dir, exc)
        return None


def _download(repo_id: str, filename: str, cache_dir: str | None) -> Path:
    """Download into the hub cache; raises ``OSError`` when offline or unreachable."""
    from huggingface_hub import hf_hub_download

    if hub_offline():
        raise OSError("HF_HUB_OFFLINE is set")
    if not _endpoint_reachable():
        raise OSError("the Hugging Face hub is not reachable (no network?)")
    return Path(hf_hub_download(repo_id, filename, cache_dir=cache_dir))


def download_checkpoint(bundle: PretrainedBundle, cache_dir: str | None = None) -> Path:
    """Path of the bundle's checkpoint: the local hub cache first, then a download."""
    cache = cache_dir or hub_cache_dir()
    found = _cached(bundle.repo_id, bundle.filename, cache)
    if found is not None:
        return found
    try:
        return _download(bundle.repo_id, bundle.filename, cache)
    except Exception as exc:
        raise CheckpointUnavailableError(
            download_message(
                bundle,
                f"{bundle.filename} is not in the hub cache ({cache or 'default location'}) and could not be "
                f"downloaded ({type(exc).__name__}: {exc})",
            )
        ) from exc


def resolve_tokenizer(cfg: TextConfig, cache_dir: str | None = None) -> Path | None:
    """Directory for the text tokenizer: None when ``cfg.tokenizer`` is bundled or a local directory
    (``TextTokenizer`` handles those), else the hub cache (then a download) of its repository."""
    from openclap.text.tokenizer import bundled_tokenizers

    name = cfg.tokenizer
    if name in bundled_tokenizers() or Path(name).expanduser().is_dir():
        return None
    if name not in TOKENIZER_REPOS:
        return None  # TextTokenizer raises its own error naming the files it needs
    repos, files = TOKENIZER_REPOS[name]
    cache = cache_dir or hub_cache_dir()
    for repo in repos:
        paths = [_cached(repo, f, cache) for f in files]
        if all(p is not None for p in paths):
            return paths[0].parent  # type: ignore[union-attr]
    try:
        paths = [_download(repos[0], f, cache) for f in files]
    except Exception as exc:
        raise TokenizerUnavailableError(
            f"tokenizer {name!r} ({', '.join(files)} from the Hugging Face repo {repos[0]}) is not bundled, not "
            f"in the hub cache and could not be downloaded ({type(exc).__name__}: {exc}). Download those files "
            f"into a directory and pass it with tokenizer=DIR (Python) or --tokenizer DIR (CLI)."
        ) from exc
    return paths[0].parent
