"""Exact nearest-neighbour ROUGE-L (the report's figure and generate's ``nearest_seed``): every
score and every chosen instruction must be what a loop over every candidate with rouge-score's
``_score_lcs`` finds (the highest float F, ties to the earliest)."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import LCSseq
from rouge_score import rouge_scorer, scoring

from selfinstruct.filters import _rouge_nearest as kernel
from selfinstruct.report.nearest import NearestResult, SeedNearest, nearest_scores
from selfinstruct.text import tokens


def oracle(instructions: list[str], against: list[str] | None = None,
           queried: list[int] | None = None) -> tuple[list[float], list[str | None]]:
    """The reference: rouge-score's _score_lcs against every candidate, highest F, earliest on ties."""
    pool = instructions if against is None else against
    pool_tokens = [tokens(t) for t in pool]
    scores, nearest = [], []
    for i in (range(len(instructions)) if queried is None else queried):
        new = tokens(instructions[i])
        best, best_f = None, 0.0
        for j, old in enumerate(pool_tokens):
            if against is None and j == i:
                continue
            f = rouge_scorer._score_lcs(new, old).fmeasure
            if f > best_f:
                best, best_f = pool[j], f
        scores.append(best_f)
        nearest.append(best)
    return scores, nearest


def fast_oracle(instructions: list[str]) -> tuple[list[float], list[str | None]]:
    """The same loop for thousands of instructions: rapidfuzz's LCS (independent of the kernel) and
    rouge-score's own F-measure on it."""
    vocab: dict[str, int] = {}
    seqs = ["".join(chr(vocab.setdefault(t, len(vocab))) for t in tokens(s)) for s in instructions]
    scores, nearest = [], []
    for i, new in enumerate(seqs):
        best, best_f = None, 0.0
        for j, old in enumerate(seqs):
            if j == i or not new or not old:
                continue
            lcs = LCSseq.similarity(new, old)
            f = scoring.fmeasure(lcs / len(old), lcs / len(new))
            if f > best_f:
                best, best_f = instructions[j], f
        scores.append(best_f)
        nearest.append(best)
    return scores, nearest


def computed(result: NearestResult) -> tuple[list[float], list[str | None]]:
    return result.scores, result.nearest


# A tiny vocabulary puts many pairs at equal or nearly equal scores, where ties and bounds matter;
# case and punctuation make texts differ where their tokens do not, so the tie rule is visible.
_words = st.sampled_from(["write", "a", "poem", "about", "the", "sea", "list", "three", "Sea", "a!"])
_instruction = st.lists(_words, min_size=0, max_size=12).map(" ".join)
_chars = st.sampled_from(list("写一首关于大海的诗列出三种水果") + ["AI", "，", " "])
_zh_instruction = st.lists(_chars, min_size=0, max_size=14).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(_instruction, min_size=0, max_size=30))
def test_each_instruction_gets_exactly_its_best_other_instruction(texts):
    assert computed(nearest_scores(texts)) == oracle(texts)


@settings(max_examples=150, deadline=None)
@given(st.lists(_zh_instruction, min_size=0, max_size=25))
def test_chinese_sets_get_exactly_their_best_other_instruction(texts):
    assert computed(nearest_scores(texts)) == oracle(texts)


@settings(max_examples=200, deadline=None)
@given(st.lists(_instruction, max_size=20), st.lists(_instruction, max_size=15))
def test_each_instruction_gets_exactly_its_best_seed(texts, seeds):
    result = nearest_scores(texts, seeds, limit=1)     # the limit is for sets against themselves
    assert computed(result) == oracle(texts, seeds)
    assert not result.sampled and result.indices == list(range(len(texts))) and result.n_total == len(texts)


@settings(max_examples=100, deadline=None)
@given(st.lists(_instruction, max_size=10), _instruction)
def test_seed_nearest_answers_like_nearest_scores(seeds, instruction):
    expected = oracle([instruction], seeds)
    assert SeedNearest(seeds).nearest(instruction) == (expected[1][0], expected[0][0])


def test_thousands_of_near_copies_match_the_oracle():
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(40)]
    texts = [" ".join(rng.choices(vocab, k=rng.randint(1, 14))) for _ in range(1500)]
    for i in range(0, 1500, 7):       # near copies of earlier ones, some exact
        words = texts[rng.randrange(max(1, i))].split()
        if i % 3:
            words[rng.randrange(len(words))] = rng.choice(vocab)
        texts[i] = " ".join(words)
    assert computed(nearest_scores(texts)) == fast_oracle(texts)


def test_random_chinese_sets_match_the_oracle():
    rng = random.Random(3)
    chars = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出"
    texts = ["".join(rng.choices(chars, k=rng.randint(0, 15))) for _ in range(600)]
    texts += [texts[rng.randrange(600)] for _ in range(30)]        # exact duplicates
    assert computed(nearest_scores(texts)) == fast_oracle(texts)


def test_instructions_longer_than_64_tokens_match_the_oracle():
    # Longer queries take the dynamic-programming LCS instead of the bit-parallel one.
    rng = random.Random(5)
    vocab = [f"w{i}" for i in range(30)]
    texts = []
    for _ in range(25):
        words = rng.choices(vocab, k=rng.randint(55, 90))
        texts.append(" ".join(words))
        for _ in range(2):
            copy = list(words)
            for _ in range(rng.randint(1, 30)):
                copy[rng.randrange(len(copy))] = rng.choice(vocab)
            texts.append(" ".join(copy[:rng.randint(20, len(copy))]))
    assert computed(nearest_scores(texts)) == oracle(texts)


def test_human_written_english_against_seeds():
    seeds = ["Write a poem about the ocean.", "Summarize the article in one sentence.",
             "Give three tips for staying healthy."]
    result = nearest_scores(["Write a haiku about autumn leaves.", "Give me three tips for saving money.",
                             "Translate hello into Spanish."], seeds)
    # write a [haiku] about [autumn leaves] vs write a [poem] about [the ocean]: LCS 3 of 6 + 6;
    # give [me] three tips for [saving money] vs give three tips for [staying healthy]: 4 of 7 + 6.
    assert result.scores == [pytest.approx(6 / 12), pytest.approx(2 * 4 / (7 + 6)), 0.0]
    assert result.nearest == [seeds[0], seeds[2], None]


def test_human_written_chinese_against_each_other():
    texts = ["请写一首关于大海的诗。", "请写一首关于大海的短诗。", "解释光合作用的过程。", "列出三种常见的水果。"]
    result = nearest_scores(texts)
    # 请写一首关于大海的诗 (10 characters) is a subsequence of the 11-character one: 2 * 10 / 21.
    assert result.scores[:2] == [pytest.approx(20 / 21)] * 2
    assert result.nearest[:2] == [texts[1], texts[0]]
    # 解释光合作用的过程 and 列出三种常见的水果 share only 的.
    assert result.scores[2:] == [pytest.approx(2 / 18)] * 2 and result.nearest[2:] == [texts[3], texts[2]]


def test_a_duplicate_scores_one_and_an_instruction_never_matches_itself():
    texts = ["List three rivers.", "Name a river.", "List three rivers!", "Unrelated words here."]
    result = nearest_scores(texts)
    assert result.scores[0] == result.scores[2] == 1.0
    assert result.nearest[0] == "List three rivers!" and result.nearest[2] == "List three rivers."
    assert result.scores[3] == 0.0 and result.nearest[3] is None
    assert nearest_scores(["Only one instruction."]).nearest == [None]


def test_ties_go_to_the_earliest_item():
    seeds = ["write a poem about dogs", "write a poem about cats", "write a poem about the sea"]
    assert SeedNearest(seeds).nearest("write a poem about birds") == (seeds[0], pytest.approx(0.8))
    texts = ["write a poem about birds", *seeds]
    assert nearest_scores(texts).nearest[0] == seeds[0]
    assert nearest_scores(texts).nearest[1] == texts[0]      # before seeds[1], also at 0.8


def _float_tie() -> tuple[int, tuple[int, int], tuple[int, int]]:
    """A query length n and two (LCS, partner length) pairs whose F is the same real number but not
    the same float: the first pair's float is the larger."""
    for n in range(2, 30):
        seen: dict[tuple[int, int], tuple[int, int, float]] = {}
        for m in range(1, 40):
            for lcs in range(1, min(n, m) + 1):
                f = rouge_scorer._score_lcs(["q"] * n, ["q"] * lcs + ["x"] * (m - lcs)).fmeasure
                key = (2 * lcs // _gcd(2 * lcs, n + m), (n + m) // _gcd(2 * lcs, n + m))
                if key in seen and seen[key][2] != f:
                    (l1, m1, f1), (l2, m2) = seen[key], (lcs, m)
                    return (n, (l1, m1), (l2, m2)) if f1 > f else (n, (l2, m2), (l1, m1))
                seen.setdefault(key, (lcs, m, f))
    raise AssertionError("no float tie found")


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def test_the_highest_float_wins_even_where_the_real_scores_tie():
    n, (l_high, m_high), (l_low, m_low) = _float_tie()
    query = [f"q{i}" for i in range(n)]

    def partner(lcs, m, filler):
        return " ".join(query[:lcs] + [f"{filler}{i}" for i in range(m - lcs)])

    seeds = [partner(l_low, m_low, "a"), partner(l_high, m_high, "b")]    # the lower float first
    expected = oracle([" ".join(query)], seeds)
    assert expected[1] == [seeds[1]]
    assert computed(nearest_scores([" ".join(query)], seeds)) == expected


def test_a_large_set_is_sampled_uniformly_and_each_sample_is_exact_against_the_whole_set():
    rng = random.Random(11)
    vocab = [f"w{i}" for i in range(25)]
    texts = [" ".join(rng.choices(vocab, k=rng.randint(1, 8))) for _ in range(300)]
    result = nearest_scores(texts, limit=40, seed=3)
    assert result.sampled and result.n_total == 300 and len(result.indices) == 40
    assert result.indices == sorted(set(result.indices)) and 0 <= result.indices[0] and result.indices[-1] < 300
    assert computed(result) == oracle(texts, queried=result.indices)
    assert nearest_scores(texts, limit=40, seed=3).indices == result.indices        # reproducible
    assert nearest_scores(texts, limit=40, seed=4).indices != result.indices
    whole = nearest_scores(texts, limit=300)
    assert not whole.sampled and whole.indices == list(range(300))


def test_empty_inputs():
    assert nearest_scores([]) == NearestResult([], [], False, 0, [])
    assert computed(nearest_scores(["a b", ""], [])) == ([0.0, 0.0], [None, None])
    assert computed(nearest_scores(["", "!!", "？？"])) == ([0.0] * 3, [None] * 3)
    assert SeedNearest([]).nearest("write a poem") == (None, 0.0)
    assert SeedNearest(["write a poem"]).nearest("") == (None, 0.0)


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        nearest_scores(["a"], limit=0)


def test_repeated_queries_on_one_index_stay_exact():
    # The index marks the items each query has met; a later query must not see those marks.
    seeds = ["write a poem about the sea", "list three rivers", "write a story"]
    nearest = SeedNearest(seeds)
    for _ in range(3):
        assert nearest.nearest("write a poem about the sky") == (seeds[0], pytest.approx(10 / 12))
        assert nearest.nearest("list three big rivers") == (seeds[1], pytest.approx(6 / 7))


@pytest.mark.parametrize("lcs_len,n,m", [(7, 10, 10), (7, 12, 8), (0, 5, 5), (3, 3, 9), (5, 0, 4), (1, 1, 1)])
def test_the_kernel_f_measure_is_rouge_scores_float(lcs_len, n, m):
    new, other = ["x"] * n, ["x"] * min(lcs_len, n) + ["y"] * (m - min(lcs_len, n))
    assert kernel.rouge_f(min(lcs_len, n), n, m) == rouge_scorer._score_lcs(new, other).fmeasure


def test_template_heavy_sets_full_of_ties_match_the_oracle():
    rng = random.Random(13)
    adjectives, topics = ["short", "funny", "sad", "long"], ["the sea", "a cat", "my city", "rain", "trains"]
    texts = [f"{rng.choice(['Write', 'Compose'])} a {rng.choice(adjectives)} poem about {rng.choice(topics)}."
             for _ in range(400)]
    texts += [f"List {rng.randint(2, 9)} facts about {rng.choice(topics)}." for _ in range(200)]
    assert computed(nearest_scores(texts)) == fast_oracle(texts)


def test_a_query_repeating_a_token_past_the_slot_levels_stays_exact():
    # More repeats of one token than the slot bound keeps levels for: that bound is skipped.
    seeds = ["the the the the the the the the the the cat", "the cat sat on the mat", "a dog"]
    texts = ["the the the the the the the the the the the the cat sat", "the " * 20 + "dog", "cat the"]
    assert computed(nearest_scores(texts, seeds)) == oracle(texts, seeds)
    assert computed(nearest_scores(texts + seeds)) == oracle(texts + seeds)


def test_the_bounds_leave_most_pairs_without_an_lcs():
    from selfinstruct.report.nearest import _Pool

    # Unrelated random texts (nearest scores around 0.2) with a near copy for every tenth one.
    rng = random.Random(17)
    vocab = [f"w{i}" for i in range(300)]
    texts = [" ".join(rng.choices(vocab, k=rng.randint(5, 20))) for _ in range(1000)]
    for i in range(0, 1000, 10):
        texts[i] = texts[i + 1] + " w0"
    pool = _Pool(texts)
    pool.search([pool.ids(i) for i in range(1000)], list(range(1000)), False)
    _scanned, computed_lcs = pool.work
    assert computed_lcs < 0.3 * 1000 * 999       # about 0.19 measured; every pair would be 1.0


def test_progress_goes_to_stderr(capsys):
    nearest_scores(["write a poem", "write a story"], progress=True)
    out = capsys.readouterr()
    assert out.out == "" and "2/2 instructions" in out.err
