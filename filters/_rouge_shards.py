"""The two halves of parallel ROUGE-L novelty (``RougeNovelty`` on an engine with several workers).

``RougeShard`` runs in a worker (an engine actor): a ``NoveltyIndex`` over its share of the pool.
Pool item k (the k-th instruction the filter ever kept or preloaded) lives on shard k % W as that
shard's item k // W, so global numbers need no table. ``step`` adds the shard's new items, then
answers a batch of queries: per query the best (global number, score, text) of its share, with
``NoveltyIndex.best`` semantics (every item above the threshold survives pruning, so above it the
answer is the true best; ties go to the lowest number). The queries go through the index's own
kernel from one compiled loop per query length (``NoveltyIndex.best_many``): one Python call per query cost
about as much as the kernel's work on a shard of a few hundred thousand items, and every shard
pays it for every query.

The same call also resolves the batch against itself, the part that cannot wait for the pool: the
shard encodes the batch's queries (``BatchRows``: token ids of a batch-local vocabulary) and, for
its share of them (positions shard, shard + W, ...), finds every EARLIER query of the batch that
scores above the threshold ("mates"), in compiled code: a length filter and a token-count bound
first (both necessary conditions for F > t, as in ``_rouge_index``), then the exact LCS and the
reference's float formula from ``_rouge_kernel``. That is a scan of all earlier rows (those this
shard's pool share already rejects are skipped: never kept, never a mate), a few ns a pair before
the bound, so a batch costs at most B^2/2 pair tests split over the shards: less than its pool
queries, and bounded by the batch size however clustered the data are (a template
repeated throughout the input makes near-copies in every batch, never a quadratic join of the
whole input).

Exactness: a record's pool answer covers every item added before the batch's ``prepare``; its
mates cover the batch's records before it, and the coordinator keeps those of them the chain kept
(``add``). The union is the pool the single-process filter checks against at that moment, so
"best score > threshold" (the decision) is the same, and so is the best match named (highest
score, then the earliest: the pool's items come before the batch's).
"""
from __future__ import annotations

from itertools import repeat
from typing import NamedTuple, Sequence

import numpy as np
from numba import njit

from selfinstruct.filters._rouge_index import NoveltyIndex
from selfinstruct.filters._rouge_kernel import _lcs, _popcount, _query_bits, _rouge_f
from selfinstruct.text import tokens

_EPS = 1e-9                      # as _rouge_index: pairs at exactly F = t are still verified
LEVELS = 4                       # count levels per slot of the token-count bound
SLOTS = 64
OWN_SLOTS = 32                   # token ids below this get a slot of their own


def joined_tokens(text: str) -> str:
    """``tokens(text)`` as one space-joined string: tokens never contain whitespace, and a string
    crosses a process boundary several times cheaper than a list of strings."""
    return " ".join(tokens(text))


# ---- the worker side --------------------------------------------------------------------------
class RougeShard:
    """One shard of the pool, held by an engine actor."""

    def __init__(self, threshold: float, shard: int, shards: int):
        self.index = NoveltyIndex(threshold)
        self.shard, self.shards = shard, shards
        self._items_of: dict[str, list[int]] | None = None   # text -> local items, built on first use

    def load(self, texts: Sequence[str]) -> int:
        """Add already-kept instructions (their tokens are recomputed here); returns the shard's size."""
        for text in texts:
            self._add(tokens(text), text)
        return len(self.index)

    def step(self, adds: Sequence[tuple[str, str]], queries: Sequence[str],
             exclusions: dict[int, list[str]]) -> "ShardAnswer":
        """Add ``adds`` ((joined tokens, text), in global order), then answer ``queries`` (joined
        tokens, in input order): per query the best (global number or -1, score or -1.0, text or
        None) of this shard's items, its ``exclusions`` (query position -> instructions it must not
        be compared with: an evolved record's ancestors) left out; and, for the queries at positions
        shard, shard + shards, ..., every earlier query scoring above the threshold with it."""
        for joined, text in adds:
            self._add(joined.split(), text)
        found = np.full(len(queries), -1, dtype=np.int64)
        scores = np.full(len(queries), -1.0)
        index, shard, shards = self.index, self.shard, self.shards
        batch = _encode(index.vocabulary, queries, index.threshold)
        if len(index):
            _best_many(index, batch, set(exclusions), found, scores)
            for j, texts_out in exclusions.items():
                hit = index.best(queries[j].split(), self._excluded(texts_out))
                found[j], scores[j] = (-1, -1.0) if hit is None else hit
        texts: list[str | None] = [None if i < 0 else index.text(i) for i in found.tolist()]
        found = np.where(found >= 0, shard + shards * found, -1)
        # A query this shard alone already puts above the threshold is rejected whatever the
        # other shards say: never kept, so never anyone's mate.
        return ShardAnswer(found, scores, texts, *batch.mates(shard, shards, scores > index.threshold))

    def size(self) -> int:
        return len(self.index)

    def _add(self, toks: list[str], text: str) -> None:
        if self._items_of is not None:
            self._items_of.setdefault(text, []).append(len(self.index))
        self.index.add(toks, text)

    def _excluded(self, texts: list[str]) -> list[int]:
        if self._items_of is None:
            self._items_of = {}
            for i in range(len(self.index)):
                self._items_of.setdefault(self.index.text(i), []).append(i)
        return [i for text in texts for i in self._items_of.get(text, ())]


class ShardAnswer(NamedTuple):
    found: np.ndarray               # per query: the best item's global number, -1 for none
    scores: np.ndarray              # its score, -1.0 for none
    texts: list                     # its text, None for none
    mate_bounds: np.ndarray         # per own query k (position shard + k * shards): its mates are
    mate_rows: np.ndarray           # mate_rows[mate_bounds[k]:mate_bounds[k + 1]], earlier queries
    mate_scores: np.ndarray         # scoring above the threshold with it, and their scores


def _best_many(index: NoveltyIndex, batch: "BatchRows", skip: set[int], found: np.ndarray,
                scores: np.ndarray) -> None:
    """``NoveltyIndex.best`` for every query of ``batch`` but those in ``skip``, written into
    ``found`` (local item or -1) and ``scores``. ``batch`` holds the index's token ids (tokens new
    to it are >= its vocabulary size: unknown)."""
    ids = np.where(batch.flat < len(index.vocabulary), batch.flat, -1)
    wanted = batch.lens > 0
    if skip:
        wanted[list(skip)] = False
    index.best_many(ids, batch.lens, batch.start, wanted, found, scores)


def merge_answers(answers: Sequence[ShardAnswer]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query, the best of the shards' pool answers: the highest score, ties to the lowest global
    number. Returns (global numbers, scores, the index of the shard that gave each)."""
    found = np.stack([a.found for a in answers])
    scores = np.stack([a.scores for a in answers])
    top = scores.max(axis=0)
    candidates = np.where((scores == top) & (found >= 0), found, np.iinfo(np.int64).max)
    shard = candidates.argmin(axis=0)
    columns = np.arange(found.shape[1])
    return found[shard, columns], scores[shard, columns], shard


# ---- a batch's own pairs ------------------------------------------------------------------------
class BatchRows:
    """A batch's queries as token ids (``flat`` from ``start`` for ``lens``), with their count masks."""

    def __init__(self, threshold: float, flat: np.ndarray, start: np.ndarray, lens: np.ndarray):
        self.threshold = threshold
        self.flat, self.start, self.lens = flat, start, lens
        self.masks = np.zeros((LEVELS, len(lens)), dtype=np.uint64)   # [level, row]
        self.over = np.zeros(len(lens), dtype=np.bool_)                # a slot count above LEVELS: no bound
        _row_masks(flat, start, lens, self.masks, self.over, 0, len(lens))

    def mates(self, first: int, step: int, never_kept: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For rows first, first + step, ...: every earlier row scoring above the threshold with it,
        as (bounds, rows, scores) (see ``ShardAnswer``), leaving out the rows ``never_kept`` marks."""
        own = len(range(first, len(self.lens), step))
        capacity = 4 * len(self.lens) + 64
        while True:
            bounds = np.zeros(own + 1, dtype=np.int64)
            rows = np.zeros(capacity, dtype=np.int64)
            scores = np.zeros(capacity)
            needed = _mates(self.flat, self.start, self.lens, self.masks, self.over,
                            np.flatnonzero(~never_kept & (self.lens > 0)), first, step,
                            self.threshold - _EPS, self.threshold, bounds, rows, scores)
            if needed <= capacity:
                return bounds, rows[:needed], scores[:needed]
            capacity = needed


def _encode(vocab: dict[str, int], queries: Sequence[str], threshold: float = 0.7) -> BatchRows:
    """The queries (joined tokens) as ids of ``vocab`` (a shard index's), tokens new to it numbered
    on from its size: one id per distinct token, as LCS needs. C-level passes only (str.join/split,
    map): a Python loop over the tokens cost more than the pair scan."""
    flat_tokens = " ".join(queries).split()
    ids = np.fromiter(map(vocab.get, flat_tokens, repeat(-1)), dtype=np.int64, count=len(flat_tokens))
    unknown = np.flatnonzero(ids < 0)
    if len(unknown):
        new: dict[str, int] = {}
        ids[unknown] = [new.setdefault(flat_tokens[p], len(vocab) + len(new)) for p in unknown.tolist()]
    lens = np.fromiter((q.count(" ") + 1 if q else 0 for q in queries), dtype=np.int64, count=len(queries))
    return BatchRows(threshold, ids, np.cumsum(lens) - lens, lens)


@njit(cache=True)
def _row_masks(flat, start, lens, masks, over, first, last):
    """Per row, LEVELS masks: bit s of mask k is set when the row has more than k tokens in slot s. sum over k, s of (mask_k(a) & mask_k(b)) = sum over slots of min(count_a,
    count_b) >= the multiset overlap of a and b >= their LCS, when a has at most LEVELS tokens per
    slot (``over`` marks the rows that do not)."""
    counts = np.zeros(SLOTS, dtype=np.int64)
    for r in range(first, last):
        counts[:] = 0
        for p in range(start[r], start[r] + lens[r]):
            t = flat[p]
            # the first tokens a shard saw (the most frequent, mostly) get a slot each; the rest
            # share hashed slots, so a rare token seldom lands on a common word's slot
            counts[t if t < OWN_SLOTS else OWN_SLOTS + ((t * 0x9E3779B1) >> 7) % (SLOTS - OWN_SLOTS)] += 1
        flag = False
        for k in range(LEVELS):
            masks[k, r] = np.uint64(0)
        for s in range(SLOTS):
            c = counts[s]
            if c > LEVELS:
                flag = True
            for k in range(min(c, LEVELS)):
                masks[k, r] |= np.uint64(1) << np.uint64(s)
        over[r] = flag


@njit(cache=True)
def _mates(flat, start, lens, masks, over, candidates, first, step, t_low, threshold, bounds, rows, scores):
    """Fill ``bounds``/``rows``/``scores`` with the mates of rows first, first + step, ... among
    the rows ``candidates`` lists (ascending) (pairs scoring above ``threshold``); returns how many
    there are (more than ``rows`` holds: call again with that much room)."""
    count = 0
    own = 0
    longest = 0
    for i in range(len(lens)):
        longest = max(longest, lens[i])
    need_of = np.zeros(longest + 1, dtype=np.int64)     # per partner length: least LCS, -1 if out
    low0 = masks[0]
    for row in range(first, len(lens), step):
        n = lens[row]
        if n > 0:
            for m in range(longest + 1):
                need = int(t_low * (n + m) / 2) + 1
                need_of[m] = need if m > 0 and need <= min(n, m) else -1
            query = flat[start[row]:start[row] + n]
            if n <= 64:
                keys, bits = _query_bits(query)
            else:
                keys, bits = np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.uint64)
            bound = not over[row]
            q0 = masks[0, row]
            # the query's levels above the first can add at most this much to the bound
            upper = 0
            for k in range(1, LEVELS):
                upper += int(_popcount(masks[k, row]))
            for c in range(len(candidates)):
                i = candidates[c]
                if i >= row:
                    break
                need = need_of[lens[i]]
                if need < 0:
                    continue
                if bound:
                    overlap = int(_popcount(q0 & low0[i]))
                    if overlap + upper < need:
                        continue
                    for k in range(1, LEVELS):
                        overlap += int(_popcount(masks[k, row] & masks[k, i]))
                    if overlap < need:
                        continue
                m = lens[i]
                f = _rouge_f(int(_lcs(query, keys, bits, flat[start[i]:start[i] + m])), n, m)
                if f > threshold:
                    if count < len(rows):
                        rows[count] = i
                        scores[count] = f
                    count += 1
        own += 1
        bounds[own] = count
    return count
