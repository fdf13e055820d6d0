"""``NoveltyIndex``: exact "ROUGE-L F > t against any pool instruction?" without comparing every pair.

The reference rule (Self-Instruct / Alpaca) scores a new instruction against every kept one with
rouge-score's ``_score_lcs`` and rejects it when any F-measure exceeds ``t``. That is quadratic. Here a
pair is compared only when it *could* exceed ``t``; every bound below is a necessary condition, so the
decisions are the reference's, bit for bit.

Why the bounds hold. For token lists of lengths n (new) and m (pool) with LCS length L,
F = 2PR/(P+R) with P = L/m and R = L/n, i.e. F = 2L/(n+m). F > t therefore needs
L >= need(n, m) = floor((t - eps)(n + m)/2) + 1 (eps = 1e-9 absorbs float rounding, so pairs at
exactly F = t are still verified and decided by the float formula). And L <= min(n, m) (length
filter) and L <= |tokens(x) ∩ tokens(y)| as multisets (overlap). Multisets become sets by naming the
k-th occurrence of a token as element (token, k).

Three filters, cheapest first, then the exact check:

1. Prefix filtering (AllPairs / PPJoin) finds the candidates: order all elements by a global order,
   rarest first. If two sets share >= a elements, the first shared element lies within the first
   |x| - a + 1 elements of each, at query position i <= n - need(n, m) and pool position
   j <= m - need(n, m) (0-based), which also enforces the length filter. Each pool item indexes only
   its prefix; a query probes only its own prefix.
2. The positional test above, per posting. Each element's postings are split by the pool item's
   length (16 buckets) and by prefix position (< 3 or not), so a probe at query position i reads
   only the lists whose lengths and positions i can admit.
3. An overlap bound: token counts are folded into 64 slots (the ``_EXACT`` most frequent
   tokens at the last snapshot get a slot each; the rest share hashed slots), and
   sum over slots of min(query count, item count) >= the true multiset overlap >= LCS, so a pair
   whose bound is below need(n, m) cannot exceed t. Each item stores, per level k <= ``_LEVELS``, a
   64-bit mask of the slots where its count is >= k; min(q, c) = sum over k <= q of [c >= k], so the
   bound is a few popcounts of (query mask & item mask) per candidate. On template-heavy data this
   drops ~95% of the positional survivors, which share one mid-frequency word and little else.
   Each posting also carries the item's level-1 mask, so once a query has more than ``_BOUND_MIN``
   survivors it drops most of the rest from the list it is reading with a looser bound of the same
   kind (sum over the item's slots of the query's counts), without touching the item's row.

Survivors get an exact LCS (bit-parallel for queries of up to 64 tokens, dynamic programming
beyond) and the reference's float formula; ``_rouge_kernel`` does all of this in compiled code.

The global order is element frequency, frozen in a snapshot that is retaken (and every prefix
rebuilt) each time the pool has grown 4x: elements unseen at the snapshot rank rarest, ordered by
id, so the order stays one consistent total order between rebuilds.

Memory per pool item: its text, its token ids (8 bytes each), ``_LEVELS`` x 8 bytes of slot masks
and about half its length in postings of 16 bytes (position word, slot mask); per element 32 list
heads of 12 bytes.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

_EPS = 1e-9
_FIRST_REBUILD = 128            # then each time the pool has grown 4x
_EXACT = 32                     # overlap-bound slots of their own for the most frequent tokens
_LEVELS = 4                     # count levels kept per slot (queries with more skip the bound)
_BOUND_MIN = 8                  # fewer positional survivors than this go straight to the LCS
LEN = 0x7FFF                    # the kernel clips lengths to 15 bits (_rouge_kernel.LEN, tested equal)


def _kernel():
    """The compiled half, imported on first use: numba takes a moment to import."""
    from selfinstruct.filters import _rouge_kernel
    return _rouge_kernel


class NoveltyIndex:
    """A growing pool of tokenised instructions answering "is this one too similar to any of them?"."""

    def __init__(self, threshold: float = 0.7):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"ROUGE-L threshold must be between 0 and 1, not {threshold}")
        self.threshold = threshold
        self._t_low = threshold - _EPS
        self._vocab: dict[str, int] = {}
        self._texts: list[str] = []
        self._k = _kernel()
        from numba import typed, types
        self._elem_ids = typed.Dict.empty(key_type=types.int64, value_type=types.int64)
        self._meta = np.zeros(8, dtype=np.int64)
        self._items = _Columns(1024, lens=np.int64, tok_start=np.int64, found=np.int64, found_len=np.int64,
                               found_bound=np.int64)
        # [item, k - 1]: slots where the item has >= k tokens; [item, _LEVELS]: the kernel's stamp
        self._masks = np.zeros((1024, _LEVELS + 1), dtype=np.uint64)
        self._elems = _Columns(1024, elem_key=np.int64, freq_live=np.int64, freq_snap=np.int64)
        self._lists = _Lists(1024 * self._k.LISTS)
        self._tok_flat = np.zeros(1 << 14, dtype=np.int64)
        self._slot_of = np.zeros(0, dtype=np.int64)
        self._arena = np.zeros(1 << 16, dtype=np.int64)
        self._prefix_by_size = np.zeros(1, dtype=np.int64)
        self._next_rebuild = _FIRST_REBUILD

    # ---- public API ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._texts)

    def text(self, i: int) -> str:
        return self._texts[i]

    def add(self, tokens: list[str], text: str) -> None:
        vocab = self._vocab
        ids = np.array([vocab.setdefault(tok, len(vocab)) for tok in tokens], dtype=np.int64)
        n = len(ids)
        self._make_room(n)
        rebuild = len(self._texts) + 1 >= self._next_rebuild
        items, elems, lists, k = self._items, self._elems, self._lists, self._k
        self._arena = k.add(ids, self._prefix_len(n), not rebuild, self._elem_ids, elems.elem_key,
                            elems.freq_live, elems.freq_snap, items.lens, items.tok_start, self._tok_flat,
                            self._masks, self._slot_of, self._arena, self._meta, lists.head, lists.tail,
                            lists.fill)
        self._texts.append(text)
        if rebuild:
            self._rebuild()

    def best(self, tokens: list[str], exclude: Sequence[int] = ()) -> tuple[int, float] | None:
        """The highest-scoring pool item among those that survived pruning (ties: the earliest),
        leaving out the items ``exclude`` names.

        Every pool item whose score exceeds the threshold survives, so above the threshold this is
        the true best match; below it, it is the best of the few that passed the bounds, or None."""
        n = len(tokens)
        if n == 0 or not self._texts:
            return None
        if len(exclude):
            # the kernel takes an item stamped with this query's number as already found: stamping
            # the excluded ones beforehand keeps them out of every path, at no cost to other queries
            self._masks[np.asarray(exclude, dtype=np.int64), -1] = np.uint64(self._meta[self._k.M_QUERY] + 1)
        get = self._vocab.get
        query = np.array([get(tok, -1) for tok in tokens], dtype=np.int64)
        known = query[query >= 0]
        limits = self._limits_for(n)
        items, lists = self._items, self._lists
        item, score = self._k.best(
            query, known, n - len(known), limits.everything, limits.prefix_len, limits.lo, limits.hi,
            limits.width, limits.longest, limits.deepest, limits.needs, _BOUND_MIN, self._elem_ids,
            self._elems.freq_snap, items.lens, items.tok_start, self._tok_flat, self._masks, self._slot_of,
            self._arena, self._meta, lists.head, lists.tail, lists.fill, items.found, items.found_len,
            items.found_bound)
        return None if item < 0 else (int(item), float(score))

    @property
    def vocabulary(self) -> dict[str, int]:
        """Token -> its id in this index (dense, in order of first sight); read-only for callers."""
        return self._vocab

    def best_many(self, ids: np.ndarray, lens: np.ndarray, starts: np.ndarray, wanted: np.ndarray,
                  found: np.ndarray, scores: np.ndarray) -> None:
        """``best`` for many queries at once, the query ``row`` being ``ids[starts[row]:starts[row] +
        lens[row]]`` (token ids of this index, -1 for a token it has never seen), for the rows where
        ``wanted`` is True: the item (or found[row] untouched when none) into ``found``, its score
        into ``scores``. One compiled loop per query length instead of a Python call per query,
        whose fixed cost would otherwise match the kernel's work on a pool of a few hundred
        thousand items."""
        items, elems, lists = self._items, self._elems, self._lists
        for n in np.unique(lens[wanted]).tolist():
            rows = np.flatnonzero(wanted & (lens == n))
            limits = self._limits_for(n)
            self._k.best_rows(rows, ids, starts, n, limits.everything, limits.prefix_len, limits.lo,
                              limits.hi, limits.width, limits.longest, limits.deepest, limits.needs,
                              _BOUND_MIN, self._elem_ids, elems.freq_snap, items.lens, items.tok_start,
                              self._tok_flat, self._masks, self._slot_of, self._arena, self._meta,
                              lists.head, lists.tail, lists.fill, items.found, items.found_len,
                              items.found_bound, found, scores)

    def find(self, tokens: list[str]) -> tuple[int, float] | None:
        """A pool item with F > threshold (the highest-scoring one), else None."""
        hit = self.best(tokens)
        return hit if hit is not None and hit[1] > self.threshold else None

    def work_done(self) -> tuple[int, int, int]:
        """Totals over all queries so far: postings read, positional survivors, LCS verifications."""
        k = self._k
        return tuple(int(self._meta[i]) for i in (k.M_SCANNED, k.M_FOUND, k.M_VERIFIED))

    # ---- bookkeeping ----------------------------------------------------------------------------
    def _need(self, n: int, m: int) -> int:
        """Least LCS for which F could exceed the threshold."""
        return int(self._t_low * (n + m) / 2) + 1

    def _limits_for(self, n: int) -> "_Limits":
        limits = _LIMITS.get((self.threshold, n))
        if limits is None:
            limits = _LIMITS[(self.threshold, n)] = _Limits(n, self._need)
        return limits

    def _prefix_len(self, n: int) -> int:
        """Prefix length of a pool item of ``n`` tokens (as indexed), extending the table."""
        table = self._prefix_by_size
        if n >= len(table):
            sizes = range(len(table), max(n + 1, 2 * len(table)))
            self._prefix_by_size = table = np.concatenate(
                [table, np.array([self._prefix_of(size) for size in sizes], dtype=np.int64)])
        return int(table[n])

    def _prefix_of(self, n: int) -> int:
        lo = _shortest_partner(n, self._need)
        return n - self._need(n, lo) + 1 if lo <= n else 0

    def _make_room(self, n: int) -> None:
        """Grow every array the kernel writes so that one more item of ``n`` tokens fits."""
        meta, k = self._meta, self._k
        items = int(meta[k.M_ITEMS]) + 1
        self._items.reserve(items)
        if len(self._masks) < items:
            self._masks = _grown(self._masks, items)
        elems = int(meta[k.M_ELEMS]) + n
        if self._elems.reserve(elems):
            self._lists.reserve(self._elems.capacity * k.LISTS)
        tokens = int(meta[k.M_TOKENS]) + n
        if len(self._tok_flat) < tokens:
            self._tok_flat = _grown(self._tok_flat, tokens)
        vocab = len(self._vocab)
        if len(self._slot_of) < vocab:
            size = max(vocab, 2 * len(self._slot_of), 1024)
            ids = np.arange(len(self._slot_of), size, dtype=np.int64)
            hashed = _EXACT + ((ids * 0x9E3779B1) >> 7) % (k.SLOTS - _EXACT)
            self._slot_of = np.concatenate([self._slot_of, hashed])
        self._prefix_len(n)

    def _rebuild(self) -> None:
        """Retake the frequency snapshot and re-index every prefix under the new order."""
        self._prefix_len(int(self._items.lens[:len(self._texts)].max(initial=0)))
        items, elems, lists = self._items, self._elems, self._lists
        self._arena = self._k.rebuild(
            _EXACT, self._prefix_by_size, self._elem_ids, elems.elem_key, elems.freq_live, elems.freq_snap,
            items.lens, items.tok_start, self._tok_flat, self._masks, self._slot_of, self._arena, self._meta,
            lists.head, lists.tail, lists.fill)
        self._next_rebuild = 4 * len(self._texts)


class _Lists:
    """Posting-list heads: (first block, last block, postings in the last block) side by side, so
    that a probe reads one cache line; ``head``, ``tail`` and ``fill`` are views of the columns."""

    def __init__(self, capacity: int):
        self._cells = np.full((capacity, 3), -1, dtype=np.int32)
        self._cells[:, 2] = 0
        self._views()

    def _views(self) -> None:
        self.head, self.tail, self.fill = self._cells[:, 0], self._cells[:, 1], self._cells[:, 2]

    def reserve(self, size: int) -> None:
        if size > len(self._cells):
            grown = np.full((max(size, 2 * len(self._cells)), 3), -1, dtype=np.int32)
            grown[:, 2] = 0
            grown[:len(self._cells)] = self._cells
            self._cells = grown
            self._views()


class _Columns:
    """Same-length numpy columns that grow together (by doubling); new cells are 0."""

    def __init__(self, capacity: int, **dtypes):
        self.capacity = capacity
        for name, dtype in dtypes.items():
            setattr(self, name, np.zeros(capacity, dtype=dtype))
        self._names = list(dtypes)

    def reserve(self, size: int) -> bool:
        if size <= self.capacity:
            return False
        old = self.capacity
        while self.capacity < size:
            self.capacity *= 2
        for name in self._names:
            column = getattr(self, name)
            grown = np.zeros(self.capacity, dtype=column.dtype)
            grown[:old] = column
            setattr(self, name, grown)
        return True


def _shortest_partner(n: int, need) -> int:
    """The least partner length m <= n with need(n, m) <= m (n + 1 if none): m - need(n, m) never
    decreases as m grows (need grows by t/2 < 1 per step), so a binary search finds it."""
    lo, hi = 1, n + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if need(n, mid) <= mid:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _grown(array: np.ndarray, size: int) -> np.ndarray:
    grown = np.zeros((max(size, 2 * len(array)),) + array.shape[1:], dtype=array.dtype)
    grown[:len(array)] = array
    return grown


class _Limits:
    """What the filter needs to know about partners of a token list of length ``n``.

    The first shared element of a pair that can exceed the threshold sits at query prefix position
    i <= n - need and partner prefix position j <= m - need (0-based). ``deepest[i * width + m]`` is
    that last j for query position i and partner length m, or -1 where the pair is out (which also
    holds the length filter). Lengths run to hi + 1, the first infeasible one; longer ones are
    clipped onto it. ``needs[m]`` is need(n, m); partner lengths from ``lo`` to ``longest[i]`` are
    the ones position i admits.
    """

    def __init__(self, n: int, need):
        lo = _shortest_partner(n, need)
        hi = n
        while need(n, hi + 1) <= n and hi < LEN:      # at t = 0 every length is feasible
            hi += 1
        self.hi, self.lo = hi, lo
        self.prefix_len = n - need(n, lo) + 1 if lo <= n else 0
        self.width = hi + 2
        self.everything = hi >= LEN    # compare with every item: no tables
        if self.everything:
            self.deepest = self.needs = self.longest = np.zeros(1, dtype=np.int64)
            return
        lengths = np.arange(self.width)
        needs = np.array([need(n, m) for m in lengths], dtype=np.int64)
        feasible = (lengths >= lo) & (lengths <= hi)
        positions = np.arange(self.prefix_len)[:, None]
        table = np.where(feasible & (positions <= n - needs), lengths - needs, -1)
        self.deepest = table.astype(np.int64).ravel()
        self.needs = needs
        self.longest = np.array([int(np.flatnonzero(row >= 0).max()) if (row >= 0).any() else 0
                                 for row in table] or [0], dtype=np.int64)


_LIMITS: dict[tuple[float, int], _Limits] = {}     # shared by indexes with the same threshold
