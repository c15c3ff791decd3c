"""Captioning metrics against values worked out by hand (derivations in the comments)."""

from __future__ import annotations

import math

import pytest

from openclap.caption.metrics import (
    bleu,
    cider_d,
    cider_d_per_item,
    rouge_l,
    rouge_l_single,
    score_captions,
    tokenize,
)

CAND = "The cat sat on the mat."
REF = "the cat is on the mat"


def test_tokenize_lowercases_and_drops_punctuation() -> None:
    assert tokenize("A steel-string guitar, playing!  Dog's bark.") == [
        "a",
        "steel-string",
        "guitar",
        "playing",
        "dog's",
        "bark",
    ]


def test_bleu_hand_computed() -> None:
    # candidate: the cat sat on the mat (6 words); reference: the cat is on the mat (6 words)
    # 1-grams: the x2, cat, on, mat match (sat does not): 5/6
    # 2-grams: the-cat, on-the, the-mat of 5: 3/5;  3-grams: on-the-mat of 4: 1/4;  4-grams: 0 of 3
    # equal lengths: no brevity penalty
    b1, b2, b3, b4 = bleu([CAND], [[REF]])
    assert b1 == pytest.approx(5 / 6, abs=1e-9)
    assert b2 == pytest.approx(math.sqrt(5 / 6 * 3 / 5), abs=1e-9)
    assert b3 == pytest.approx((5 / 6 * 3 / 5 * 1 / 4) ** (1 / 3), abs=1e-9)
    assert b4 == pytest.approx((5 / 6 * 3 / 5 * 1 / 4 * 1e-15 / 3) ** 0.25, rel=1e-3)  # COCO smoothing
    assert b4 < 1e-3


def test_bleu_brevity_penalty_and_clipping() -> None:
    # "the the the" vs "the cat": clipped unigram matches 1 of 3 -> 1/3; lengths 3 >= 2: no penalty
    assert bleu(["the the the"], [["the cat"]], max_n=1)[0] == pytest.approx(1 / 3)
    # "the cat" vs "the cat sat on the mat" (6): p1 = 1, BP = exp(1 - 6/2) = e^-2
    assert bleu(["the cat"], [["the cat sat on the mat"]], max_n=1)[0] == pytest.approx(
        math.exp(-2), rel=1e-6
    )
    # closest reference length: refs of 3 and 6 words, candidate of 2 -> reflen 3, BP = exp(1 - 3/2)
    assert bleu(["the cat"], [["the cat sat", "the cat sat on the mat"]], max_n=1)[0] == pytest.approx(
        math.exp(-0.5), rel=1e-6
    )


def test_bleu_is_corpus_level() -> None:
    # pooled counts: unigrams 2/2 + 1/2 = 3/4 (not the mean of per-sentence scores)
    assert bleu(["a b", "c d"], [["a b"], ["c x"]], max_n=1)[0] == pytest.approx(3 / 4)


def test_rouge_l_hand_computed() -> None:
    # LCS = the cat on the mat = 5 -> P = R = 5/6 -> F = 5/6 whatever beta
    assert rouge_l_single(CAND, [REF]) == pytest.approx(5 / 6)
    # "a dog barks" vs "a dog barks loudly at night": LCS 3, P = 1, R = 1/2
    # F = (1 + 1.44) * 1 * 0.5 / (0.5 + 1.44 * 1) = 1.22 / 1.94
    assert rouge_l_single("a dog barks", ["a dog barks loudly at night"]) == pytest.approx(1.22 / 1.94)
    # best precision and best recall are taken over references separately
    assert rouge_l(["a dog", "x"], [["a dog barks", "dog"], ["y"]]) == pytest.approx(
        ((1 + 1.44) * 1 * 1 / (1 + 1.44)) / 2
    )


def test_cider_d_exact_matches() -> None:
    # Two clips, each n-gram occurs in one clip's references: idf = log 2 for every n-gram.
    # clip 1: "a dog barks" = its reference: cosine 1 for n = 1, 2, 3; no 4-grams -> 0.
    #   10 * mean(1, 1, 1, 0) = 7.5
    # clip 2: "rain falls": n = 1, 2 -> 1, n = 3, 4 -> 0: 10 * 0.5 = 5.0
    per = cider_d_per_item(["a dog barks", "rain falls"], [["a dog barks"], ["rain falls"]])
    assert per == pytest.approx([7.5, 5.0])
    assert cider_d(["a dog barks", "rain falls"], [["a dog barks"], ["rain falls"]]) == pytest.approx(6.25)


def test_cider_d_partial_match_with_length_penalty() -> None:
    # clip 1: candidate "a dog", reference "a dog barks"; all weights equal (idf log 2), so they cancel:
    #   n=1: 2 / (sqrt(2) sqrt(3)) ; n=2: 1 / (1 * sqrt(2)) ; n=3, 4: 0
    #   length penalty exp(-(2 - 3)^2 / 72)
    expected = 10 * (2 / math.sqrt(6) + 1 / math.sqrt(2)) / 4 * math.exp(-1 / 72)
    per = cider_d_per_item(["a dog", "rain falls"], [["a dog barks"], ["rain falls"]])
    assert per[0] == pytest.approx(expected, rel=1e-9)


def test_cider_d_common_ngrams_weigh_nothing_and_repeats_are_clipped() -> None:
    # "the" occurs in both clips' references: idf log 2 - log 2 = 0, so it carries no weight.
    per = cider_d_per_item(["the", "rain falls"], [["the dog"], ["the rain falls"]])
    assert per[0] == 0.0
    # repeating a matching word cannot raise the clipped numerator: "dog dog" vs "dog barks"
    # n=1: numerator min(2w, w) * w = w^2; norms 2w and sqrt(2) w -> 1 / (2 sqrt 2); penalty 1 (equal lengths)
    per = cider_d_per_item(["dog dog", "rain"], [["dog barks"], ["rain"]])
    assert per[0] == pytest.approx(10 * (1 / (2 * math.sqrt(2))) / 4)


def test_score_captions_and_spider() -> None:
    s = score_captions(["a dog barks", "rain falls"], [["a dog barks"], ["rain falls"]], spice=[0.5, 0.3])
    assert s.bleu_1 == pytest.approx(1.0) and s.rouge_l == pytest.approx(1.0)
    assert s.cider_d == pytest.approx(6.25)
    assert s.spice == pytest.approx(0.4) and s.spider == pytest.approx((6.25 + 0.4) / 2)
    assert score_captions(["a"], [["a"]]).spider is None
    with pytest.raises(ValueError, match="pair by index"):
        bleu(["a"], [["a"], ["b"]])
    with pytest.raises(ValueError, match="non-empty list"):
        cider_d(["a"], ["a"])
