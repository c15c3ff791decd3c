"""Caption decoding: greedy, beam search and sampling, batched, with a KV cache.

Every strategy drives a ``Stepper`` (``start(prefix) -> logits``, ``step(tokens) -> logits``,
``select(index)``), so the search code is tested on toy language models as well as on GPT-2.
Generated sequences end at ``stop_id``; a hypothesis' ``tokens`` exclude it, its ``length`` counts it.

Beam search follows msclap's ``CLAPWrapper._generate_beam`` (microsoft/CLAP): finished hypotheses stay in
the beam and compete with the open ones on ``sum(log p) / length ** length_penalty``
(msclap: ``length_penalty=1``, the mean log-probability); a finished beam is extended by a free
(log p = 0) filler token, so its length and sum stay fixed. ``temperature`` divides the logits before
the softmax in every strategy, as msclap does in its beam search.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Literal, Protocol

import torch

Strategy = Literal["greedy", "beam", "sample"]


class Stepper(Protocol):
    """An incremental decoder over a batch of N rows."""

    def start(self, prefix: torch.Tensor) -> torch.Tensor:
        """Read the prefix (N, P, W); return next-token logits (N, V)."""

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append tokens (N,); return next-token logits (N, V)."""

    def select(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` (N',) of the state, in that order (repeats allowed)."""


@dataclass(frozen=True)
class GenerationConfig:
    """How to search: strategy and its knobs (reranking is a separate step: ``caption(..., reranker=)``)."""

    strategy: Strategy = "beam"
    max_length: int = 67  # generated tokens, the stop token included (msclap: entry_length=67)
    beam_size: int = 5  # msclap's default
    length_penalty: float = 1.0  # beam score = sum log p / length ** length_penalty
    temperature: float = 1.0
    top_p: float = 1.0  # sampling: keep the smallest set of tokens whose probability reaches top_p
    top_k: int = 0  # sampling: keep the k most likely tokens (0: all)
    seed: int | None = 0  # sampling: generator seed (None: torch's global RNG)
    num_samples: int = 1  # sampling: sequences drawn per input (candidates for a reranker), best first

    def __post_init__(self) -> None:
        if self.strategy not in ("greedy", "beam", "sample"):
            raise ValueError(f"strategy must be greedy, beam or sample, got {self.strategy!r}")
        if self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}")
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {self.beam_size}")
        if self.temperature <= 0:
            raise ValueError(
                f"temperature must be > 0, got {self.temperature}; use strategy='greedy' for argmax"
            )
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.num_samples > 1 and self.strategy != "sample":
            raise ValueError(f"num_samples={self.num_samples} needs strategy='sample', got {self.strategy!r}")


@dataclass
class Hypothesis:
    """One generated sequence."""

    tokens: list[int]  # without the stop token
    logprob: float  # sum of log-probabilities of the generated tokens (stop token included)
    length: int  # generated tokens, the stop token included
    finished: bool  # True when the stop token was generated
    clap_score: float | None = None  # audio-text cosine, set by CLAP reranking

    @property
    def mean_logprob(self) -> float:
        return self.logprob / max(self.length, 1)

    def score(self, length_penalty: float = 1.0) -> float:
        """``logprob / length ** length_penalty`` (the beam-search ranking score)."""
        return self.logprob / max(self.length, 1) ** length_penalty


def _log_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.log_softmax(logits.float() / temperature, dim=-1)


def _hypothesis(tokens: list[int], logprob: float, stop_id: int) -> Hypothesis:
    if stop_id in tokens:
        end = tokens.index(stop_id)
        return Hypothesis(tokens[:end], logprob, end + 1, True)
    return Hypothesis(tokens, logprob, len(tokens), False)


@torch.no_grad()
def greedy(
    stepper: Stepper, prefix: torch.Tensor, stop_id: int, max_length: int, temperature: float = 1.0
) -> list[Hypothesis]:
    """Argmax decoding of every row of ``prefix`` (N, P, W)."""
    logp = _log_probs(stepper.start(prefix), temperature)  # (N, V)
    n = prefix.shape[0]
    total = torch.zeros(n, device=logp.device)
    done = torch.zeros(n, dtype=torch.bool, device=logp.device)
    out: list[torch.Tensor] = []
    for t in range(max_length):
        best, token = logp.max(dim=-1)  # (N,)
        token = token.masked_fill(done, stop_id)
        total = total + best.masked_fill(done, 0.0)
        out.append(token)
        done = done | token.eq(stop_id)
        if bool(done.all()) or t == max_length - 1:
            break
        logp = _log_probs(stepper.step(token), temperature)
    tokens = torch.stack(out, dim=1).tolist()  # (N, T)
    return [_hypothesis(row, float(s), stop_id) for row, s in zip(tokens, total.tolist())]


def _filter_top(logp: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Set log-probs outside the top-k / nucleus (top-p) sets to -inf; (N, V) -> (N, V)."""
    if top_k and top_k < logp.shape[-1]:
        kth = logp.topk(top_k, dim=-1).values[:, -1:]  # (N, 1)
        logp = logp.masked_fill(logp < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logp, order = logp.sort(dim=-1, descending=True)
        cum = sorted_logp.softmax(dim=-1).cumsum(dim=-1)
        # drop a token when the tokens before it already reach top_p (the first token is always kept)
        drop_sorted = (cum - sorted_logp.softmax(dim=-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logp = logp.masked_fill(drop, float("-inf"))
    return logp


@torch.no_grad()
def sample(
    stepper: Stepper,
    prefix: torch.Tensor,
    stop_id: int,
    max_length: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    generator: torch.Generator | None = None,
) -> list[Hypothesis]:
    """Ancestral sampling with temperature, top-k and nucleus (top-p) filtering; ``logprob`` is under the
    tempered, unfiltered distribution."""
    logp = _log_probs(stepper.start(prefix), temperature)
    n = prefix.shape[0]
    total = torch.zeros(n, device=logp.device)
    done = torch.zeros(n, dtype=torch.bool, device=logp.device)
    out: list[torch.Tensor] = []
    for t in range(max_length):
        probs = _filter_top(logp, top_k, top_p).softmax(dim=-1)  # (N, V)
        token = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(logp.device)  # (N,)
        token = token.masked_fill(done, stop_id)
        picked = logp.gather(1, token[:, None]).squeeze(1)
        total = total + picked.masked_fill(done, 0.0)
        out.append(token)
        done = done | token.eq(stop_id)
        if bool(done.all()) or t == max_length - 1:
            break
        logp = _log_probs(stepper.step(token), temperature)
    tokens = torch.stack(out, dim=1).tolist()
    return [_hypothesis(row, float(s), stop_id) for row, s in zip(tokens, total.tolist())]


@torch.no_grad()
def beam_search(
    stepper: Stepper,
    prefix: torch.Tensor,
    stop_id: int,
    max_length: int,
    beam_size: int = 5,
    length_penalty: float = 1.0,
    temperature: float = 1.0,
) -> list[list[Hypothesis]]:
    """Beam search per row of ``prefix`` (N, P, W); each row's ``beam_size`` hypotheses, best first."""
    logp = _log_probs(stepper.start(prefix), temperature)  # (N, V)
    n, vocab = logp.shape
    k = beam_size
    device = logp.device
    # first step: the k best tokens of each row (msclap: logits.topk(beam_size)); if k > V the extra beams
    # start dead (-inf) and never win.
    first = min(k, vocab)
    scores, tokens = logp.topk(first, dim=-1)  # (N, first)
    if first < k:
        pad = k - first
        scores = torch.cat([scores, torch.full((n, pad), float("-inf"), device=device)], dim=1)
        tokens = torch.cat([tokens, tokens[:, :1].expand(n, pad)], dim=1)
    rows = torch.arange(n, device=device)
    stepper.select(rows.repeat_interleave(k))  # state row r*k + j is beam j of input r
    history = tokens.reshape(n, k, 1)  # (N, K, T)
    lengths = torch.ones(n, k, device=device)
    stopped = tokens.eq(stop_id)  # (N, K)
    for _ in range(max_length - 1):
        if bool(stopped.all()):
            break
        logp = _log_probs(stepper.step(history[:, :, -1].reshape(-1)), temperature).view(n, k, vocab)
        # finished beams: only the filler (the stop id) at log p = 0
        filler = torch.full_like(logp, float("-inf"))
        filler[..., stop_id] = 0.0
        logp = torch.where(stopped[..., None], filler, logp)
        total = scores[..., None] + logp  # (N, K, V)
        lengths = lengths + (~stopped).float()
        ranked = total / lengths[..., None] ** length_penalty  # (N, K, V)
        _, flat = ranked.view(n, k * vocab).topk(k, dim=-1)  # (N, K)
        source = torch.div(flat, vocab, rounding_mode="floor")  # (N, K) beam each winner extends
        token = flat % vocab
        scores = total.view(n, k * vocab).gather(1, flat)
        lengths = lengths.gather(1, source)
        stopped = stopped.gather(1, source) | token.eq(stop_id)
        history = torch.cat(
            [history.gather(1, source[..., None].expand_as(history)), token[..., None]], dim=2
        )
        stepper.select((rows[:, None] * k + source).reshape(-1))
    results: list[list[Hypothesis]] = []
    final = scores / lengths**length_penalty
    order = final.argsort(dim=1, descending=True, stable=True)
    for r in range(n):
        hyps = []
        for j in order[r].tolist():
            hyp = _hypothesis(history[r, j].tolist(), float(scores[r, j]), stop_id)
            hyp.length = int(lengths[r, j])
            hyps.append(hyp)
        results.append(hyps)
    return results


def generate(
    stepper: Stepper, prefix: torch.Tensor, stop_id: int, config: GenerationConfig
) -> list[list[Hypothesis]]:
    """Decode every row of ``prefix`` with ``config``: a best-first list of hypotheses per row
    (``beam_size`` for beam search, one for greedy, ``num_samples`` for sampling)."""
    if config.strategy == "greedy":
        return [[h] for h in greedy(stepper, prefix, stop_id, config.max_length, config.temperature)]
    if config.strategy == "sample":
        generator = None
        if config.seed is not None:
            generator = torch.Generator().manual_seed(config.seed)
        k = config.num_samples
        hyps = sample(
            stepper,
            prefix.repeat_interleave(k, dim=0) if k > 1 else prefix,  # row r*k + j: draw j of input r
            stop_id,
            config.max_length,
            config.temperature,
            config.top_p,
            config.top_k,
            generator,
        )
        rows = [hyps[r * k : (r + 1) * k] for r in range(prefix.shape[0])]
        # best first by the beam's key; draws of equal score keep their order
        return [sorted(row, key=lambda h: -h.score(config.length_penalty)) for row in rows]
    return beam_search(
        stepper,
        prefix,
        stop_id,
        config.max_length,
        config.beam_size,
        config.length_penalty,
        config.temperature,
    )


# -------------------------------------------------------------------------------- GPT-2 stepper
class DecoderStepper:
    """``Stepper`` over a transformers causal LM fed with ``inputs_embeds`` and a KV cache."""

    def __init__(self, decoder: torch.nn.Module) -> None:
        self.decoder = decoder
        params = inspect.signature(decoder.forward).parameters
        # transformers >= 5.x names the cache argument `cache`; 4.x calls it `past_key_values`.
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._keep_arg = "logits_to_keep" if "logits_to_keep" in params else None
        self.cache = None

    def _run(self, embeds: torch.Tensor) -> torch.Tensor:
        kwargs = {"inputs_embeds": embeds, "use_cache": True}
        if self.cache is not None:
            kwargs[self._cache_arg] = self.cache
        if self._keep_arg:
            kwargs[self._keep_arg] = 1
        out = self.decoder(**kwargs)
        # transformers >= 5.x returns the cache as `cache`, 4.x as `past_key_values`
        self.cache = out["cache"] if "cache" in out else out["past_key_values"]
        return out.logits[:, -1]  # (N, V)

    def start(self, prefix: torch.Tensor) -> torch.Tensor:
        self.cache = None
        return self._run(prefix)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        embeds = self.decoder.get_input_embeddings()(tokens[:, None])  # (N, 1, W)
        return self._run(embeds)

    def select(self, index: torch.Tensor) -> None:
        if self.cache is None:
            raise RuntimeError("select() before start()")
        if hasattr(self.cache, "reorder_cache"):
            self.cache.reorder_cache(index)
        else:  # legacy tuple cache: ((k, v), ...) per layer with batch first
            self.cache = tuple(tuple(t.index_select(0, index) for t in layer) for layer in self.cache)
