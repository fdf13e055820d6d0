"""ROUGE-L novelty: NoveltyIndex must decide exactly like the reference loop (rouge-score
``_score_lcs`` against every kept instruction, reject when any F > threshold)."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import LCSseq
from rouge_score import rouge_scorer
from rouge_score.tokenizers import DefaultTokenizer

from selfinstruct.filters.base import Filter, FilterChain
from selfinstruct.filters._rouge_kernel import _rouge_f as rouge_l_f
from selfinstruct.filters.rouge import NoveltyIndex, RougeNovelty
from selfinstruct.record import Record
from selfinstruct.text import tokens


def reference_kept(texts: list[str], threshold: float = 0.7, pool: list[str] = ()) -> list[int]:
    kept_tokens = [tokens(t) for t in pool]
    kept = []
    for i, text in enumerate(texts):
        new = tokens(text)
        if any(rouge_scorer._score_lcs(new, old).fmeasure > threshold for old in kept_tokens):
            continue
        kept.append(i)
        kept_tokens.append(new)
    return kept


def index_kept(texts: list[str], threshold: float = 0.7, pool: list[str] = ()) -> list[int]:
    index = NoveltyIndex(threshold)
    for text in pool:
        index.add(tokens(text), text)
    kept = []
    for i, text in enumerate(texts):
        if index.find(tokens(text)) is None:
            index.add(tokens(text), text)
            kept.append(i)
    return kept


def chain_kept(texts: list[str], threshold: float = 0.7) -> list[str]:
    chain = FilterChain([RougeNovelty(rouge_threshold=threshold)])
    return [r.instruction for r in chain.run(Record(t) for t in texts)]


# A tiny vocabulary makes many pairs land near 0.7, where mistakes would show.
_words = st.sampled_from(["write", "a", "poem", "about", "the", "sea", "list", "three"])
_instruction = st.lists(_words, min_size=0, max_size=12).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(_instruction, min_size=1, max_size=40))
def test_keeps_exactly_what_the_reference_loop_keeps(texts):
    assert index_kept(texts) == reference_kept(texts)


@settings(max_examples=100, deadline=None)
@given(st.lists(_instruction, min_size=1, max_size=25), st.sampled_from([0.3, 0.5, 0.8, 0.95]))
def test_matches_the_reference_at_other_thresholds(texts, threshold):
    assert index_kept(texts, threshold) == reference_kept(texts, threshold)


@settings(max_examples=50, deadline=None)
@given(st.lists(_instruction, min_size=1, max_size=15), st.lists(_instruction, min_size=1, max_size=15))
def test_a_seeded_pool_rejects_like_kept_instructions(pool, texts):
    assert index_kept(texts, pool=pool) == reference_kept(texts, pool=pool)


@settings(max_examples=30, deadline=None)
@given(st.lists(_instruction, min_size=1, max_size=15))
def test_a_zero_threshold_rejects_anything_sharing_a_token(texts):
    assert index_kept(texts, 0.0) == reference_kept(texts, 0.0)


def test_an_exact_tie_at_the_threshold_is_decided_by_the_float_formula():
    # m = n = 10, LCS 7: F is exactly 0.7 in floats, not > 0.7: kept.
    pool = "a b c d e f g h i j"
    assert index_kept(["a b c d e f g x y z"], pool=[pool]) == [0]
    # m = 8, n = 12, LCS 7: 14/20 is 0.7 too, but the float formula gives 0.7000000000000001: rejected.
    assert rouge_scorer._score_lcs(tokens("a b c d e f g x y z w v"), tokens("a b c d e f g h")).fmeasure > 0.7
    assert index_kept(["a b c d e f g x y z w v"], pool=["a b c d e f g h"]) == []
    assert reference_kept(["a b c d e f g x y z w v"], pool=["a b c d e f g h"]) == []


def test_rouge_l_f_is_the_reference_expression():
    for lcs, n, m in [(7, 10, 10), (7, 12, 8), (0, 5, 5), (3, 3, 9), (5, 0, 4)]:
        new, pool = ["x"] * n, ["x"] * lcs + ["y"] * (m - lcs)
        assert rouge_l_f(min(lcs, n), n, m) == rouge_scorer._score_lcs(new, pool).fmeasure


def _brute_force_kept(token_lists: list[list[str]], threshold: float) -> list[int]:
    """An independent oracle without any pruning (every pair, rapidfuzz LCS, the same formula)."""
    vocab: dict[str, int] = {}
    seqs = ["".join(chr(vocab.setdefault(t, len(vocab))) for t in toks) for toks in token_lists]
    kept: list[int] = []
    for i, seq in enumerate(seqs):
        if not any(rouge_l_f(LCSseq.similarity(seq, seqs[k]), len(seq), len(seqs[k])) > threshold for k in kept):
            kept.append(i)
    return kept


def test_thousands_of_instructions_through_rebuilds_and_the_vectorised_path():
    # More than the first re-index (1,024 kept) and long posting lists from a small vocabulary.
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(40)]
    texts = [" ".join(rng.choices(vocab, k=rng.randint(1, 14))) for _ in range(2500)]
    for i in range(0, 2500, 7):       # near copies of earlier ones
        words = texts[rng.randrange(max(1, i))].split()
        words[rng.randrange(len(words))] = rng.choice(vocab)
        texts[i] = " ".join(words)
    assert index_kept(texts) == _brute_force_kept([tokens(t) for t in texts], 0.7)


def test_near_identical_chinese_instructions_are_rejected_and_unrelated_ones_kept():
    texts = ["请写一首关于大海的诗。", "请写一首关于大海的短诗。", "解释光合作用的过程。", "列出三种常见的水果。"]
    assert chain_kept(texts) == ["请写一首关于大海的诗。", "解释光合作用的过程。", "列出三种常见的水果。"]


def test_chinese_decisions_match_an_unpruned_oracle():
    rng = random.Random(3)
    chars = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出"
    texts = ["".join(rng.choices(chars, k=rng.randint(3, 15))) for _ in range(400)]
    assert index_kept(texts) == _brute_force_kept([tokens(t) for t in texts], 0.7)


# Han and kana, where ``tokens`` deliberately differs from rouge-score (one token per character).
_HAN_KANA = ((0x3040, 0x30FF), (0x31F0, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF),
             (0xFF66, 0xFF9F), (0x20000, 0x3FFFF))
_PICKED = ("abcxyzABCXYZ0123456789" + "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~" + " \t\n\r\x0b\x0c\u00a0\u3000"
           + "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿÀÉÎÕÜßœŒŁłĞğİıŞş"        # accented Latin, dotted/dotless i
           + "\u212a\u212b\u1e9e\u0130\ufb01\u0345\u03a3"               # Kelvin, Ångström, capital sharp s ...
           + "ＡＢＣａｂｃ１２３"                                            # full-width Latin and digits
           + "привет МИР Ёё" + "αβγ ΣΩ" + "안녕하세요" + "مرحبا" + "שלום" + "हिन्दी" + "١٢٣"
           + "😀🎉👍🏽\u200d\ufe0f" + "\u0301\u0308")                        # emoji, joiners, combining marks


def _not_han_or_kana(c: str) -> bool:
    return not any(lo <= ord(c) <= hi for lo, hi in _HAN_KANA)


_non_cjk_text = st.text(st.one_of(st.sampled_from(_PICKED),
                                  st.characters(exclude_categories=("Cs",)).filter(_not_han_or_kana)),
                        max_size=80)


@settings(max_examples=500, deadline=None)
@given(_non_cjk_text)
def test_tokens_equal_rouge_scores_own_tokenizer_on_text_without_han_or_kana(text):
    assert all(_not_han_or_kana(c) for c in text)
    assert tokens(text) == DefaultTokenizer(use_stemmer=False).tokenize(text)


def test_the_tokenizer_comparison_is_not_trivially_empty():
    text = "Ünïcode CAFÉ, naïve façade: x=42; résumé — 3.14 KELVIN \u212a!"
    assert tokens(text) == DefaultTokenizer(use_stemmer=False).tokenize(text) == \
        ["n", "code", "caf", "na", "ve", "fa", "ade", "x", "42", "r", "sum", "3", "14", "kelvin", "k"]


def test_mixed_chinese_and_english_tokens_count_both():
    assert tokens("用Python写一个排序函数") == ["用", "python", "写", "一", "个", "排", "序", "函", "数"]
    texts = ["用Python写一个排序函数", "用Python写一个排序的函数", "用Java写一个网页爬虫"]
    assert chain_kept(texts) == ["用Python写一个排序函数", "用Java写一个网页爬虫"]


def test_rejection_has_the_reason_code_and_the_most_similar_instruction():
    rouge = RougeNovelty()
    kept = Record("Write a short poem about the sea.")
    assert rouge.check(kept) is None
    rouge.add(kept)
    copy = Record("Write a short poem about the sea!")
    verdict = rouge.check(copy)
    assert verdict.reason == "rouge_too_similar"
    assert RougeNovelty.name == "rouge"
    assert verdict.detail == "rouge-l 1.000 with: Write a short poem about the sea."
    assert copy.rouge == 1.0 and copy.most_similar == "Write a short poem about the sea."


def test_kept_records_carry_their_best_verified_match_or_none():
    rouge = RougeNovelty()
    first = Record("Write a short poem about the sea.")
    rouge.check(first)
    rouge.add(first)
    related = Record("Write a long story about the sea and a ship.")
    assert rouge.check(related) is None
    assert related.most_similar == "Write a short poem about the sea."
    assert related.rouge == pytest.approx(2 * 5 / (7 + 10))
    unrelated = Record("Explain photosynthesis.")
    assert rouge.check(unrelated) is None
    assert unrelated.rouge is None and unrelated.most_similar is None


def test_instructions_without_tokens_are_never_similar():
    assert chain_kept(["", "!!!", "", "？？"]) == ["", "!!!", "", "？？"]
    index = NoveltyIndex()
    index.add([], "")
    assert index.find([]) is None and index.find(["a"]) is None
    assert index_kept(["", "a b"], pool=["", "?"]) == [0, 1]


def test_the_filter_is_registered_with_its_threshold_option():
    from selfinstruct.filters.registry import REGISTRY

    assert REGISTRY["rouge"] is RougeNovelty
    assert RougeNovelty.stage == "rouge" and RougeNovelty.fields == ("instruction",)
    assert RougeNovelty(rouge_threshold=0.5).index.threshold == 0.5


def test_a_threshold_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="between 0 and 1"):
        NoveltyIndex(1.5)


def _near_copy_texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(40)]
    texts = [" ".join(rng.choices(vocab, k=rng.randint(1, 14))) for _ in range(count)]
    for i in range(1, count, 5):
        words = texts[rng.randrange(i)].split()
        words[rng.randrange(len(words))] = rng.choice(vocab)
        texts[i] = " ".join(words)
    return texts


class _SkipEveryThird(Filter):
    """A filter before ROUGE that rejects some records, so some announced queries are never asked."""

    name, stage, fields = "skip", "quality", ("instruction",)

    def __init__(self):
        self.seen = 0

    def check(self, record):
        self.seen += 1
        return None if self.seen % 3 else self.reject("skipped")


def test_a_batched_chain_keeps_what_the_reference_keeps_among_the_records_it_checks():
    texts = _near_copy_texts(900, seed=9)
    chain = FilterChain([_SkipEveryThird(), RougeNovelty()])
    kept = [r.instruction for r in chain.run((Record(t) for t in texts), batch_size=128)]
    checked = [t for i, t in enumerate(texts) if (i + 1) % 3]
    assert kept == [checked[i] for i in reference_kept(checked)]


# ---- the compiled kernel's less travelled paths ---------------------------------------------------

def test_the_overlap_bound_never_drops_a_pair_that_exceeds_the_threshold(monkeypatch):
    # With the bound applied to every query (not only past a handful of survivors), decisions must
    # still be exactly the unpruned oracle's, including near-ties and repeated tokens.
    import selfinstruct.filters._rouge_index as rouge_index

    monkeypatch.setattr(rouge_index, "_BOUND_MIN", 0)
    texts = _near_copy_texts(1500, seed=11)
    assert index_kept(texts) == _brute_force_kept([tokens(t) for t in texts], 0.7)


@settings(max_examples=60, deadline=None)
@given(st.lists(_instruction, min_size=1, max_size=30))
def test_with_the_bound_on_every_query_decisions_match_the_reference(texts):
    import selfinstruct.filters._rouge_index as rouge_index

    saved, rouge_index._BOUND_MIN = rouge_index._BOUND_MIN, 0
    try:
        assert index_kept(texts) == reference_kept(texts)
    finally:
        rouge_index._BOUND_MIN = saved


def test_instructions_longer_than_64_tokens_use_the_exact_dp_and_match_the_reference():
    rng = random.Random(5)
    vocab = [f"w{i}" for i in range(30)]
    base = [" ".join(rng.choices(vocab, k=rng.randint(60, 90))) for _ in range(40)]
    texts = []
    for text in base:
        words = text.split()
        texts.append(text)
        for _ in range(2):      # near copies: a few edits keep them around the threshold
            copy = list(words)
            for _ in range(rng.randint(1, 25)):
                copy[rng.randrange(len(copy))] = rng.choice(vocab)
            texts.append(" ".join(copy))
    assert index_kept(texts) == reference_kept(texts)


def test_a_token_repeated_past_the_kept_levels_skips_the_bound_and_stays_exact(monkeypatch):
    import selfinstruct.filters._rouge_index as rouge_index

    monkeypatch.setattr(rouge_index, "_BOUND_MIN", 0)
    pool = ["the the the the the the cat sat", "a dog and the the the the the the cat"]
    texts = ["the the the the the the cat sat down", "the the the the the the the the", "cat sat the"]
    assert index_kept(texts, pool=pool) == reference_kept(texts, pool=pool)


def test_a_query_too_long_for_the_positional_tables_is_compared_with_every_item():
    pool = ["a b c", "x y z"]
    long_query = " ".join(["a", "b", "c"] * 7000)      # 21,000 tokens: beyond the 15-bit length field
    assert index_kept([long_query], pool=pool) == reference_kept([long_query], pool=pool) == [0]
    index = NoveltyIndex()
    index.add(tokens(long_query), long_query)
    assert index.find(tokens(long_query)) == (0, 1.0)


def test_long_posting_lists_grow_through_many_blocks_and_rebuilds():
    # One frequent word in every item's prefix: its lists chain many blocks between rebuilds.
    rng = random.Random(2)
    texts = [f"common {' '.join(rng.choices([f'r{i}' for i in range(400)], k=rng.randint(2, 5)))}"
             for _ in range(3000)]
    assert index_kept(texts) == _brute_force_kept([tokens(t) for t in texts], 0.7)


def test_the_index_counts_the_work_it_did():
    index = NoveltyIndex()
    for text in ["write a poem about the sea", "write a poem about the sky", "list three rivers"]:
        if index.find(tokens(text)) is None:
            index.add(tokens(text), text)
    scanned, survivors, verified = index.work_done()
    assert scanned >= survivors >= verified >= 1


def test_the_wrapper_and_the_kernel_agree_on_the_length_field():
    from selfinstruct.filters import _rouge_index, _rouge_kernel

    assert _rouge_index.LEN == _rouge_kernel.LEN
