"""Reranking of caption candidates on real audio: CLAP audio-text cosine, consensus of the nearest training
captions, the trainer's choice of decoding on a validation split, and `openclap caption --rerank`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from openclap import cli
from openclap.caption.generate import DecoderStepper
from openclap.caption.pipeline import CaptionPipeline, load_captioner
from openclap.caption.rerank import ClapReranker, NeighbourCaptions, rerank
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
    manifest, train, test = write_esc10_caption_manifest(root / "manifest.csv")
    tcfg = CaptionTrainConfig(
        clap=str(clap_dir),
        mapper={"prefix_length": 4, "clip_length": 4, "num_layers": 1, "num_heads": 2},
        max_length=10,
        train_manifest=[ManifestSpec(path=str(manifest), split="train")],
        seed=1,
    )
    model, tokenizer = build_caption_model(tcfg)
    pipe = CaptionPipeline(model.eval(), tokenizer, reranker=ClapReranker.load(clap_dir))
    paths = [r["path"] for r in test]
    train_caps = [r["caption"] for r in train]
    return {
        "root": root,
        "clap": clap_dir,
        "manifest": str(manifest),
        "pipe": pipe,
        "paths": paths,
        "embeds": pipe.audio.embed_audio(paths),
        "train_caps": train_caps,
        # consensus votes: the training clips' embeddings and captions, 3 voters by default
        "memory": NeighbourCaptions(pipe.audio.embed_audio([r["path"] for r in train]), train_caps, k=3),
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
    plain = pipe.caption_embeddings(setup["embeds"], pipe.generation_config(beam_size=BEAM))
    ranked = pipe.caption_embeddings(setup["embeds"], pipe.generation_config(beam_size=BEAM, rerank="clap"))
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
    lm = pipe.caption_embeddings(
        setup["embeds"], pipe.generation_config(beam_size=BEAM, rerank="clap", rerank_lm_weight=1e6)
    )
    for before, after in zip(plain, lm):
        assert [t for t, _ in after] == list(dict.fromkeys(t for t, _ in before))


def test_rerank_function_keys_ties_and_errors(setup: dict) -> None:
    pipe: CaptionPipeline = setup["pipe"]
    hyps = pipe.caption_embeddings(setup["embeds"][:1], pipe.generation_config(beam_size=3))[0]
    texts = [t for t, _ in hyps]
    out = rerank(hyps, [0.5, 0.5, 0.5])  # a tie keeps the decoder's order
    assert [t for t, _ in out] == list(dict.fromkeys(texts))
    out = rerank(hyps, [0.0, 0.0, 0.9], consensus=[5.0, 0.0, 0.0], consensus_weight=1.0)
    assert out[0][0] == texts[0] and out[0][1].consensus == 5.0
    with pytest.raises(ValueError, match="scores"):
        rerank(hyps, [0.1])
    bare = CaptionPipeline(pipe.model, pipe.tokenizer)
    with pytest.raises(ValueError, match="CLAP model"):
        bare.caption_embeddings(setup["embeds"], bare.generation_config(beam_size=2, rerank="clap"))
    with pytest.raises(ValueError, match="training captions"):
        bare.caption_embeddings(setup["embeds"], bare.generation_config(beam_size=2, rerank="consensus"))
    other = ClapPipeline(
        create_model(get_model_config("tiny"), seed=4), TextTokenizer(get_model_config("tiny").text)
    )
    with pytest.raises(ValueError, match="audio tower"):
        bare.set_reranker(ClapReranker(other))
    with pytest.raises(ValueError, match="rerank"):
        pipe.generation_config(rerank="bleu")


def test_consensus_scores_agreement_with_the_nearest_training_captions(setup: dict) -> None:
    pipe: CaptionPipeline = setup["pipe"]
    train_caps, memory = setup["train_caps"], setup["memory"]
    idx = memory.neighbours(setup["embeds"])
    # the neighbours are the most cosine-similar training clips, nearest first
    sims = setup["embeds"] @ memory.embeds.T
    for row, nn in enumerate(idx):
        assert nn == np.argsort(-sims[row], kind="stable")[:3].tolist()
    refs = [train_caps[i] for i in idx[0]]
    # a candidate equal to a neighbour's caption agrees more than an unrelated one; the score is 0..10
    cands = [refs[0], "zzz qqq", refs[0] + " and more words here"]
    scores = memory.scores(setup["embeds"][:1], [cands])[0]
    assert scores[0] > scores[2] > scores[1] == 0.0 and scores[0] <= 10.0
    # the rerank picks the best-agreeing candidate of the beam
    pipe.neighbours = memory
    try:
        ranked = pipe.caption_embeddings(
            setup["embeds"], pipe.generation_config(beam_size=BEAM, rerank="consensus")
        )
    finally:
        pipe.neighbours = None
    for row, cands_row in enumerate(ranked):
        votes = memory.scores(setup["embeds"][row : row + 1], [[t for t, _ in cands_row]])[0]
        assert votes[0] == pytest.approx(votes.max())


def test_saved_model_bundles_the_reranker_and_the_cli_uses_it(setup: dict, monkeypatch, capsys) -> None:
    pipe: CaptionPipeline = setup["pipe"]
    pipe.neighbours = setup["memory"]
    try:
        out = pipe.save_pretrained(setup["root"] / "cap")
    finally:
        pipe.neighbours = None
    assert (out / "clap" / "config.json").is_file() and (out / "neighbours.npz").is_file()
    loaded = load_captioner(out)
    assert loaded.reranker is not None and loaded.neighbours is not None and loaded.neighbours.k == 3
    gen = loaded.generation_config(beam_size=BEAM, rerank="clap")
    expect = [row[0][0] for row in pipe.caption_embeddings(setup["embeds"], gen)]
    results = loaded.caption(setup["paths"], generation=gen, windows=False)
    assert [r.caption for r in results] == expect and all(r.clap_score is not None for r in results)

    argv = ["caption", *setup["paths"][:2], "--model", str(out), "--beam", str(BEAM), "--json"]
    assert cli.main([*argv, "--rerank", "clap"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["caption"] for d in lines] == expect[:2] and all(d["clap_score"] is not None for d in lines)
    pooled = [*argv, "--rerank", "clap+consensus", "--rerank-pool", "beam+neighbours"]
    assert cli.main(pooled) == 0 and len(capsys.readouterr().out.splitlines()) == 2
    assert cli.main([*argv, "--rerank-pool", "beam+neighbours"]) == 2  # a pool needs a reranker
    # a caption model without clap/: --rerank clap needs --rerank-model
    plain = CaptionPipeline(pipe.model, pipe.tokenizer).save_pretrained(setup["root"] / "plain")
    argv = ["caption", setup["paths"][0], "--model", str(plain), "--beam", str(BEAM), "--rerank", "clap"]
    assert cli.main(argv) == 2
    assert cli.main([*argv, "--rerank-model", str(setup["clap"])]) == 0


def test_trainer_chooses_the_decoding_on_validation(setup: dict) -> None:
    specs = {"path": setup["manifest"]}
    candidates = [
        {"beam_size": 2},
        {"beam_size": 4, "rerank": "clap"},
        {"beam_size": 4, "rerank": "consensus"},
        {"beam_size": 4, "rerank": "clap", "rerank_pool": "beam+neighbours"},
    ]
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
        consensus_neighbours=3,
    )
    result = train_captioning(cfg, setup["root"] / "run")
    ev = json.loads((setup["root"] / "run" / "eval.json").read_text())
    val = ev["validation"]
    assert [r["decoding"] for r in val["candidates"]] == candidates and val["val_clips"] == 4
    best = max(range(4), key=lambda i: (val["candidates"][i]["cider_d"], -i))
    assert val["chosen"] == candidates[best]
    best_gen = max(range(3), key=lambda i: (val["candidates"][i]["cider_d"], -i))
    assert val["chosen_generative"] == candidates[best_gen]
    if best == 3:  # a retrieval-augmented choice is reported with the best all-decoded one
        assert ev["generative_only"]["decoding"] == candidates[best_gen]
    else:
        assert ev["generative_only"] is None and ev["retrieved_share"] == 0.0
    assert {k: ev["decoding"][k] for k in candidates[best]} == candidates[best]
    assert (result.final_dir / "clap").is_dir() and (result.final_dir / "neighbours.npz").is_file()
    # the test captions are those of the chosen decoding, reproducible from the saved model
    cap = load_captioner(result.final_dir)
    gen = cap.generation_config(**candidates[best])
    out = cap.caption([ev["captions"][0]["path"]], generation=gen, windows=False)
    assert out[0].caption == ev["captions"][0]["caption"]


def test_retrieval_pool_adds_the_nearest_training_captions_scored_by_the_decoder(setup: dict) -> None:
    pipe: CaptionPipeline = setup["pipe"]
    train_caps, memory = setup["train_caps"], setup["memory"]
    embeds = setup["embeds"]
    beams = pipe.caption_embeddings(embeds, pipe.generation_config(beam_size=BEAM))
    # teacher forcing gives a caption the log-probability the incremental decoder (KV cache) gives it
    for caption in train_caps[:3]:
        ((_, forced),) = pipe.score_captions(embeds[0], [caption])
        assert forced.retrieved and forced.finished and forced.length == len(forced.tokens) + 1
        stepper = DecoderStepper(pipe.model.decoder)
        with torch.no_grad():
            logits = stepper.start(pipe.model.prefix(torch.as_tensor(embeds[:1])))
            total = 0.0
            for token in [*forced.tokens, pipe.tokenizer.stop_id]:
                total += float(torch.log_softmax(logits.float(), dim=-1)[0, token])
                logits = stepper.step(torch.tensor([token]))
        assert forced.logprob == pytest.approx(total, abs=1e-4)
        assert pipe.tokenizer.decode(forced.tokens) == caption
    pipe.neighbours = memory
    try:
        gen = pipe.generation_config(beam_size=BEAM, rerank="clap", rerank_pool="beam+neighbours")
        pooled = pipe.caption_embeddings(embeds, gen)
    finally:
        pipe.neighbours = None
    near = memory.neighbours(embeds)
    for row, cands in enumerate(pooled):
        beam_texts = [t for t, _ in beams[row]]
        expect = set(beam_texts) | {train_caps[i] for i in near[row]}
        assert {t for t, _ in cands} == expect
        assert all(h.retrieved == (t not in beam_texts) for t, h in cands)
        cos = _cosines(setup, [t for t, _ in cands], row)
        assert cands[0][1].clap_score == pytest.approx(cos.max(), abs=1e-5)
    with pytest.raises(ValueError, match="rerank_pool"):
        pipe.generation_config(rerank_pool="beam+neighbours")


def test_consensus_voters_k_and_similarity_weights(setup: dict) -> None:
    pipe: CaptionPipeline = setup["pipe"]
    train_caps, memory = setup["train_caps"], setup["memory"]
    e = setup["embeds"][:1]
    near6 = memory.neighbours(e, 6)[0]
    assert near6[:3] == memory.neighbours(e)[0] and len(near6) == 6
    refs = [train_caps[i] for i in near6]
    cands = [refs[0], refs[5], "zzz qqq"]
    # k overrides the file's k; equal votes are the plain mean over the k voters
    plain = memory.scores(e, [cands], k=6)[0]
    assert plain == pytest.approx([memory.cider(c, refs) for c in cands])
    # weights exp((cos - cos_1) / tau): a tau far below the gap to the 2nd clip leaves the nearest alone
    sims = (e / np.linalg.norm(e)) @ memory.embeds[near6].T
    gap = float(sims[0, 0] - sims[0, 1])
    assert gap > 0  # the seeded fixture has no tie at the top
    sharp = memory.scores(e, [cands], k=6, tau=gap / 50)[0]
    assert sharp == pytest.approx([memory.cider(c, refs[:1]) for c in cands], abs=1e-6)
    tau = 0.05
    w = np.exp((sims[0] - sims[0, 0]) / tau)
    weighted = memory.scores(e, [cands], k=6, tau=tau)[0]
    one = [[memory.cider(c, [r]) for r in refs] for c in cands]
    assert weighted == pytest.approx([float(np.dot(w, o) / w.sum()) for o in one], rel=1e-5)  # float32 cosines
    assert memory.cider(refs[0], refs, weights=w) == pytest.approx(weighted[0], rel=1e-5)
    with pytest.raises(ValueError, match="tau"):
        memory.scores(e, [cands], tau=-1.0)
    with pytest.raises(ValueError, match="weights"):
        memory.cider(refs[0], refs, weights=[1.0])
    # the pipeline passes rerank_k / rerank_tau through; sampled candidates are reranked the same way
    pipe.neighbours = memory
    try:
        gen = pipe.generation_config(strategy="sample", num_samples=8, rerank="consensus", rerank_k=6, rerank_tau=tau)
        ranked = pipe.caption_embeddings(setup["embeds"], gen)
    finally:
        pipe.neighbours = None
    for row, cands_row in enumerate(ranked):
        texts = [t for t, _ in cands_row]
        assert 1 <= len(texts) <= 8 and len(set(texts)) == len(texts)
        votes = memory.scores(setup["embeds"][row : row + 1], [texts], k=6, tau=tau)[0]
        assert votes[0] == pytest.approx(votes.max()) and cands_row[0][1].consensus == pytest.approx(votes[0])


def test_cli_sampled_pool_with_weighted_consensus_and_eval_captioning(setup: dict, capsys) -> None:

    from openclap.caption.evaluate import run_captioning

    pipe: CaptionPipeline = setup["pipe"]
    pipe.neighbours = setup["memory"]
    try:
        out = pipe.save_pretrained(setup["root"] / "cap-sampled")
    finally:
        pipe.neighbours = None
    loaded = load_captioner(out)
    knobs = {"rerank": "consensus", "rerank_k": 6, "rerank_tau": 0.1}
    gen = loaded.generation_config(strategy="sample", num_samples=6, seed=2, **knobs)
    expect = [r.caption for r in loaded.caption(setup["paths"], generation=gen, windows=False)]
    base = ["caption", *setup["paths"], "--model", str(out), "--json", "--no-windows"]
    flags = ["--sample", "--num-samples", "6", "--seed", "2", "--rerank", "consensus", "--rerank-k", "6",
             "--rerank-tau", "0.1"]
    assert cli.main([*base, *flags]) == 0
    assert [json.loads(line)["caption"] for line in capsys.readouterr().out.splitlines()] == expect
    assert cli.main([*base, "--num-samples", "6"]) == 2  # several draws need --sample
    assert cli.main([*base, "--sample", "--rerank", "consensus", "--rerank-tau", "0"]) == 2  # tau > 0
    capsys.readouterr()
    # `openclap eval captioning` takes the same decoding options and scores the same captions
    manifest = setup["root"] / "eval.csv"
    manifest.write_text("path,caption\n" + "".join(f"{p},a test caption\n" for p in setup["paths"]))
    parser = cli.build_parser()  # the CLI's own registration, not a parser of the test's
    args = parser.parse_args(["eval", "captioning", "--manifest", str(manifest), "--model", str(out), "--json", *flags])
    assert run_captioning(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert [c["caption"] for c in report["captions"]] == expect
