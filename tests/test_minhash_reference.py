"""MinHashDedup against datasketch, the reference implementation of MinHash LSH.

Pairs of records are planted at known true Jaccard similarities (0.3 to 0.9), in English and in
Chinese, and each pair's second record is offered after its first. The stage must catch about as
many second records as datasketch's ``MinHash`` + ``MinHashLSH`` (the same 128 permutations, the
same bands and rows, each LSH candidate then verified with ``MinHash.jaccard() >= 0.8``, as the stage
verifies its candidates) fed the same shingles. The two use different hash families, so single
decisions differ; the share caught at each level must agree within 5 percentage points.

Pairs are built by word edits (Chinese: character edits): runs of substituted, inserted or deleted
words at one or two places. Runs keep the shingle-set Jaccard (what MinHash estimates: word bigrams,
character trigrams) close to the token-set Jaccard: a lone substituted word costs one token but two
bigrams. Both are measured on every pair and must be within 0.02 of the level.

Sample size: at 0.8 the stage catches about a third of the pairs, and with 200 pairs per level the
share of two independent hash families differs by 4.6 points (one standard deviation) by chance
alone; 1,000 pairs per level bring that to 2.1 points, so that 5 points means a real difference.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from datasketch import MinHash, MinHashLSH

from selfinstruct.filters.base import FilterChain
from selfinstruct.filters.minhash import MinHashDedup
from selfinstruct.record import Record
from selfinstruct.text import tokens

LEVELS = (0.3, 0.5, 0.7, 0.8, 0.9)
PAIRS = 1000
THRESHOLD = 0.8
NUM_PERM = 128
SHINGLE_N = {"en": 2, "zh": 3}          # the stage's shingles: word bigrams, character trigrams

_SYLLABLES = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]
ENGLISH_WORDS = sorted({a + b + c for a in _SYLLABLES for b in _SYLLABLES for c in ("", "n", "r", "s")})
HAN = [chr(cp) for cp in range(0x4E00, 0x4E00 + 6000)]       # CJK unified ideographs


@dataclass
class Pair:
    first: str
    second: str


def _plan(rng: random.Random, level: float, n: int) -> tuple[int, list[int], int]:
    """(common tokens c, common run lengths, differing tokens d) whose token-set Jaccard c/(c+d)
    and n-gram Jaccard are both within 0.015 of ``level``.

    With all tokens distinct and the c common tokens in m runs (each at least n long), the common
    n-grams are c - (n-1)m and the union of n-grams is c + d - 2(n-1) + (n-1)m."""
    while True:
        c = rng.randint(40, 64)
        runs = rng.choice([1, 1, 2])
        best = None
        guess = round(c * (1 - level) / level)
        for d in range(max(1, guess - 6), guess + 7):
            jt = c / (c + d)
            js = (c - (n - 1) * runs) / (c + d - 2 * (n - 1) + (n - 1) * runs)
            err = max(abs(jt - level), abs(js - level))
            if best is None or err < best[0]:
                best = (err, d)
        if best[0] <= 0.015:
            cut = rng.randint(max(n, 3), c - max(n, 3)) if runs == 2 else c
            return c, [cut, c - cut] if runs == 2 else [c], best[1]


def _pair(rng: random.Random, level: float, lang: str) -> Pair:
    n = SHINGLE_N[lang]
    c, runs, d = _plan(rng, level, n)
    words = rng.sample(ENGLISH_WORDS if lang == "en" else HAN, c + d)
    common, fresh = words[:c], words[c:]
    # The d differing tokens: only in the first (deleted), only in the second (inserted), or a
    # mix (substituted). They sit in the gaps around the common runs: before, between, after.
    only_first = rng.choice([0, d // 2, rng.randint(0, d)])
    gaps = len(runs) + 1
    placed = [(word, i < only_first) for i, word in enumerate(fresh)]
    rng.shuffle(placed)
    first_gaps, second_gaps = [[] for _ in range(gaps)], [[] for _ in range(gaps)]
    for i, (word, in_first) in enumerate(placed):
        # a gap between two runs gets a word first, or the runs would join in one of the texts
        gap = i + 1 if i < gaps - 2 else rng.randrange(gaps)
        (first_gaps if in_first else second_gaps)[gap].append(word)
    parts_first, parts_second, at = [], [], 0
    for g in range(gaps):
        parts_first += first_gaps[g]
        parts_second += second_gaps[g]
        if g < len(runs):
            parts_first += common[at:at + runs[g]]
            parts_second += common[at:at + runs[g]]
            at += runs[g]
    sep = " " if lang == "en" else ""
    return Pair(sep.join(parts_first), sep.join(parts_second))


@pytest.fixture(scope="module")
def planted() -> dict[tuple[str, float], list[Pair]]:
    rng = random.Random(20240611)
    return {(lang, level): [_pair(rng, level, lang) for _ in range(PAIRS)]
            for lang in ("en", "zh") for level in LEVELS}


def shingles(text: str, lang: str) -> list[bytes]:
    toks = tokens(text)
    n = min(SHINGLE_N[lang], len(toks))
    sep = " " if lang == "en" else ""
    return [sep.join(toks[i:i + n]).encode("utf-8") for i in range(len(toks) - n + 1)]


def stage_share(pairs: list[Pair]) -> tuple[float, int]:
    """(share of second records caught as near-duplicates of their own first, how many were
    rejected citing some other record)."""
    firsts = [Record(p.first, origin=f"first:{i}") for i, p in enumerate(pairs)]
    seconds = [Record(p.second, origin=f"second:{i}") for i, p in enumerate(pairs)]
    cited: dict[str, str] = {}
    chain = FilterChain([MinHashDedup(minhash_threshold=THRESHOLD, num_perm=NUM_PERM)],
                        on_reject=lambda r, v: cited.setdefault(r.origin, v.detail))
    list(chain.run(firsts + seconds, batch_size=512))
    caught = sum(cited.get(f"second:{i}", "").startswith(f"near-duplicate of first:{i}: ")
                 for i in range(len(pairs)))
    return caught / len(pairs), len(cited) - caught


def reference_share(pairs: list[Pair], lang: str, bands: int, rows: int) -> float:
    """The same question asked of datasketch."""
    sigs = MinHash.bulk([shingles(t, lang) for p in pairs for t in (p.first, p.second)], num_perm=NUM_PERM)
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, params=(bands, rows))
    for i in range(len(pairs)):
        lsh.insert(i, sigs[2 * i])
    caught = 0
    for i in range(len(pairs)):
        second = sigs[2 * i + 1]
        caught += i in lsh.query(second) and second.jaccard(sigs[2 * i]) >= THRESHOLD
    return caught / len(pairs)


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("level", LEVELS)
def test_planted_pairs_have_the_jaccard_of_their_level(planted, shingle_jaccard, lang, level):
    for pair in planted[lang, level]:
        assert abs(shingle_jaccard(pair.first, pair.second) - level) <= 0.02, pair
        assert abs(shingle_jaccard(pair.first, pair.second, SHINGLE_N[lang]) - level) <= 0.02, pair
        toks = tokens(pair.first)
        assert len(set(toks)) == len(toks) >= 40
        if lang == "zh":
            assert len(toks) == len(pair.first)        # one token per Han character


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_stage_catches_the_share_datasketch_catches_at_every_level(planted, lang):
    sketcher = MinHashDedup(minhash_threshold=THRESHOLD, num_perm=NUM_PERM).sketcher
    shares = {}
    for level in LEVELS:
        ours, elsewhere = stage_share(planted[lang, level])
        reference = reference_share(planted[lang, level], lang, sketcher.bands, sketcher.rows)
        shares[level] = (round(ours, 3), round(reference, 3))
        assert elsewhere == 0, (level, elsewhere)
    assert all(abs(ours - ref) <= 0.05 for ours, ref in shares.values()), shares
    # The expected shape of a 0.8 threshold: unrelated-looking pairs pass, near copies are caught.
    assert shares[0.3][0] == shares[0.5][0] == 0.0, shares
    assert shares[0.7][0] <= 0.05, shares
    assert 0.1 <= shares[0.8][0] <= 0.7, shares
    assert shares[0.9][0] >= 0.75, shares
    assert [ours for ours, _ in shares.values()] == sorted(ours for ours, _ in shares.values())
