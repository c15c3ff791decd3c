"""Train a GPT-2-style byte-level BPE tokenizer on captions (for text towers trained from scratch)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

logger = logging.getLogger(__name__)

EOS = "<|endoftext|>"  # GPT-2's only special token; also the pad token of trained tokenizers


def train_bpe(
    captions: Iterable[str], out_dir: str | Path, vocab_size: int = 2000, min_frequency: int = 2
) -> Path:
    """Train byte-level BPE (GPT-2's pre-tokenisation, no prefix space) and write ``tokenizer.json`` +
    ``tokenizer_config.json`` to ``out_dir``; ``TextTokenizer(cfg, out_dir)`` loads it.

    The vocabulary holds the 256 byte symbols, ``<|endoftext|>`` (id 0) and up to ``vocab_size`` merges'
    tokens in total. Training is deterministic for the same captions in the same order.
    """
    texts = [c.strip() for c in captions if c and c.strip()]
    if not texts:
        raise ValueError("no captions to train a tokenizer on; check the manifests' caption column")
    if vocab_size < 300:
        raise ValueError(f"vocab_size must be >= 300 (256 bytes + specials + merges), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "tokenizer.json.tmp"
    tmp.write_text(tok.to_str(pretty=True), encoding="utf-8")
    tmp.replace(out / "tokenizer.json")
    meta = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "pad_token": EOS,
        "eos_token": EOS,
        "bos_token": EOS,
        "unk_token": EOS,
        "openclap_encoder": "gpt2",
    }
    (out / "tokenizer_config.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    logger.info(
        "trained a byte-level BPE with %d tokens on %d captions -> %s", tok.get_vocab_size(), len(texts), out
    )
    return out
