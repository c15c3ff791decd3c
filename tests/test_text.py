"""Tokenizer and text encoder: msclap's tokenisation facts, pooling rules, attention backends."""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer

from openclap.config import ConfigError, TextConfig
from openclap.text.encoders import TextEncoder
from openclap.text.tokenizer import TextInputError, TextTokenizer, bundled_tokenizer_dir

MSCLAP = {
    "pad_token": "!",
    "text_suffix": " <|endoftext|>",
    "max_length": 77,
    "padding": "max_length",
    "truncation": "none",
}
SMALL_GPT2 = {"n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 128, "vocab_size": 50257}
SMALL_BERT = {
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
}
BERT_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dog", "bark", "##ing", "rain", "!", ","]


@pytest.fixture(scope="module")
def msclap_tok() -> TextTokenizer:
    return TextTokenizer(TextConfig(**MSCLAP))


@pytest.fixture(scope="module")
def gpt2_encoder() -> TextEncoder:
    torch.manual_seed(0)
    return TextEncoder(TextConfig(transformer=SMALL_GPT2, **MSCLAP), pad_token_id=0).eval()


def _reference_gpt2() -> Tokenizer:
    """The bundled files read by the tokenizers library's own GPT-2 byte-level BPE class."""
    from tokenizers import ByteLevelBPETokenizer

    d = bundled_tokenizer_dir("gpt2")
    ref = ByteLevelBPETokenizer(str(d / "vocab.json"), str(d / "merges.txt"))
    ref.add_special_tokens(["<|endoftext|>"])
    return ref


def test_bundled_gpt2_ids_match_reference_and_known_ids():
    tok = TextTokenizer(TextConfig())  # bundled "gpt2", no pad configured -> eos as pad
    assert tok.pad_token == "<|endoftext|>" and tok.pad_token_id == 50256
    assert tok.vocab_size == 50257
    assert tok.token_to_id("!") == 0 and tok.token_to_id("<|endoftext|>") == 50256
    text = "a dog barking <|endoftext|>"
    ids = tok.encode(text)
    assert ids == _reference_gpt2().encode(text).ids
    # Hard facts from vocab.json: "a"=64, "Ġdog"=3290, "Ġ"=220 (the space before the special token).
    assert ids[:2] == [64, 3290] and ids[-2:] == [220, 50256]


def test_msclap_tokenisation(msclap_tok):
    assert msclap_tok.pad_token_id == 0 and msclap_tok.vocab_size == 50257  # "!" exists: no growth
    batch = msclap_tok(["a dog barking", "rain"])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == mask.shape == (2, 77) and ids.dtype == torch.int64
    expected = msclap_tok.encode("a dog barking")
    assert expected == _reference_gpt2().encode("a dog barking <|endoftext|>").ids
    assert ids[0, : len(expected)].tolist() == expected
    assert (ids[0, len(expected) :] == 0).all() and mask[0].sum() == len(expected)
    # "!" is an added special token as in msclap, so it splits: "!!" is [0, 0], not the merge 3228.
    assert msclap_tok.encode("wow!!")[1:3] == [0, 0]
    # msclap never truncates (encode_plus without truncation=True): a long text lengthens the batch.
    long = msclap_tok(["dog " * 100, "rain"])["input_ids"]
    assert long.shape[1] > 77 and long[0, long.shape[1] - 1] == 50256


def test_truncation_modes():
    text = "dog " * 100
    keep = TextTokenizer(TextConfig(text_suffix=" <|endoftext|>", max_length=16, truncation="keep_suffix"))
    ids = keep([text])["input_ids"]
    assert ids.shape == (1, 16) and ids[0, -1] == 50256
    right = TextTokenizer(TextConfig(text_suffix=" <|endoftext|>", max_length=16, truncation="right"))
    ids = right([text])["input_ids"]
    assert ids.shape == (1, 16) and 50256 not in ids[0].tolist()
    with pytest.raises(ConfigError):
        TextTokenizer(TextConfig(text_suffix=" <|endoftext|>", max_length=2, truncation="keep_suffix"))


@pytest.mark.parametrize(
    ("texts", "index"),
    [(["ok", ""], 1), (["   ", "ok"], 0), (["ok", "fine", 3], 2), (["ok", None], 1)],
)
def test_bad_text_raises_naming_index(msclap_tok, texts, index):
    with pytest.raises(TextInputError, match=f"index {index}"):
        msclap_tok(texts)


def test_bad_text_container(msclap_tok):
    with pytest.raises(TextInputError, match="non-empty"):
        msclap_tok([])
    with pytest.raises(TextInputError, match="wrap it"):
        msclap_tok("a dog")


def test_missing_tokenizer_dir_names_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        TextTokenizer(TextConfig(encoder="bert", tokenizer="bert-base-uncased", pooling="cls"))
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        TextTokenizer(TextConfig(encoder="bert", pooling="cls"), tmp_path)  # empty directory


def test_save_pretrained_round_trip(tmp_path, msclap_tok):
    texts = ["a dog barking!", "wow!! rain <|endoftext|> x", "héllo 日本"]
    msclap_tok.save_pretrained(tmp_path / "tok")
    assert (tmp_path / "tok" / "README.md").is_file()  # the licence note travels with the vocabulary
    again = TextTokenizer(TextConfig(**MSCLAP), tmp_path / "tok")
    assert again.pad_token_id == 0 and again.vocab_size == msclap_tok.vocab_size
    for key, value in msclap_tok(texts).items():
        assert torch.equal(again(texts)[key], value)
    # Without a configured pad token the saved tokenizer_config.json restores it.
    cfg = dict(MSCLAP, pad_token=None)
    assert TextTokenizer(TextConfig(**cfg), tmp_path / "tok").pad_token == "!"


@torch.no_grad()
def test_longest_padding_matches_max_length(gpt2_encoder):
    texts = ["a dog barking", "rain falling on a tin roof in the night"]
    pooled = {}
    for padding in ("max_length", "longest"):
        tok = TextTokenizer(TextConfig(**dict(MSCLAP, padding=padding)))
        batch = tok(texts)
        assert batch["input_ids"].shape[1] == (77 if padding == "max_length" else len(tok.encode(texts[1])))
        pooled[padding] = gpt2_encoder(**batch)
    assert pooled["max_length"].shape == (2, 32)
    torch.testing.assert_close(pooled["longest"], pooled["max_length"], atol=1e-5, rtol=0)


@torch.no_grad()
def test_count_nonpad_vs_last(msclap_tok, gpt2_encoder):
    last_cfg = TextConfig(transformer=SMALL_GPT2, **dict(MSCLAP, pooling="last"))
    last = TextEncoder(last_cfg, pad_token_id=0).eval()
    count_cfg = TextConfig(transformer=SMALL_GPT2, **dict(MSCLAP, pooling="count_nonpad"))
    count = TextEncoder(count_cfg, pad_token_id=0).eval()
    last.load_state_dict(gpt2_encoder.state_dict())
    count.load_state_dict(gpt2_encoder.state_dict())
    plain = msclap_tok(["a dog barking"])
    torch.testing.assert_close(count(**plain), last(**plain), atol=0, rtol=0)
    bang = msclap_tok(["a dog barking!"])  # "!" is the pad id: msclap pools one position early
    assert not torch.allclose(count(**bang), last(**bang))
    n = int(bang["attention_mask"].sum())
    hidden = last.model(**bang).last_hidden_state
    torch.testing.assert_close(count(**bang), hidden[:, n - 2], atol=1e-6, rtol=0)


def _write_bert_vocab(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(BERT_WORDS) + "\n")
    return tmp_path


def test_bert_tokenizer_and_cls_pooling(tmp_path):
    from tokenizers import BertWordPieceTokenizer

    directory = _write_bert_vocab(tmp_path)
    cfg = TextConfig(
        encoder="bert",
        pooling="cls",
        max_length=10,
        padding="max_length",
        tokenizer=str(directory),
        transformer=dict(SMALL_BERT, vocab_size=len(BERT_WORDS)),
    )
    tok = TextTokenizer(cfg)
    assert tok.pad_token == "[PAD]" and tok.pad_token_id == 0
    batch = tok(["A dog Barking!", "rain"])
    ref = BertWordPieceTokenizer(str(directory / "vocab.txt"), lowercase=True)  # the library's own BERT
    assert batch["input_ids"][0].tolist()[:7] == ref.encode("A dog Barking!").ids
    assert batch["input_ids"][0, :7].tolist() == [2, 5, 6, 7, 8, 10, 3]  # [CLS] a dog bark ##ing ! [SEP]
    torch.manual_seed(0)
    enc = TextEncoder(cfg).eval()
    assert "model.pooler.dense.weight" in enc.state_dict()  # keys as in msclap-2022's checkpoint
    assert not enc.model.pooler.dense.weight.requires_grad
    with torch.no_grad():
        pooled = enc(**batch)
        hidden = enc.model(**batch).last_hidden_state
    torch.testing.assert_close(pooled, hidden[:, 0], atol=0, rtol=0)


@torch.no_grad()
def test_every_pooling_rule_by_hand():
    """Each pooling of a BERT tower against the hidden states picked by hand, on right-padded rows of
    different lengths (5, 3 and 1 real tokens, pad id 0)."""
    ids = torch.tensor([[2, 5, 6, 7, 3, 0], [2, 9, 3, 0, 0, 0], [2, 0, 0, 0, 0, 0]])
    mask = (ids != 0).long()
    transformer = dict(SMALL_BERT, vocab_size=len(BERT_WORDS))
    torch.manual_seed(0)
    ref = TextEncoder(TextConfig(encoder="bert", pooling="pooler", transformer=transformer)).eval()
    out = ref.model(input_ids=ids, attention_mask=mask)
    hidden = out.last_hidden_state
    expected = {
        "cls": hidden[:, 0],
        "mean": torch.stack([hidden[0, :5].mean(0), hidden[1, :3].mean(0), hidden[2, 0]]),
        "last": torch.stack([hidden[0, 4], hidden[1, 2], hidden[2, 0]]),
        "count_nonpad": torch.stack([hidden[0, 4], hidden[1, 2], hidden[2, 0]]),
        "pooler": out.pooler_output,
    }
    for pooling, want in expected.items():
        enc = TextEncoder(TextConfig(encoder="bert", pooling=pooling, transformer=transformer)).eval()
        enc.load_state_dict(ref.state_dict())
        torch.testing.assert_close(enc(ids, mask), want, atol=1e-6, rtol=0, msg=pooling)
        # the pooler trains only when it is the pooling (LAION); otherwise it is frozen (msclap-2022)
        assert enc.model.pooler.dense.weight.requires_grad == (pooling == "pooler")
    assert not torch.allclose(expected["mean"], expected["cls"])  # the rules differ on these rows
    assert ref.max_positions == 64 and ref.width == 32
    roberta = dict(transformer, max_position_embeddings=66, pad_token_id=1)
    assert TextEncoder(TextConfig(encoder="roberta", pooling="cls", transformer=roberta)).max_positions == 64
    assert TextEncoder(TextConfig(transformer=SMALL_GPT2)).max_positions == 128
    with pytest.raises(ValueError, match=r"\(3, 6\) and \(3, 5\)"):
        ref(ids, mask[:, :5])
    with pytest.raises(ValueError, match="must both be"):
        ref(ids[0], mask[0])
    with pytest.raises(ValueError, match="exceeds the bert position limit 64"):
        ref(torch.ones(1, 65, dtype=torch.long), torch.ones(1, 65, dtype=torch.long))
    assert ref(torch.ones(1, 64, dtype=torch.long), torch.ones(1, 64, dtype=torch.long)).shape == (1, 32)


@pytest.mark.parametrize("encoder", ["gpt2", "bert"])
@torch.no_grad()
def test_sdpa_matches_eager(encoder, tmp_path):
    if encoder == "gpt2":
        cfg = TextConfig(transformer=SMALL_GPT2, **dict(MSCLAP, padding="longest"))
        tok = TextTokenizer(cfg)
    else:
        directory = _write_bert_vocab(tmp_path)
        cfg = TextConfig(
            encoder="bert",
            pooling="mean",
            tokenizer=str(directory),
            transformer=dict(SMALL_BERT, vocab_size=len(BERT_WORDS)),
        )
        tok = TextTokenizer(cfg)
    torch.manual_seed(0)
    sdpa = TextEncoder(cfg, pad_token_id=tok.pad_token_id).eval()
    eager = TextEncoder(cfg, pad_token_id=tok.pad_token_id, attn_implementation="eager").eval()
    eager.load_state_dict(sdpa.state_dict())
    assert sdpa.attn_implementation == "sdpa"
    assert eager.model.config._attn_implementation == "eager"  # the backend asked for is the one built
    batch = tok(["a dog barking", "rain, rain, a dog"])
    torch.testing.assert_close(sdpa(**batch), eager(**batch), atol=1e-5, rtol=0)


def test_load_transformer_weights(tmp_path):
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(1)
    GPT2Model(GPT2Config(**SMALL_GPT2)).save_pretrained(tmp_path / "gpt2")
    enc = TextEncoder(TextConfig(transformer=SMALL_GPT2))
    enc.load_transformer_weights(tmp_path / "gpt2")
    saved = GPT2Model.from_pretrained(tmp_path / "gpt2", local_files_only=True).state_dict()
    for key, value in saved.items():
        assert torch.equal(enc.model.state_dict()[key], value), key
    bigger = TextEncoder(TextConfig(transformer=dict(SMALL_GPT2, n_layer=3)))
    with pytest.raises(ValueError, match="missing_keys"):
        bigger.load_transformer_weights(tmp_path / "gpt2")
    with pytest.raises(FileNotFoundError):
        enc.load_transformer_weights(tmp_path / "nowhere")
    # BERT: the pooler comes along (msclap-2022 / LAION checkpoints hold it); another shape is refused
    from transformers import BertConfig, BertModel

    bert = dict(SMALL_BERT, vocab_size=len(BERT_WORDS))
    BertModel(BertConfig(**bert), add_pooling_layer=True).save_pretrained(tmp_path / "bert")
    enc = TextEncoder(TextConfig(encoder="bert", pooling="pooler", transformer=bert))
    enc.load_transformer_weights(tmp_path / "bert")
    saved = BertModel.from_pretrained(tmp_path / "bert", local_files_only=True).state_dict()
    assert "pooler.dense.weight" in saved
    for key, value in saved.items():
        assert torch.equal(enc.model.state_dict()[key], value), key
    wider = TextEncoder(TextConfig(encoder="bert", transformer=dict(bert, intermediate_size=48)))
    with pytest.raises(ValueError, match="mismatched_keys"):
        wider.load_transformer_weights(tmp_path / "bert")


def test_encoder_rejects_bad_config():
    with pytest.raises(ConfigError, match="pooling='pooler' needs a BERT/RoBERTa encoder, got 'gpt2'"):
        TextEncoder(TextConfig(transformer=dict(SMALL_GPT2), pooling="pooler"))
    with pytest.raises(ValueError, match="attn_implementation must be 'sdpa' or 'eager', got 'flash'"):
        TextEncoder(TextConfig(transformer=dict(SMALL_GPT2)), attn_implementation="flash")
    cfg = TextConfig(transformer=dict(SMALL_GPT2, n_positions=8), max_length=77, padding="max_length")
    enc = TextEncoder(cfg)
    batch = TextTokenizer(cfg)(["a dog"])
    with pytest.raises(ValueError, match="position limit"):
        enc(**batch)


def test_tokenizer_config_is_json(tmp_path, msclap_tok):
    msclap_tok.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert meta["pad_token"] == "!"
