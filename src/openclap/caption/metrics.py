"""Captioning metrics written here: BLEU-1..4, ROUGE-L, CIDEr-D (and SPIDEr when a SPICE score is given).

They follow the definitions of the COCO caption evaluation code that audio captioning papers use
(``pycocoevalcap``: ``bleu_scorer.py``, ``rouge.py``; ``ciderD_scorer.py`` of Vedantam et al.'s CIDEr-D):

- BLEU-n: corpus level; clipped n-gram counts against the references, precisions smoothed with
  ``(correct + 1e-15) / (guess + 1e-9)``, brevity penalty against the "closest" reference length
  (ties to the shorter one), ``BLEU-n = (prod_{k<=n} p_k) ** (1/n) * BP``.
- ROUGE-L: per candidate, ``P = max_r LCS/len(cand)``, ``R = max_r LCS/len(ref)``,
  ``F = (1 + b^2) P R / (R + b^2 P)`` with ``b = 1.2``; averaged over candidates.
- CIDEr-D: n = 1..4 tf-idf vectors (tf = raw count, idf = log(#clips) - log(df) with df counted over
  each clip's reference set), candidate counts clipped at the reference's, cosine per n, Gaussian length
  penalty ``exp(-(len_c - len_r)^2 / (2 * 6^2))``, mean over n and references, times 10.
- SPIDEr = (CIDEr-D + SPICE) / 2. SPICE needs Java and Stanford CoreNLP models, which openclap does not
  ship or download: ``spider`` is only filled in when the caller passes SPICE scores.

Tokenisation (``tokenize``): lower case, words of letters/digits with inner hyphens or apostrophes
kept (PTB keeps "steel-string"; it would split "dog's" into "dog 's", we keep one token), every other
character is a separator (COCO drops punctuation tokens after PTB tokenisation).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_WORD = re.compile(r"[a-z0-9]+(?:['\-][a-z0-9]+)*")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens without punctuation."""
    return _WORD.findall(text.lower())


def _ngrams(words: Sequence[str], n: int) -> Counter:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def _check(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(candidates) != len(references):
        raise ValueError(
            f"{len(candidates)} candidates but {len(references)} reference lists; they pair by index"
        )
    if not candidates:
        raise ValueError("no candidates to score")
    for i, refs in enumerate(references):
        if isinstance(refs, str) or len(refs) == 0:
            raise ValueError(f"references[{i}] must be a non-empty list of strings, got {refs!r}")


# --------------------------------------------------------------------------------------------- BLEU
def bleu(candidates: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> list[float]:
    """Corpus BLEU-1..max_n (COCO definition, closest reference length)."""
    _check(candidates, references)
    correct = [0] * max_n
    guess = [0] * max_n
    test_len = ref_len = 0
    for cand, refs in zip(candidates, references):
        words = tokenize(cand)
        ref_words = [tokenize(r) for r in refs]
        test_len += len(words)
        # closest reference length; on a tie the shorter one (COCO's "closest" option)
        ref_len += min((abs(len(r) - len(words)), len(r)) for r in ref_words)[1]
        for n in range(1, max_n + 1):
            counts = _ngrams(words, n)
            max_ref: Counter = Counter()
            for r in ref_words:
                for gram, c in _ngrams(r, n).items():
                    max_ref[gram] = max(max_ref[gram], c)
            correct[n - 1] += sum(min(c, max_ref[g]) for g, c in counts.items())
            guess[n - 1] += max(len(words) - n + 1, 0)
    tiny, small = 1e-15, 1e-9
    ratio = (test_len + tiny) / (ref_len + small)
    penalty = math.exp(1 - 1 / ratio) if ratio < 1 else 1.0
    scores = []
    product = 1.0
    for n in range(max_n):
        product *= (correct[n] + tiny) / (guess[n] + small)
        scores.append(product ** (1.0 / (n + 1)) * penalty)
    return scores


# ------------------------------------------------------------------------------------------ ROUGE-L
def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l_single(candidate: str, references: Sequence[str], beta: float = 1.2) -> float:
    """ROUGE-L F of one candidate against its references (COCO: max precision, max recall)."""
    words = tokenize(candidate)
    if not words:
        return 0.0
    precs, recs = [], []
    for ref in references:
        r = tokenize(ref)
        lcs = _lcs(words, r)
        precs.append(lcs / len(words))
        recs.append(lcs / len(r) if r else 0.0)
    p, r = max(precs), max(recs)
    if p == 0 or r == 0:
        return 0.0
    return (1 + beta**2) * p * r / (r + beta**2 * p)


def rouge_l(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean ROUGE-L over candidates."""
    _check(candidates, references)
    return sum(rouge_l_single(c, r) for c, r in zip(candidates, references)) / len(candidates)


# ------------------------------------------------------------------------------------------ CIDEr-D
def _counts(words: Sequence[str], max_n: int) -> Counter:
    out: Counter = Counter()
    for n in range(1, max_n + 1):
        out.update(_ngrams(words, n))
    return out


def _vector(counts: Counter, df: Mapping[tuple[str, ...], float], log_n: float, max_n: int):
    vec: list[dict[tuple[str, ...], float]] = [{} for _ in range(max_n)]
    norm = [0.0] * max_n
    length = 0
    for gram, tf in counts.items():
        n = len(gram) - 1
        w = float(tf) * (log_n - math.log(max(1.0, df.get(gram, 0.0))))
        vec[n][gram] = w
        norm[n] += w * w
        if n == 0:
            length += tf
    return vec, [math.sqrt(x) for x in norm], length


def _cider_pair(cand: tuple, ref: tuple, max_n: int = 4, sigma: float = 6.0) -> float:
    """Sum over n of the clipped tf-idf cosine of two ``_vector`` results times the length penalty (a
    single reference's CIDEr-D is 10 x this / max_n)."""
    vec_c, norm_c, len_c = cand
    vec_r, norm_r, len_r = ref
    penalty = math.exp(-((len_c - len_r) ** 2) / (2 * sigma**2))
    total = 0.0
    for n in range(max_n):
        val = sum(min(w, vec_r[n].get(g, 0.0)) * vec_r[n].get(g, 0.0) for g, w in vec_c[n].items())
        if norm_c[n] != 0 and norm_r[n] != 0:
            total += val / (norm_c[n] * norm_r[n]) * penalty
    return total


def cider_d_per_item(
    candidates: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4, sigma: float = 6.0
) -> list[float]:
    """CIDEr-D of each candidate; the idf comes from all the references given (the test corpus)."""
    _check(candidates, references)
    return _mean_single_reference_cider(candidates, references, references, max_n, sigma)


def _mean_single_reference_cider(
    candidates: Sequence[str],
    references: Sequence[Sequence[str]],
    scored_against: Sequence[Sequence[str]],
    max_n: int,
    sigma: float,
) -> list[float]:
    # CIDEr-D with several references is the mean of the single-reference scores; idf from `references`
    df: Counter = Counter()
    for refs in references:
        df.update({g for r in refs for g in _counts(tokenize(r), max_n)})
    log_n = math.log(float(len(candidates)))
    vectors: dict[str, tuple] = {}

    def vector(text: str) -> tuple:
        if text not in vectors:
            vectors[text] = _vector(_counts(tokenize(text), max_n), df, log_n, max_n)
        return vectors[text]

    scores = []
    for cand, refs in zip(candidates, scored_against):
        vec_c = vector(cand)
        total = sum(_cider_pair(vec_c, vector(ref), max_n, sigma) for ref in refs)
        scores.append(10.0 * total / max_n / len(refs))
    return scores


def cider_d(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus CIDEr-D: the mean of the per-candidate scores."""
    per = cider_d_per_item(candidates, references)
    return sum(per) / len(per)


# -------------------------------------------------------------------------------------------- all
@dataclass
class CaptionScores:
    """Corpus scores of a set of captions (SPICE/SPIDEr only when SPICE scores were supplied)."""

    bleu_1: float
    bleu_2: float
    bleu_3: float
    bleu_4: float
    rouge_l: float
    cider_d: float
    spice: float | None = None
    spider: float | None = None
    count: int = 0

    def as_dict(self) -> dict[str, float | int | None]:
        return dict(self.__dict__)


def score_captions(
    candidates: Sequence[str], references: Sequence[Sequence[str]], spice: Sequence[float] | None = None
) -> CaptionScores:
    """BLEU-1..4, ROUGE-L and CIDEr-D of ``candidates`` against ``references`` (a list of strings each);
    with per-candidate ``spice`` scores also SPICE and SPIDEr."""
    b = bleu(candidates, references)
    cd = cider_d(candidates, references)
    out = CaptionScores(b[0], b[1], b[2], b[3], rouge_l(candidates, references), cd, count=len(candidates))
    if spice is not None:
        if len(spice) != len(candidates):
            raise ValueError(f"{len(spice)} SPICE scores for {len(candidates)} candidates")
        out.spice = sum(spice) / len(spice)
        out.spider = (cd + out.spice) / 2
    return out
