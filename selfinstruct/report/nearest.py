"""Exact nearest-neighbour ROUGE-L: the report's ROUGE-L figure (Self-Instruct's Figure 3).

The paper plots, for each generated instruction, its ROUGE-L F-measure with its most similar seed
instruction. ``nearest_scores(instructions, seeds)`` computes exactly that; a set without seeds (a
file given to ``filter`` or ``report``) is scored against itself instead: each instruction against
its most similar OTHER instruction. ``SeedNearest`` scores one record at a time against the seeds
(``generate`` fills ``nearest_seed`` / ``nearest_seed_rouge`` with it).

"Exact" means the float rouge-score's ``_score_lcs`` gives, maximised over every candidate, with
``selfinstruct.text.tokens`` (rouge-score's tokenizer on English, one token per Han/kana character).
The search (``selfinstruct.filters._rouge_nearest``) bounds each pair's F by the elements the two
can share and computes an LCS only where the bound could still reach the best so far, so the
result is the brute-force loop's, bit for bit, without comparing every pair.

The best is the highest float F, as such a loop finds it: two pairs with the same real F can
differ in the last bit (14/20 and 7/10 do), and the higher float wins. Ties between equal floats go
to the earliest item (in ``against`` order, or in input order for a set against itself).
A set of more than ``limit`` instructions is scored on a uniform random sample of ``limit`` of them
(seeded, so a report is reproducible), each still exact against the whole set; ``sampled`` says so
and the caller says it on the figure.
"""
from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from selfinstruct.text import tokens

_BATCH = 2048        # queries per compiled call: progress lines between calls, no per-query overhead


@dataclass
class NearestResult:
    scores: list[float]          # per queried instruction, its best ROUGE-L F (0.0 when nothing shares a token)
    nearest: list[str | None]    # the most similar instruction's text (None when score is 0)
    sampled: bool                # True when only a uniform sample of the set was queried
    n_total: int                 # instructions in the set
    indices: list[int]           # which instructions of the input were queried (all, or the sample)


def nearest_scores(instructions: Sequence[str], against: Sequence[str] | None = None,
                   limit: int = 20000, seed: int = 0, progress: bool = False) -> NearestResult:
    """Each instruction's highest ROUGE-L F and the instruction that gives it.

    ``against`` given (the seeds): every instruction against its most similar ``against`` item;
    all of them, whatever ``limit`` says. ``against`` None: each against its most similar OTHER
    instruction of the set (a duplicate elsewhere in the set scores 1.0; itself never counts), for
    all of them when the set has at most ``limit``, else for a uniform random sample of ``limit``
    (seeded by ``seed``; ``indices`` ascending), each still exact against the whole set.
    Ties: the earliest item. ``progress`` prints a line to stderr per few thousand instructions.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    texts = list(instructions)
    if against is not None:
        pool = _Pool(list(against))
        indices = list(range(len(texts)))
        queries = [pool.encode(tokens(t)) for t in texts]
        skips = [-1] * len(texts)
    else:
        pool = _Pool(texts)
        indices = (list(range(len(texts))) if len(texts) <= limit
                   else sorted(random.Random(seed).sample(range(len(texts)), limit)))
        queries = [pool.ids(i) for i in indices]
        skips = indices
    items, scores = pool.search(queries, skips, progress)
    return NearestResult(scores=scores, nearest=[pool.texts[x] if x >= 0 else None for x in items],
                         sampled=len(indices) < len(texts), n_total=len(texts), indices=indices)


class SeedNearest:
    """Each generated instruction's most similar seed instruction (record fields ``nearest_seed``,
    ``nearest_seed_rouge``), one instruction at a time; the seeds are indexed once."""

    def __init__(self, seed_instructions: Sequence[str]):
        self._pool = _Pool(list(seed_instructions))

    def nearest(self, instruction: str) -> tuple[str | None, float]:
        """(the most similar seed's text, its ROUGE-L F); (None, 0.0) when no seed shares a token.
        Ties: the earliest seed."""
        items, scores = self._pool.search([self._pool.encode(tokens(instruction))], [-1], False)
        return (self._pool.texts[items[0]] if items[0] >= 0 else None), scores[0]


class _Pool:
    """Tokenised instructions as token-id runs, with the compiled search's posting lists."""

    def __init__(self, texts: list[str]):
        from selfinstruct.filters import _rouge_nearest as kernel

        self._kernel = kernel
        self.texts = texts
        self._vocab: dict[str, int] = {}
        runs = [self.encode(tokens(t), grow=True) for t in texts]
        self._flat, self._start, self._lens = _concatenate(runs)
        self._index = kernel.build(self._flat, self._start, self._lens, len(self._vocab))
        self._stamp = np.full(len(texts), -1, dtype=np.int64)     # last query that met each item
        self._queries = 0
        self._qbits = np.zeros(len(self._vocab), dtype=np.uint64)   # a query's token positions, zero between
        self.work = np.zeros(2, dtype=np.int64)     # postings read, LCS computed (benchmarks)

    def encode(self, toks: list[str], grow: bool = False) -> np.ndarray:
        """Token ids; a token no pool item has is -1 (it can match nothing)."""
        if grow:
            vocab = self._vocab
            return np.array([vocab.setdefault(t, len(vocab)) for t in toks], dtype=np.int64)
        get = self._vocab.get
        return np.array([get(t, -1) for t in toks], dtype=np.int64)

    def ids(self, item: int) -> np.ndarray:
        return self._flat[self._start[item]:self._start[item] + self._lens[item]]

    def search(self, queries: list[np.ndarray], skips: Sequence[int], progress: bool
               ) -> tuple[list[int], list[float]]:
        """Best pool item and its F for each query (-1, 0.0 where none shares a token); query q
        never matches pool item ``skips[q]``."""
        items: list[int] = []
        scores: list[float] = []
        for lo in range(0, len(queries), _BATCH):
            batch = queries[lo:lo + _BATCH]
            q_flat, q_start, q_lens = _concatenate(batch)
            out_item = np.empty(len(batch), dtype=np.int64)
            out_f = np.empty(len(batch), dtype=np.float64)
            self._kernel.search(q_flat, q_start, q_lens, np.asarray(skips[lo:lo + _BATCH], dtype=np.int64),
                                self._queries, *self._index, self._flat, self._start, self._lens, self._stamp,
                                self._qbits, self.work, out_item, out_f)
            self._queries += len(batch)
            items.extend(out_item.tolist())
            scores.extend(out_f.tolist())
            if progress:
                print(f"nearest ROUGE-L: {len(items):,}/{len(queries):,} instructions", file=sys.stderr,
                      flush=True)
        return items, scores


def _concatenate(runs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token-id runs as one flat array with each run's start and length."""
    lens = np.array([len(r) for r in runs], dtype=np.int64)
    start = np.zeros(len(runs), dtype=np.int64)
    if len(runs) > 1:
        start[1:] = np.cumsum(lens[:-1])
    flat = np.concatenate(runs) if runs else np.zeros(0, dtype=np.int64)
    return flat.astype(np.int64, copy=False), start, lens
