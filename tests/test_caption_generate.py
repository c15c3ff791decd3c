"""Decoding strategies on toy language models whose sequence probabilities are known exactly."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from openclap.caption.generate import GenerationConfig, beam_search, generate, greedy, sample

STOP = 0


class TableLM:
    """A toy LM: next-token log-probs are a fixed function of the tokens generated so far.

    ``table[history]`` gives the distribution after ``history`` (a tuple); unknown histories get
    ``default``. The prefix only selects the row's table (prefix[i, 0, 0] is the table index).
    """

    def __init__(self, tables: list[dict[tuple[int, ...], list[float]]], vocab: int) -> None:
        self.tables = tables
        self.vocab = vocab
        self.rows: list[tuple[int, tuple[int, ...]]] = []

    def _logits(self) -> torch.Tensor:
        out = []
        for table_id, hist in self.rows:
            probs = self.tables[table_id].get(hist, [1.0 / self.vocab] * self.vocab)
            out.append(torch.tensor(probs, dtype=torch.float64).log())
        return torch.stack(out).float()

    def start(self, prefix: torch.Tensor) -> torch.Tensor:
        self.rows = [(int(prefix[i, 0, 0]), ()) for i in range(prefix.shape[0])]
        return self._logits()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.rows = [(t, h + (int(tok),)) for (t, h), tok in zip(self.rows, tokens.tolist())]
        return self._logits()

    def select(self, index: torch.Tensor) -> None:
        self.rows = [self.rows[i] for i in index.tolist()]


def seq_logprob(table: dict, vocab: int, seq: tuple[int, ...]) -> float:
    total = 0.0
    for i, tok in enumerate(seq):
        probs = table.get(seq[:i], [1.0 / vocab] * vocab)
        total += math.log(probs[tok])
    return total


# Greedy takes token 1 (p=0.5) and then faces a flat distribution; token 2 (p=0.4) leads to a sure stop.
TRAP = {
    (): [0.1, 0.5, 0.4],
    (1,): [0.34, 0.33, 0.33],
    (2,): [0.98, 0.01, 0.01],
}


def prefix_for(*table_ids: int) -> torch.Tensor:
    p = torch.zeros(len(table_ids), 1, 1)
    p[:, 0, 0] = torch.tensor(table_ids, dtype=torch.float32)
    return p


def test_greedy_takes_the_locally_best_token() -> None:
    lm = TableLM([TRAP], vocab=3)
    (hyp,) = greedy(lm, prefix_for(0), STOP, max_length=2)
    assert hyp.tokens == [1] and hyp.finished  # 1 then stop (0.34 ties broken towards the stop)
    assert hyp.logprob == pytest.approx(math.log(0.5) + math.log(0.34), abs=1e-6)
    assert hyp.length == 2


def test_beam_search_finds_the_better_sequence_greedy_misses() -> None:
    lm = TableLM([TRAP], vocab=3)
    (hyps,) = beam_search(lm, prefix_for(0), STOP, max_length=2, beam_size=2, length_penalty=0.0)
    best = hyps[0]
    assert best.tokens == [2] and best.finished
    assert best.logprob == pytest.approx(math.log(0.4) + math.log(0.98), abs=1e-6)
    # and it beats greedy's sequence under the model
    assert best.logprob > math.log(0.5) + math.log(0.34)


def _exhaustive_best(table: dict, vocab: int, max_length: int, alpha: float) -> tuple[tuple[int, ...], float]:
    """Best sequence over all sequences that stop (or reach max_length), by sum logp / len**alpha."""
    best, best_score = None, -math.inf
    for length in range(1, max_length + 1):
        for body in itertools.product(range(1, vocab), repeat=length - 1):
            for last in range(vocab):
                seq = body + (last,)
                if last != STOP and length < max_length:
                    continue  # unfinished sequences only end at max_length
                score = seq_logprob(table, vocab, seq) / length**alpha
                if score > best_score:
                    best, best_score = seq, score
    return best, best_score


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_wide_beam_returns_the_highest_scoring_sequence(alpha: float) -> None:
    gen = torch.Generator().manual_seed(3)
    vocab, max_length = 4, 3
    table = {}
    for length in range(max_length):
        for hist in itertools.product(range(1, vocab), repeat=length):
            p = torch.rand(vocab, generator=gen, dtype=torch.float64) ** 3 + 1e-3
            table[hist] = (p / p.sum()).tolist()
    seq, score = _exhaustive_best(table, vocab, max_length, alpha)
    lm = TableLM([table], vocab)
    (hyps,) = beam_search(
        lm, prefix_for(0), STOP, max_length, beam_size=vocab**max_length, length_penalty=alpha
    )
    best = hyps[0]
    expected_tokens = list(seq[:-1]) if seq[-1] == STOP else list(seq)
    assert best.tokens == expected_tokens
    assert best.score(alpha) == pytest.approx(score, abs=1e-5)
    # hypotheses come best first
    scores = [h.score(alpha) for h in hyps if math.isfinite(h.logprob)]
    assert scores == sorted(scores, reverse=True)


def test_beam_search_is_batched_per_row() -> None:
    other = {(): [0.05, 0.05, 0.9], (2,): [0.9, 0.05, 0.05]}
    lm = TableLM([TRAP, other], vocab=3)
    batched = beam_search(lm, prefix_for(0, 1, 0), STOP, max_length=3, beam_size=2, length_penalty=0.0)
    single = [beam_search(TableLM([TRAP, other], 3), prefix_for(i), STOP, 3, 2, 0.0)[0] for i in (0, 1, 0)]
    for b, s in zip(batched, single):
        assert [h.tokens for h in b] == [h.tokens for h in s]
        assert [h.logprob for h in b] == pytest.approx([h.logprob for h in s])
    assert batched[1][0].tokens == [2]


def test_beam_size_one_equals_greedy() -> None:
    gen = torch.Generator().manual_seed(0)
    table = {}
    for length in range(4):
        for hist in itertools.product(range(1, 5), repeat=length):
            p = torch.rand(5, generator=gen, dtype=torch.float64) + 0.05
            table[hist] = (p / p.sum()).tolist()
    g = greedy(TableLM([table], 5), prefix_for(0), STOP, max_length=4)[0]
    b = beam_search(TableLM([table], 5), prefix_for(0), STOP, max_length=4, beam_size=1)[0][0]
    assert g.tokens == b.tokens and g.logprob == pytest.approx(b.logprob)


def test_sampling_is_reproducible_with_a_seed_and_follows_the_distribution() -> None:
    table = {(): [0.2, 0.5, 0.3]}  # then uniform
    cfg = GenerationConfig(strategy="sample", max_length=3, seed=123)
    p = prefix_for(*([0] * 64))
    a = [h[0].tokens for h in generate(TableLM([table], 3), p, STOP, cfg)]
    b = [h[0].tokens for h in generate(TableLM([table], 3), p, STOP, cfg)]
    c = [h[0].tokens for h in generate(TableLM([table], 3), p, STOP, GenerationConfig("sample", 3, seed=124))]
    assert a == b and a != c
    # 4000 first tokens: frequencies near (0.2, 0.5, 0.3)
    lm = TableLM([table], 3)
    hyps = sample(lm, prefix_for(*([0] * 4000)), STOP, 1, generator=torch.Generator().manual_seed(0))
    first = torch.tensor([h.tokens[0] if h.tokens else STOP for h in hyps])
    freq = torch.bincount(first, minlength=3).float() / len(first)
    assert torch.allclose(freq, torch.tensor([0.2, 0.5, 0.3]), atol=0.03)


def test_top_p_and_top_k_restrict_the_support() -> None:
    table = {(): [0.05, 0.6, 0.25, 0.1]}
    p = prefix_for(*([0] * 500))
    gen = torch.Generator().manual_seed(1)
    nucleus = sample(TableLM([table], 4), p, STOP, 1, top_p=0.8, generator=gen)  # keeps {1, 2}
    assert {h.tokens[0] for h in nucleus if h.tokens} == {1, 2} and all(h.tokens for h in nucleus)
    top1 = sample(TableLM([table], 4), p, STOP, 1, top_k=1, generator=gen)
    assert all(h.tokens == [1] for h in top1)
    # low temperature makes sampling greedy-like
    cold = sample(TableLM([table], 4), p, STOP, 1, temperature=0.05, generator=gen)
    assert sum(h.tokens == [1] for h in cold) == len(cold)


def test_generation_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="temperature"):
        GenerationConfig(temperature=0)
    with pytest.raises(ValueError, match="top_p"):
        GenerationConfig(top_p=1.5)
    with pytest.raises(ValueError, match="strategy"):
        GenerationConfig(strategy="nucleus")  # type: ignore[arg-type]


def test_num_samples_draws_several_candidates_per_input_best_first() -> None:
    table = {(): [0.2, 0.5, 0.3]}  # then uniform
    rows = generate(
        TableLM([table, TRAP], 3),
        prefix_for(0, 1),
        STOP,
        GenerationConfig("sample", 4, num_samples=40, seed=7),
    )
    assert [len(r) for r in rows] == [40, 40]
    for r, t in zip(rows, (table, TRAP)):
        keys = [h.score() for h in r]
        assert keys == sorted(keys, reverse=True)  # best first by the beam's key
        for h in r:  # each draw's log-probability is that of its tokens (and stop) under its own table
            seq = tuple(h.tokens) + ((STOP,) if h.finished else ())
            assert h.logprob == pytest.approx(seq_logprob(t, 3, seq), abs=1e-5)
    # 40 draws of input 1 (TRAP): its first tokens follow (0.1, 0.5, 0.4), not input 0's table
    first = [h.tokens[0] if h.tokens else STOP for h in rows[1]]
    assert first.count(1) > first.count(STOP) and first.count(2) > first.count(STOP)
    again = generate(
        TableLM([table, TRAP], 3),
        prefix_for(0, 1),
        STOP,
        GenerationConfig("sample", 4, num_samples=40, seed=7),
    )
    assert [[h.tokens for h in r] for r in again] == [[h.tokens for h in r] for r in rows]


def test_num_samples_is_checked_and_reranking_is_not_a_search_setting() -> None:
    with pytest.raises(ValueError, match="num_samples"):
        GenerationConfig(num_samples=0)
    with pytest.raises(ValueError, match="needs strategy='sample'"):
        GenerationConfig(strategy="beam", num_samples=3)
    with pytest.raises(TypeError, match="rerank"):  # reranking is not a search setting
        GenerationConfig(rerank="clap")
