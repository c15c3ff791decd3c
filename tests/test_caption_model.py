"""Caption model, factory, tokenizer, converter and pipeline on the tiny preset and real audio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from openclap.caption.config import CaptionConfig, MapperConfig, get_caption_config, list_caption_models
from openclap.caption.factory import (
    create_caption_model,
    load_caption_weights,
)
from openclap.caption.generate import DecoderStepper, GenerationConfig, beam_search, greedy
from openclap.caption.model import TIED_KEY
from openclap.caption.pipeline import CaptionPipeline, load_captioner
from openclap.config import ConfigError
from openclap.factory import CheckpointError
from openclap.registry import get_model_config

DEMO = Path(__file__).resolve().parents[1] / "src" / "openclap" / "assets" / "demo"


@pytest.fixture(scope="module")
def tiny() -> CaptionPipeline:
    return load_captioner("clapcap-tiny")


def test_presets_parse_and_clapcap_reuses_the_msclap_2023_audio_tower() -> None:
    assert {"clapcap-2023", "clapcap-tiny"} <= set(list_caption_models())
    cfg = get_caption_config("clapcap-2023")
    assert cfg.audio == get_model_config("msclap-2023").audio
    assert cfg.mapper == MapperConfig()  # msclap's clapcap: transformer, prefix 40, clip 40, 8 layers
    assert cfg.embed_dim == 1024 and cfg.text.width == 768 and cfg.normalize_prefix
    with pytest.raises(ValueError, match="unknown caption model"):
        get_caption_config("nope")
    with pytest.raises(ConfigError, match="unknown key"):
        CaptionConfig.from_dict({"name": "x", "mappr": {}})


def test_mapper_shapes_and_types() -> None:
    base = get_caption_config("clapcap-tiny").to_dict()
    for kind in ("transformer", "mlp"):
        base["mapper"]["type"] = kind
        model = create_caption_model(CaptionConfig.from_dict(base))
        prefix = model.prefix(torch.randn(3, 64))
        assert prefix.shape == (3, 4, 32)
    assert any(k.startswith("mapper.net.") for k in model.state_dict())


def test_prefix_normalises_the_embedding() -> None:
    model = create_caption_model(get_caption_config("clapcap-tiny"))
    e = torch.randn(2, 64)
    assert torch.allclose(model.prefix(e), model.prefix(5 * e), atol=1e-5)


def test_teacher_forcing_loss_is_cross_entropy_over_caption_tokens(tiny: CaptionPipeline) -> None:
    model = tiny.model
    tokens = tiny.tokenizer(["a dog barks", "rain"])
    embeds = torch.randn(2, 64)
    out = model(embeds, tokens["input_ids"], tokens["attention_mask"])
    # recompute by hand for row 1 (shorter, padded): logits at prefix_len - 1 + t predict token t
    with torch.no_grad():
        n = int(tokens["attention_mask"][1].sum())
        ids = tokens["input_ids"][1:2, :n]
        full = model.decoder(
            inputs_embeds=torch.cat([model.prefix(embeds[1:2]), model.embed_tokens(ids)], 1)
        ).logits
        logp = full[0, model.prefix_length - 1 : -1].log_softmax(-1)
        nll_row1 = -logp.gather(1, ids[0][:, None]).sum()
        n0 = int(tokens["attention_mask"][0].sum())
        ids0 = tokens["input_ids"][0:1, :n0]
        full0 = model.decoder(
            inputs_embeds=torch.cat([model.prefix(embeds[:1]), model.embed_tokens(ids0)], 1)
        ).logits
        nll_row0 = -full0[0, model.prefix_length - 1 : -1].log_softmax(-1).gather(1, ids0[0][:, None]).sum()
    assert out.loss.item() == pytest.approx(((nll_row0 + nll_row1) / (n0 + n)).item(), rel=1e-5)


def test_tokenizer_stop_token_and_decode(tiny: CaptionPipeline) -> None:
    tok = tiny.tokenizer
    assert tok.stop_id == 220 and tok.suffix_ids == [220, 50256]  # msclap: " <|endoftext|>" -> 220, 50256
    ids = tok(["a dog barks"])["input_ids"][0].tolist()
    assert ids[-2:] == [220, 50256]
    assert tok.decode(ids[:-2]) == "a dog barks"


def test_kv_cache_stepper_matches_full_recomputation(tiny: CaptionPipeline) -> None:
    model = tiny.model
    torch.manual_seed(0)
    prefix = model.prefix(torch.randn(2, 64))
    stepper = DecoderStepper(model.decoder)
    tokens = torch.tensor([[5, 7, 9], [11, 13, 15]])
    with torch.no_grad():
        logits = [stepper.start(prefix)]
        for t in range(tokens.shape[1]):
            logits.append(stepper.step(tokens[:, t]))
        full = model.decoder(inputs_embeds=torch.cat([prefix, model.embed_tokens(tokens)], 1)).logits
    for t, step_logits in enumerate(logits):
        assert torch.allclose(step_logits, full[:, model.prefix_length - 1 + t], atol=1e-5)


def test_greedy_on_gpt2_equals_a_naive_loop(tiny: CaptionPipeline) -> None:
    model = tiny.model
    prefix = model.prefix(torch.randn(3, 64, generator=torch.Generator().manual_seed(1)))
    hyps = greedy(DecoderStepper(model.decoder), prefix, stop_id=220, max_length=6)
    for i, h in enumerate(hyps):
        seq = prefix[i : i + 1]
        ids = []
        with torch.no_grad():
            for _ in range(6):
                nxt = int(model.decoder(inputs_embeds=seq).logits[0, -1].argmax())
                ids.append(nxt)
                if nxt == 220:
                    break
                seq = torch.cat([seq, model.embed_tokens(torch.tensor([[nxt]]))], 1)
        assert h.tokens + ([220] if h.finished else []) == ids
    beams = beam_search(DecoderStepper(model.decoder), prefix, 220, 6, beam_size=3)
    for hs in beams:
        scores = [h.score() for h in hs]
        assert scores == sorted(scores, reverse=True)


def test_save_and_load_round_trip(tmp_path: Path, tiny: CaptionPipeline) -> None:
    out = tiny.save_pretrained(tmp_path / "cap")
    assert (out / "caption_config.json").is_file() and (out / "tokenizer" / "tokenizer.json").is_file()
    from safetensors.torch import load_file

    saved = load_file(str(out / "model.safetensors"))
    assert TIED_KEY not in saved  # tied to the embedding, stored once
    again = load_captioner(out)
    for k, v in tiny.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k]), k
    assert (
        again.model.decoder.lm_head.weight.data_ptr() == again.model.decoder.transformer.wte.weight.data_ptr()
    )
    # a CLAP model directory is refused with a pointer to the right loader
    (tmp_path / "clap").mkdir()
    (tmp_path / "clap" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="openclap.load"):
        load_captioner(tmp_path / "clap")


def test_strict_loading_names_bad_keys(tiny: CaptionPipeline) -> None:
    model = create_caption_model(get_caption_config("clapcap-tiny"))
    sd = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    sd.pop("mapper.linear.weight")
    sd["bogus"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="mapper.linear.weight") as exc:
        load_caption_weights(model, sd, "x.safetensors")
    assert "bogus" in str(exc.value)


def test_clap_audio_tower_loads_key_for_key() -> None:
    # A ClapModel of the same audio config shares the audio keys.
    from openclap.factory import create_model

    clap = create_model(get_model_config("tiny"))
    cap = create_caption_model(get_caption_config("clapcap-tiny"))
    audio = {
        k: v for k, v in clap.state_dict().items() if k.startswith(("audio_encoder.", "audio_projection."))
    }
    assert set(audio) == set(cap.audio_state_keys())
    cap.load_state_dict(audio, strict=False)
    wave = torch.randn(1, cap.config.audio.num_samples, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(cap.encode_audio(wave), clap.encode_audio(wave), atol=1e-6)


def test_caption_files_with_windows_and_errors(tiny: CaptionPipeline, tmp_path: Path) -> None:
    files = [DEMO / "4-183992-A-dog.flac", DEMO / "3_theo_0.flac"]
    gen = tiny.generation_config(beam_size=2, max_length=5)
    res = tiny.caption(files, generation=gen)
    assert [r.source for r in res] == [str(f) for f in files]
    assert all(r.ok and isinstance(r.caption, str) and r.windows == [] for r in res)  # <= 5 s: one window
    # deterministic
    assert [r.caption for r in tiny.caption(files, generation=gen)] == [r.caption for r in res]
    # a 12 s recording at 16 kHz: windows of 5 s every 2.5 s with their own captions and timestamps
    from openclap.audio.io import load_audio

    wave = np.concatenate(
        [load_audio(f, 16000) for f in (DEMO / "4-183992-A-dog.flac", DEMO / "4-160999-A-rain.flac")]
    )
    wave = np.concatenate([wave, wave[: 2 * 16000]])
    (long,) = tiny.caption([(wave, 16000)], generation=gen)
    assert long.duration == pytest.approx(12.0, abs=0.01)
    assert len(long.windows) >= 3 and long.windows[0].start == 0.0
    assert all(w.end > w.start for w in long.windows)
    json.dumps(long.to_dict())
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    out = tiny.caption([bad, files[0]], generation=gen, on_error="skip")
    assert out[0].error and out[0].caption is None and out[1].ok
    with pytest.raises(ValueError):
        tiny.caption([bad], generation=gen)


def test_sampling_through_the_pipeline_is_seeded(tiny: CaptionPipeline) -> None:
    e = np.random.default_rng(0).normal(size=(4, 64)).astype(np.float32)
    cfg = GenerationConfig(strategy="sample", max_length=6, seed=7)
    a = [h[0][0] for h in tiny.caption_embeddings(e, cfg)]
    b = [h[0][0] for h in tiny.caption_embeddings(e, cfg)]
    assert a == b
