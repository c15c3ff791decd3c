"""Text tokenisation for the text tower, offline and with msclap's exact rules when asked.

``TextTokenizer`` turns a list of captions into ``input_ids`` / ``attention_mask`` tensors. It builds its
pipeline with the ``tokenizers`` library directly (no transformers tokenizer classes, whose constructor
arguments changed between transformers 4 and 5), from one of:

- a bundled tokenizer name (``"gpt2"``: OpenAI's GPT-2 byte-level BPE, shipped in ``openclap/assets``);
- a directory holding ``tokenizer.json`` (any Hugging Face fast tokenizer, e.g. one written by
  :meth:`TextTokenizer.save_pretrained`), or the classic files: ``vocab.json`` + ``merges.txt``
  (GPT-2 / RoBERTa byte-level BPE) or ``vocab.txt`` (BERT WordPiece).

Nothing is ever downloaded.

msclap-2023 tokenisation (microsoft/CLAP, ``msclap/CLAPWrapper.py``: ``load_clap`` and
``preprocess_text``), reproduced by ``TextConfig(pad_token="!", text_suffix=" <|endoftext|>",
max_length=77, padding="max_length", truncation="none")``:

- ``AutoTokenizer.from_pretrained("gpt2")`` then ``tokenizer.add_special_tokens({"pad_token": "!"})``.
  ``"!"`` already is GPT-2 id 0, so the vocabulary does not grow; but as an added *special* token it now
  splits the text, so ``"wow!!"`` gives ``[..., 0, 0]`` instead of the BPE merge ``"!!"`` (3228). We add
  ``"!"`` the same way, so the ids match.
- each text gets ``" <|endoftext|>"`` appended before tokenising; the space becomes its own token
  (``"Ġ"`` = 220) because the special token ``<|endoftext|>`` (50256) splits the text first.
- ``encode_plus(text, add_special_tokens=True, max_length=text_len, padding="max_length")`` without
  ``truncation=True``: transformers only truncates when padding is off, so texts longer than 77 tokens
  are *not* truncated (msclap then fails to stack a batch of unequal lengths; we pad such a batch to its
  longest text instead, which gives each text the ids msclap gives it alone).
- padding is on the right with id 0, and the text encoder pools at ``count(input_ids != 0) - 1``.

msclap-2022 uses the same ``preprocess_text`` with ``bert-base-uncased`` (no suffix, no pad token change,
``[CLS] ... [SEP]``, text length 100, same no-truncation behaviour).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from openclap.config import ConfigError, TextConfig

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

__all__ = ["TextInputError", "TextTokenizer", "bundled_tokenizer_dir", "bundled_tokenizers"]

# Special tokens of the classic tokenizer families (the values their reference tokenizers use).
_GPT2_EOS = "<|endoftext|>"
_BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# transformers adds missing specials in this order (bos, eos, unk, pad, then mask; 4.x and 5.x alike).
_ROBERTA_SPECIALS = ("<s>", "</s>", "<unk>", "<pad>")
_HUB_EXAMPLE = {"gpt2": "gpt2", "bert": "bert-base-uncased", "roberta": "roberta-base"}
_DEFAULT_PAD = {"bert": "[PAD]", "roberta": "<pad>"}  # GPT-2 has none: we fall back to its eos.

_TOKENIZER_JSON = "tokenizer.json"
_TOKENIZER_CONFIG = "tokenizer_config.json"
_ADDED_TOKENS = "added_tokens.json"
_LICENCE_FILES = ("README.md", "LICENSE", "LICENSE.txt")


class TextInputError(ValueError):
    """A text given for tokenisation is unusable (not a string, empty or whitespace only)."""


def bundled_tokenizers() -> list[str]:
    """Names of the tokenizers shipped inside the package (``TextConfig.tokenizer`` accepts them)."""
    root = resources.files("openclap") / "assets" / "tokenizers"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir())


def bundled_tokenizer_dir(name: str) -> Path:
    """Directory of the bundled tokenizer ``name``; ``FileNotFoundError`` if there is none."""
    path = resources.files("openclap") / "assets" / "tokenizers" / name
    if not path.is_dir():
        raise FileNotFoundError(f"no bundled tokenizer {name!r}; bundled: {bundled_tokenizers()}")
    # The package is installed as plain files (setuptools package-data), so this is a real path.
    return Path(str(path))


@dataclass(frozen=True)
class _Template:
    """Special tokens that the post-processor puts around a single sequence, e.g. [CLS] ... [SEP]."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]


class TextTokenizer:
    """Captions -> ``{"input_ids": (B, L) int64, "attention_mask": (B, L) int64}``, right padded.

    Args:
        cfg: the text tower config; uses ``encoder``, ``tokenizer``, ``pad_token``, ``text_suffix``,
            ``max_length``, ``padding`` and ``truncation``.
        path: tokenizer directory; overrides ``cfg.tokenizer`` (a model directory passes itself here).

    ``L`` is ``max_length`` for ``padding="max_length"`` and the longest text of the batch for
    ``"longest"``; with ``truncation="none"`` a longer text makes ``L`` longer than ``max_length``.
    """

    def __init__(self, cfg: TextConfig, path: str | os.PathLike[str] | None = None) -> None:
        self.cfg = cfg
        self.source = _resolve_dir(cfg, path)
        self._tok, file_pad = _load_pipeline(cfg.encoder, self.source)

        pad = cfg.pad_token or file_pad or _DEFAULT_PAD.get(cfg.encoder) or _GPT2_EOS
        size_before = self._tok.get_vocab_size(with_added_tokens=True)
        # Added as a special token exactly like transformers' add_special_tokens({"pad_token": ...}):
        # an existing token keeps its id (msclap's "!" stays 0); it also splits the text where it occurs.
        self._tok.add_special_tokens([AddedToken(pad, special=True, normalized=False)])
        if self._tok.get_vocab_size(with_added_tokens=True) != size_before:
            logger.info("pad token %r is new: the vocabulary grew to %d", pad, self.vocab_size)
        pad_id = self._tok.token_to_id(pad)
        if pad_id is None:  # pragma: no cover - add_special_tokens always assigns an id
            raise RuntimeError(f"pad token {pad!r} has no id after adding it")
        self.pad_token = pad
        self.pad_token_id = int(pad_id)

        self._template = _probe_template(self._tok)
        self._suffix_len = len(self._tok.encode(cfg.text_suffix, add_special_tokens=False).ids)
        self._budget = cfg.max_length - len(self._template.prefix) - len(self._template.suffix)
        if cfg.truncation == "keep_suffix" and self._budget <= self._suffix_len:
            raise ConfigError(
                f"max_length={cfg.max_length} leaves no room for text: the special tokens take "
                f"{len(self._template.prefix) + len(self._template.suffix)} and text_suffix "
                f"{cfg.text_suffix!r} takes {self._suffix_len}; raise max_length"
            )
        if self._budget <= 0:
            raise ConfigError(f"max_length={cfg.max_length} leaves no room for text; raise max_length")

    # ------------------------------------------------------------------------------------------ API
    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included (the text encoder's embedding needs this many rows)."""
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def token_to_id(self, token: str) -> int | None:
        """Id of ``token`` or None when it is not in the vocabulary."""
        return self._tok.token_to_id(token)

    def encode(self, text: str) -> list[int]:
        """Ids of one text as the batch call builds them (suffix, specials, truncation; no padding)."""
        return self._encode([text])[0]

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenise ``texts`` into right-padded ``input_ids`` and ``attention_mask``, both (B, L) int64."""
        import torch  # here, not at import: openclap.onnx tokenises without PyTorch (encode_numpy)

        input_ids, attention_mask = self.encode_numpy(texts)
        return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention_mask)}

    def encode_numpy(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``input_ids`` and ``attention_mask`` as numpy (B, L) int64, right padded (see ``__call__``)."""
        rows = self._encode(texts)
        longest = max(len(r) for r in rows)
        length = max(longest, self.cfg.max_length) if self.cfg.padding == "max_length" else longest
        input_ids = np.full((len(rows), length), self.pad_token_id, dtype=np.int64)  # (B, L)
        attention_mask = np.zeros((len(rows), length), dtype=np.int64)  # (B, L)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = row
            attention_mask[i, : len(row)] = 1
        return input_ids, attention_mask

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``tokenizer.json`` + ``tokenizer_config.json`` so ``TextTokenizer(cfg, directory)``
        reloads the same tokenizer (also loadable by transformers' ``PreTrainedTokenizerFast``).
        Licence notes found beside the source files (README.md, LICENSE) are copied too."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write(out / _TOKENIZER_JSON, self._tok.to_str(pretty=True))
        meta: dict[str, Any] = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "pad_token": self.pad_token,
            "model_max_length": self.cfg.max_length,
            "openclap_encoder": self.cfg.encoder,
        }
        _atomic_write(out / _TOKENIZER_CONFIG, json.dumps(meta, indent=2) + "\n")
        for name in _LICENCE_FILES:
            src = self.source / name
            if src.is_file() and src.resolve() != (out / name).resolve():
                shutil.copyfile(src, out / name)
        return out

    def __repr__(self) -> str:
        return (
            f"TextTokenizer(source={str(self.source)!r}, vocab_size={self.vocab_size}, "
            f"pad_token={self.pad_token!r}, pad_token_id={self.pad_token_id}, max_length={self.cfg.max_length})"
        )

    # ------------------------------------------------------------------------------------ internals
    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        _check_texts(texts)
        suffix = self.cfg.text_suffix
        encodings = self._tok.encode_batch([t + suffix for t in texts], add_special_tokens=False)
        rows = []
        for enc in encodings:
            body = list(enc.ids)
            if len(body) > self._budget and self.cfg.truncation != "none":
                if self.cfg.truncation == "keep_suffix" and self._suffix_len:
                    keep = self._budget - self._suffix_len
                    body = body[:keep] + body[-self._suffix_len :]
                else:
                    body = body[: self._budget]
            rows.append([*self._template.prefix, *body, *self._template.suffix])
        return rows


# ------------------------------------------------------------------------------------ construction
def _resolve_dir(cfg: TextConfig, path: str | os.PathLike[str] | None) -> Path:
    if path is not None:
        directory = Path(path)
        if not directory.is_dir():
            raise FileNotFoundError(
                f"tokenizer directory {str(directory)!r} does not exist; pass a directory holding "
                f"{_expected_files(cfg.encoder)}"
            )
        return directory
    if cfg.tokenizer in bundled_tokenizers():
        return bundled_tokenizer_dir(cfg.tokenizer)
    directory = Path(cfg.tokenizer).expanduser()
    if directory.is_dir():
        return directory
    raise FileNotFoundError(
        f"text tokenizer {cfg.tokenizer!r} is neither a bundled tokenizer ({bundled_tokenizers()}) nor a "
        f"directory. openclap never downloads: set TextConfig.tokenizer (or pass path=) to a local "
        f"directory holding {_expected_files(cfg.encoder)}, e.g. a snapshot of the Hugging Face repo "
        f"{_HUB_EXAMPLE[cfg.encoder]!r}"
    )


def _expected_files(encoder: str) -> str:
    classic = "vocab.txt" if encoder == "bert" else "vocab.json + merges.txt"
    return f"{_TOKENIZER_JSON} or {classic}"


def _load_pipeline(encoder: str, directory: Path) -> tuple[Tokenizer, str | None]:
    """Build the ``tokenizers`` pipeline from ``directory``; also return the pad token it declares.

    Added tokens keep the ids that transformers gives them: ``tokenizer.json``'s own list, else
    ``tokenizer_config.json``'s ``added_tokens_decoder`` and ``added_tokens.json`` (transformers 4.x
    directories), which must agree with each other and with the vocabulary.
    """
    file_pad, lowercase = _read_tokenizer_config(directory)
    added = _read_added_tokens(directory)
    if (directory / _TOKENIZER_JSON).is_file():
        tok = Tokenizer.from_file(str(directory / _TOKENIZER_JSON))
        # A tokenizer.json saved after a padded call keeps that padding/truncation; ours is applied here.
        tok.no_padding()
        tok.no_truncation()
        for token_id, token in sorted(added.items()):
            if tok.token_to_id(token.content) != token_id:
                raise ConfigError(
                    f"{str(directory)!r}: {_TOKENIZER_JSON} gives {token.content!r} id "
                    f"{tok.token_to_id(token.content)} but {_ADDED_TOKENS}/{_TOKENIZER_CONFIG} say {token_id}; "
                    "re-save the tokenizer with transformers so its files agree"
                )
        return tok, file_pad
    if encoder == "bert":
        if (directory / "vocab.txt").is_file():
            vocab = models.WordPiece.read_file(str(directory / "vocab.txt"))
            _place_added(vocab, added, directory / "vocab.txt")
            tok = _bert_pipeline(vocab, str(directory / "vocab.txt"), lowercase)
            return _add_declared(tok, added), file_pad
    elif (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
        vocab, merges = models.BPE.read_file(str(directory / "vocab.json"), str(directory / "merges.txt"))
        _place_added(vocab, added, directory / "vocab.json")
        builder = _gpt2_pipeline if encoder == "gpt2" else _roberta_pipeline
        return _add_declared(builder(models.BPE(vocab, merges)), added), file_pad
    raise FileNotFoundError(
        f"{str(directory)!r} holds no {encoder} tokenizer files: expected {_expected_files(encoder)}"
    )


def _read_added_tokens(directory: Path) -> dict[int, AddedToken]:
    """Added tokens by id from ``tokenizer_config.json``'s ``added_tokens_decoder`` and ``added_tokens.json``."""
    out: dict[int, AddedToken] = {}
    config = directory / _TOKENIZER_CONFIG
    if config.is_file():
        decoder = json.loads(config.read_text(encoding="utf-8")).get("added_tokens_decoder") or {}
        for key, entry in decoder.items():
            flags = {
                k: entry[k]
                for k in ("single_word", "lstrip", "rstrip", "normalized", "special")
                if k in entry
            }
            out[int(key)] = AddedToken(entry["content"], **flags)
    path = directory / _ADDED_TOKENS
    if path.is_file():
        for content, token_id in json.loads(path.read_text(encoding="utf-8")).items():
            known = out.get(int(token_id))
            if known is not None and known.content != content:
                raise ConfigError(
                    f"{str(path)!r} gives id {token_id} to {content!r} but {str(config)!r} gives it to "
                    f"{known.content!r}; the two files must agree (re-save the tokenizer with transformers)"
                )
            if known is None:
                out[int(token_id)] = AddedToken(content, special=True, normalized=False)
    return out


def _place_added(vocab: dict[str, int], added: dict[int, AddedToken], vocab_file: Path) -> None:
    """Put the added tokens into ``vocab`` at their declared ids; a clash with the vocabulary raises."""
    by_id = {i: t for t, i in vocab.items()}
    for token_id, token in sorted(added.items()):
        if token.content in vocab and vocab[token.content] != token_id:
            raise ConfigError(
                f"{str(vocab_file)!r} gives {token.content!r} id {vocab[token.content]} but the added-token "
                f"files say {token_id}; re-save the tokenizer with transformers so its files agree"
            )
        if by_id.get(token_id, token.content) != token.content:
            raise ConfigError(
                f"added token {token.content!r} is declared at id {token_id}, which {str(vocab_file)!r} "
                f"gives to {by_id[token_id]!r}; re-save the tokenizer with transformers so its files agree"
            )
        vocab[token.content] = token_id


def _add_declared(tok: Tokenizer, added: dict[int, AddedToken]) -> Tokenizer:
    """Register the declared added tokens (already in the vocabulary at their ids) with their flags."""
    for _, token in sorted(added.items()):
        if token.special:
            tok.add_special_tokens([token])
        else:
            tok.add_tokens([token])
    return tok


def _read_tokenizer_config(directory: Path) -> tuple[str | None, bool]:
    """Pad token and lower-casing declared by transformers' tokenizer_config.json, if present."""
    path = directory / _TOKENIZER_CONFIG
    if not path.is_file():
        return None, True
    data = json.loads(path.read_text(encoding="utf-8"))
    pad = data.get("pad_token")
    if isinstance(pad, dict):  # transformers writes AddedToken as {"content": ..., ...}
        pad = pad.get("content")
    return (pad if isinstance(pad, str) else None), bool(data.get("do_lower_case", True))


def _gpt2_pipeline(bpe: models.BPE) -> Tokenizer:
    # The pipeline of Hugging Face's `gpt2` tokenizer: byte-level pre-tokenisation without a prefix space,
    # no post-processor specials (GPT-2 adds no BOS/EOS), <|endoftext|> as the only special token.
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken(_GPT2_EOS, special=True, normalized=False)])
    return tok


def _roberta_pipeline(bpe: models.BPE) -> Tokenizer:
    # roberta-base: byte-level BPE, <s> text </s>, <mask> strips the space before it.
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in _ROBERTA_SPECIALS])
    tok.add_special_tokens([AddedToken("<mask>", special=True, lstrip=True, normalized=False)])
    cls_id, sep_id = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", sep_id), ("<s>", cls_id), trim_offsets=True, add_prefix_space=False
    )
    return tok


def _bert_pipeline(vocab: dict[str, int], vocab_txt: str, lowercase: bool) -> Tokenizer:
    # bert-base-uncased: BERT normaliser (lower-case, accents stripped with it), WordPiece with "##",
    # [CLS] text [SEP].
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    missing = [t for t in _BERT_SPECIALS if tok.token_to_id(t) is None]
    if missing:
        raise ValueError(f"{str(vocab_txt)!r} lacks BERT special tokens {missing}; is it a BERT vocab.txt?")
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in _BERT_SPECIALS])
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return tok


def _probe_template(tok: Tokenizer) -> _Template:
    """Find the special ids the post-processor puts before and after one sequence."""
    probe = "hello"
    bare = tok.encode(probe, add_special_tokens=False).ids
    full = tok.encode(probe, add_special_tokens=True).ids
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return _Template(tuple(full[:start]), tuple(full[start + len(bare) :]))
    raise ValueError(f"cannot locate the text inside the post-processed ids {full} (bare ids {bare})")


def _check_texts(texts: Sequence[str]) -> None:
    if isinstance(texts, str):
        raise TextInputError(f"expected a list of strings, got one string {texts[:40]!r}; wrap it: [text]")
    if not isinstance(texts, Sequence) or len(texts) == 0:
        raise TextInputError(f"expected a non-empty list of strings, got {texts!r}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TextInputError(
                f"text at index {i} is {type(text).__name__} ({text!r}), not str; pass captions as strings"
            )
        if not text.strip():
            raise TextInputError(
                f"text at index {i} is empty or whitespace only ({text!r}); remove it or give a caption"
            )


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
