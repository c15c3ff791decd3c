"""Reranking of caption candidates on real audio: the ``Reranker`` protocol passed to ``caption()``, CLAP
audio-text cosine (the built-in reranker), the trainer's choice of decoding on a validation split, and
`openclap caption --rerank`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from openclap import cli
from openclap.caption.pipeline import CaptionPipeline, load_captioner
from openclap.caption.rerank import CLAP_SUBDIR, ClapReranker, rerank
from openclap.factory import create_model
from openclap.pipeline import ClapPipeline
from openclap.registry import get_model_config
from openclap.text.tokenizer import TextTokenizer
from openclap_train.captioning import CaptionTrainConfig, build_caption_model, train_captioning
from openclap_train.config import ManifestSpec, OptimConfig

BEAM = 6


@pytest.fixture(scope="module")
def setup(write_esc10_caption_manifest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("rerank")
    cfg = get_model_config("tiny")
    clap_dir = ClapPipeline(create_model(cfg, seed=3), TextTokenizer(cfg.text)).save_pretrained(root / "clap")
    manifest, _, test = write_esc10_caption_manifest(root / "manifest.csv")
    tcfg = CaptionTrainConfig(
        clap=str(clap_dir),
        mapper={"prefix_length": 4, "clip_length": 4, "num_layers": 1, "num_heads": 2},
        max_length=10,
        train_manifest=[ManifestSpec(path=str(manifest), split="train")],
        seed=1,
    )
    model, tokenizer = build_caption_model(tcfg)
    pipe = CaptionPipeline(model.eval(), tokenizer)
    paths = [r["path"] for r in test]
    return {
        "root": root,
        "clap": clap_dir,
        "manifest": str(manifest),
        "pipe": pipe,
        "paths": paths,
        "embeds": pipe.audio.embed_audio(paths),
        "reranker": ClapReranker.load(clap_dir),
    }


def _cosines(setup: dict, texts: list[str], row: int) -> np.ndarray:
    """CLAP cosines computed independently of the reranker: the CLAP model's own audio and text towers."""
    clap = ClapPipeline(
        create_model(get_model_config("tiny"), seed=3), TextTokenizer(get_model_config("tiny").text)
    )
    audio = clap.embed_audio([setup["paths"][row]])[0]
    return clap.embed_text(texts) @ audio


def test_clap_rerank_picks_the_candidate_clap_scores_highest(setup: dict) -> None:
    pipe: CaptionPipeline = setup["pipe"]
    gen = pipe.generation_config(beam_size=BEAM)
    plain = pipe.caption_embeddings(setup["embeds"], gen)
    ranked = pipe.caption_embeddings(setup["embeds"], gen, reranker=setup["reranker"])
    assert len(ranked) == len(plain) == 4
    for row, (before, after) in enumerate(zip(plain, ranked)):
        texts = list(dict.fromkeys(t for t, _ in before))
        assert len(texts) >= 2  # something to choose from
        cos = dict(zip(texts, _cosines(setup, texts, row)))
        # same candidate set (duplicates of one text kept once), ordered by the CLAP score
        assert [t for t, _ in after] == sorted(texts, key=lambda t: (-cos[t], texts.index(t)))
        for text, hyp in after:
            assert hyp.clap_score == pytest.approx(cos[text], abs=1e-5)
        # the chosen caption has the highest CLAP score of the beam: never below the decoder's own choice
        assert cos[after[0][0]] == pytest.approx(max(cos.values()), abs=1e-6)
        assert cos[after[0][0]] >= cos[before[0][0]] - 1e-6
    # a large language-model weight gives back the decoder's order
    lm = pipe.caption_embeddings(setup["embeds"], gen, reranker=ClapReranker(setup["reranker"].clap, 1e6))
    for before, after in zip(plain, lm):
        assert [t for t, _ in after] == list(dict.fromkeys(t for t, _ in before))


def test_any_reranker_plugs_into_caption(setup: dict) -> None:
    """The protocol: caption() hands each row's candidates to the reranker and keeps its first."""
    pipe: CaptionPipeline = setup["pipe"]

    class Shortest:  # a reranker of our own: the shortest caption wins
        calls = 0

        def rerank(self, audio_embeds, candidates):
            Shortest.calls += 1
            assert len(audio_embeds) == len(candidates)
            return [sorted(row, key=lambda c: (len(c[0]), c[0])) for row in candidates]

    gen = pipe.generation_config(beam_size=BEAM)
    beams = pipe.caption_embeddings(setup["embeds"], gen)
    results = pipe.caption(setup["paths"], generation=gen, windows=False, reranker=Shortest())
    assert Shortest.calls == 1
    assert [r.caption for r in results] == [
        min((t for t, _ in row), key=lambda t: (len(t), t)) for row in beams
    ]


def test_rerank_function_keys_ties_and_errors(setup: dict) -> None:
    pipe: CaptionPipeline = setup["pipe"]
    hyps = pipe.caption_embeddings(setup["embeds"][:1], pipe.generation_config(beam_size=3))[0]
    texts = [t for t, _ in hyps]
    out = rerank(hyps, [0.5, 0.5, 0.5])  # a tie keeps the decoder's order
    assert [t for t, _ in out] == list(dict.fromkeys(texts))
    out = rerank(hyps, [0.0, 0.0, 0.9])
    assert out[0][0] == texts[2] and out[0][1].clap_score == 0.9
    with pytest.raises(ValueError, match="scores"):
        rerank(hyps, [0.1])
    with pytest.raises(ValueError, match="lm_weight"):
        ClapReranker(setup["reranker"].clap, -1.0)
    other = ClapPipeline(
        create_model(get_model_config("tiny"), seed=4), TextTokenizer(get_model_config("tiny").text)
    )
    with pytest.raises(ValueError, match="audio tower"):  # the cosine needs the captioner's own audio tower
        pipe.caption_embeddings(
            setup["embeds"], pipe.generation_config(beam_size=2), reranker=ClapReranker(other)
        )


def test_cli_reranks_with_the_bundled_clap_model(setup: dict, monkeypatch, capsys) -> None:
    pipe: CaptionPipeline = setup["pipe"]
    out = pipe.save_pretrained(setup["root"] / "cap")
    setup["reranker"].clap.save_pretrained(out / CLAP_SUBDIR)  # as the captioning trainer writes final/
    gen = pipe.generation_config(beam_size=BEAM)
    expect = [row[0][0] for row in pipe.caption_embeddings(setup["embeds"], gen, reranker=setup["reranker"])]
    modules = tuple(cli.COMMAND_MODULES)
    if "openclap.commands.caption" not in modules:
        monkeypatch.setattr(cli, "COMMAND_MODULES", modules + ("openclap.commands.caption",))
    argv = ["caption", *setup["paths"][:2], "--model", str(out), "--beam", str(BEAM), "--json"]
    assert cli.main([*argv, "--rerank", "clap"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["caption"] for d in lines] == expect[:2] and all(d["clap_score"] is not None for d in lines)
    with pytest.raises(SystemExit):  # removed with the other experiment knobs: an argparse error
        cli.main([*argv, "--rerank", "consensus"])
    assert cli.main([*argv, "--num-samples", "6"]) == 2  # several draws need --sample
    capsys.readouterr()
    # a caption model without clap/: --rerank clap needs --rerank-model
    plain = CaptionPipeline(pipe.model, pipe.tokenizer).save_pretrained(setup["root"] / "plain")
    argv = ["caption", setup["paths"][0], "--model", str(plain), "--beam", str(BEAM), "--rerank", "clap"]
    assert cli.main(argv) == 2
    assert cli.main([*argv, "--rerank-model", str(setup["clap"])]) == 0


def test_trainer_chooses_the_decoding_on_validation_cider(setup: dict) -> None:
    specs = {"path": setup["manifest"]}
    candidates = [{"beam_size": 2}, {"beam_size": 4, "rerank": "clap"}, {"strategy": "greedy"}]
    cfg = CaptionTrainConfig(
        clap=str(setup["clap"]),
        mapper={"prefix_length": 4, "clip_length": 4, "num_layers": 1, "num_heads": 2},
        max_length=10,
        train_manifest=[ManifestSpec(**specs, split="train")],
        val_manifest=[ManifestSpec(**specs, split="test")],
        test_manifest=[ManifestSpec(**specs, split="test")],
        batch_size=4,
        optim=OptimConfig(lr=1e-3, warmup_steps=2, weight_decay=0.01, min_lr_ratio=0.05, grad_clip=1.0),
        max_steps=4,
        log_every=2,
        eval_every=4,
        save_every=4,
        decoding_candidates=candidates,
    )
    result = train_captioning(cfg, setup["root"] / "run")
    ev = json.loads((setup["root"] / "run" / "eval.json").read_text())
    val = ev["validation"]
    assert [r["decoding"] for r in val["candidates"]] == candidates and val["val_clips"] == 4
    assert val["chosen_on"] == "cider_d"
    best = max(range(3), key=lambda i: (val["candidates"][i]["cider_d"], -i))
    assert val["chosen"] == candidates[best] and ev["decoding"] == candidates[best]
    assert (result.final_dir / CLAP_SUBDIR).is_dir()
    # the test captions are those of the chosen decoding, reproducible from the saved model
    cap = load_captioner(result.final_dir)
    chosen = dict(candidates[best])
    reranker = ClapReranker.load(result.final_dir / CLAP_SUBDIR) if chosen.pop("rerank", None) else None
    out = cap.caption(
        [ev["captions"][0]["path"]],
        generation=cap.generation_config(**chosen),
        windows=False,
        reranker=reranker,
    )
    assert out[0].caption == ev["captions"][0]["caption"]
    with pytest.raises(ValueError, match="rerank must be null or 'clap'"):
        CaptionTrainConfig(clap="x", decoding={"rerank": "consensus"})


def test_eval_captioning_takes_the_same_options(setup: dict, capsys) -> None:
    from openclap.caption.evaluate import run_captioning

    out = setup["root"] / "cap"
    if not (out / CLAP_SUBDIR).is_dir():
        out = setup["pipe"].save_pretrained(out)
        setup["reranker"].clap.save_pretrained(out / CLAP_SUBDIR)
    loaded = load_captioner(out)
    gen = loaded.generation_config(strategy="sample", num_samples=6, seed=2)
    expect = [
        r.caption
        for r in loaded.caption(
            setup["paths"], generation=gen, windows=False, reranker=ClapReranker.load(out / CLAP_SUBDIR)
        )
    ]
    flags = ["--sample", "--num-samples", "6", "--seed", "2", "--rerank", "clap"]
    manifest = setup["root"] / "eval.csv"
    manifest.write_text("path,caption\n" + "".join(f"{p},a test caption\n" for p in setup["paths"]))
    parser = cli.build_parser()  # the CLI's own registration, not a parser of the test's
    args = parser.parse_args(
        ["eval", "captioning", "--manifest", str(manifest), "--model", str(out), "--json", *flags]
    )
    assert run_captioning(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert [c["caption"] for c in report["captions"]] == expect
