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

Candidate generation is prefix filtering (AllPairs / PPJoin): order all elements by a global order,
rarest first. If two sets share >= a elements, the first shared element lies within the first
|x| - a + 1 elements of each. So each pool item indexes only its prefix of length m - a_min(m) + 1
(a_min(m) = the least ``need`` over every feasible partner length), and a query probes only its own
prefix. Sharper, per pair: the first shared element sits at query position i <= n - need(n, m) and
pool position j <= m - need(n, m) (0-based), which also enforces the length filter; each posting
carries the item's length and j so that this test is one vectorised lookup. Survivors get an exact
bit-parallel LCS (rapidfuzz ``LCSseq`` on the token-id sequences written as strings) and the
reference's float formula.

The global order is element frequency, frozen in a snapshot that is retaken (and every prefix
rebuilt) each time the pool has grown 4x: elements unseen at the snapshot rank rarest, ordered by
id, so the order stays one consistent total order between rebuilds.

Memory: per pool item its text, its token ids as a string, and ~0.46 x its length postings of
8 bytes; about 1 GB for a million instructions.
"""
from __future__ import annotations

from array import array

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import LCSseq

from selfinstruct.filters._rouge_seq import as_seq as _as_seq
from selfinstruct.filters._rouge_seq import elements as _elements
from selfinstruct.filters._rouge_seq import lcs as _lcs
from selfinstruct.filters._rouge_seq import rouge_l_f

_EPS = 1e-9
_KEY_BITS = 48                  # order key = snapshot frequency << 48 | element key
_FIELD = 0xFFFF                 # posting = pool item << 32 | its length << 16 | prefix position
_FIRST_REBUILD = 128            # then each time the pool has grown 4x
_CAPACITY = 1024                # initial size of the per-item arrays (doubled as needed)
_FIRST_BATCH = 16               # candidates verified before the others are pruned by the best F


class NoveltyIndex:
    """A growing pool of tokenised instructions answering "is this one too similar to any of them?"."""

    def __init__(self, threshold: float = 0.7):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"ROUGE-L threshold must be between 0 and 1, not {threshold}")
        self.threshold = threshold
        self._t_low = threshold - _EPS
        self._vocab: dict[str, int] = {}
        self._texts: list[str] = []
        # Token ids, one code point per token when they fit; an object array so that a query's
        # candidates are gathered in one numpy call.
        self._seqs = np.empty(_CAPACITY, dtype=object)
        self._wide = False                             # some token id is beyond the code-point range
        self._lens: list[int] = []
        self._lens_np = np.zeros(_CAPACITY, dtype=np.int64)
        self._elem_freq: dict[int, int] = {}           # live: pool items holding each element
        self._order_freq: dict[int, int] = {}          # frozen snapshot of _elem_freq
        self._postings: dict[int, array] = {}         # element -> item << 16 | its prefix position
        self._next_rebuild = _FIRST_REBUILD
        self._rebuilds = 0
        self._memo: tuple | None = None                # best()'s work on a query, reused by add()

    # ---- public API ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._texts)

    def text(self, i: int) -> str:
        return self._texts[i]

    def add(self, tokens: list[str], text: str) -> None:
        item = len(self._texts)
        memo = self._memo
        if memo is not None and memo[0] == tokens and memo[1] == self._rebuilds:
            ids, seq, elements, order = memo[2:]          # best() just worked these out
        else:
            ids = [self._vocab.setdefault(tok, len(self._vocab)) for tok in tokens]
            seq, elements, order = _as_seq(ids), _elements(ids), None
        self._memo = None
        self._texts.append(text)
        self._wide = self._wide or not isinstance(seq, str)
        self._lens.append(len(ids))
        if item >= len(self._lens_np):
            self._lens_np = np.concatenate([self._lens_np, np.zeros_like(self._lens_np)])
            self._seqs = np.concatenate([self._seqs, np.empty(len(self._seqs), dtype=object)])
        self._lens_np[item] = len(ids)
        self._seqs[item] = seq
        freq = self._elem_freq
        for e in elements:
            freq[e] = freq.get(e, 0) + 1
        if len(self._texts) >= self._next_rebuild:
            self._rebuild()
        elif elements:
            self._index(item, elements, order)

    def best(self, tokens: list[str]) -> tuple[int, float] | None:
        """The highest-scoring pool item among those that survived pruning (ties: the earliest)."""
        return self._search(tokens, first_over=False)

    def find(self, tokens: list[str]) -> tuple[int, float] | None:
        """A pool item with F > threshold, else None. It stops at the first verified batch holding
        one, so the item is the best of that batch, not necessarily of the whole pool."""
        hit = self._search(tokens, first_over=True)
        return hit if hit is not None and hit[1] > self.threshold else None

    def _search(self, tokens: list[str], first_over: bool) -> tuple[int, float] | None:
        n = len(tokens)
        if n == 0 or not self._texts:
            return None
        ids = [self._vocab.get(tok, -1) for tok in tokens]
        known = [w for w in ids if w >= 0]
        elements = _elements(known)
        order = self._order(elements)
        unknown = n - len(known)       # tokens absent from the pool rank first and match nothing
        if unknown:
            absent = len(self._vocab)  # an id no pool item holds
            query = _as_seq([w if w >= 0 else absent for w in ids])
        else:
            query = _as_seq(ids)
            self._memo = (tokens, self._rebuilds, ids, query, elements, order)
        items, bound = self._candidates(n, order, unknown)
        return self._best_of(query, n, items, bound, first_over)

    # ---- verification ---------------------------------------------------------------------------
    def _best_of(self, query: str | tuple[int, ...], n: int, items: np.ndarray, bound: np.ndarray,
                 first_over: bool) -> tuple[int, float] | None:
        """The best of ``items`` for a query of ``n`` tokens, each verified with an exact LCS.

        ``bound`` caps each item's LCS (its overlap with the query), so items are verified in
        decreasing order of the F that bound allows: a first batch, then only the items whose
        bound can still reach the best F seen (ties included). With ``first_over`` (find) items
        that cannot exceed the threshold are skipped, and a first batch with F > t ends the search.
        """
        lens = self._lens_np[items]
        if first_over:
            feasible = bound >= self._limits_for(n).need[lens]
            items, bound, lens = items[feasible], bound[feasible], lens[feasible]
        if len(items) == 0:
            return None
        # Rank by L / (m + n): F = 2L/(m+n) exactly, and a division is correctly rounded, so equal
        # fractions give equal floats and an item whose bound ties the best so far is verified.
        cap = bound / (lens + n)
        if len(items) <= _FIRST_BATCH:
            return self._top(query, n, items, lens)[:2]
        rank = np.argsort(-cap, kind="stable")
        first, rest = rank[:_FIRST_BATCH], rank[_FIRST_BATCH:]
        item, score, top = self._top(query, n, items[first], lens[first])
        if first_over and score > self.threshold:
            return item, score
        rest = rest[cap[rest] >= top]
        if len(rest) == 0:
            return item, score
        other, other_score, _ = self._top(query, n, items[rest], lens[rest])
        # A larger fraction always has the larger float F; equal F: the earlier item.
        score, neg_item = max((score, -item), (other_score, -other))
        return -neg_item, score

    def _top(self, query: str | tuple[int, ...], n: int, items: np.ndarray,
             lens: np.ndarray) -> tuple[int, float, float]:
        """The best item, its F, and its L / (m + n); among equal fractions the reference's float
        expression decides, then the earliest item."""
        lcs = self._lcs_many(query, self._seqs[items])
        key = lcs / (lens + n)
        top = key.max()
        best = np.flatnonzero(key == top).tolist() if len(key) > 1 else [0]
        score, neg_item = max((rouge_l_f(int(lcs[k]), n, int(lens[k])), -int(items[k])) for k in best)
        return -neg_item, score, top

    # ---- prefix filtering -----------------------------------------------------------------------
    def _need(self, n: int, m: int) -> int:
        """Least LCS for which F could exceed the threshold."""
        return int(self._t_low * (n + m) / 2) + 1

    def _limits_for(self, n: int) -> "_Limits":
        limits = _LIMITS.get((self.threshold, n))
        if limits is None:
            limits = _LIMITS[(self.threshold, n)] = _Limits(n, self._need)
        return limits

    def _order(self, elements: list[int]) -> list[int]:
        """Element keys sorted rarest first by the frozen order (returns order keys)."""
        get = self._order_freq.get
        keys = [(get(e, 0) << _KEY_BITS) | e for e in elements]
        keys.sort()
        return keys

    def _index(self, item: int, elements: list[int], order: list[int] | None = None) -> None:
        prefix_len = self._limits_for(len(elements)).prefix_len
        mask = (1 << _KEY_BITS) - 1
        postings = self._postings
        for pos, key in enumerate((order or self._order(elements))[:prefix_len]):
            plist = postings.get(key & mask)
            if plist is None:
                plist = postings[key & mask] = array("q")
            # A smaller (clipped) position only loosens the filter; lengths past _FIELD are never
            # clipped into feasibility (see _candidates).
            plist.append((item << 32) | (min(len(elements), _FIELD) << 16) | min(pos, _FIELD))

    def _rebuild(self) -> None:
        """Retake the frequency snapshot and re-index every prefix under the new order."""
        self._order_freq = dict(self._elem_freq)
        self._postings = {}
        for item, seq in enumerate(self._seqs[:len(self._texts)].tolist()):
            if seq:
                self._index(item, _elements([ord(c) for c in seq] if isinstance(seq, str) else list(seq)))
        self._next_rebuild = 4 * len(self._texts)
        self._rebuilds += 1

    def _candidates(self, n: int, order: list[int], unknown: int) -> tuple[np.ndarray, np.ndarray]:
        """Ascending pool items that share a common element at a feasible (i, j) with a query of
        ``n`` tokens (``unknown`` of them new to the pool, ``order`` its other keys), and a bound
        on each one's overlap with the query."""
        limits = self._limits_for(n)
        mask = (1 << _KEY_BITS) - 1
        get = self._postings.get
        probes = []                    # (query prefix position, postings of that element)
        for i, key in enumerate(order[:max(0, limits.prefix_len - unknown)], start=unknown):
            plist = get(key & mask)
            if plist is not None:
                probes.append((i, plist))
        if not probes:
            return _NONE, _NONE
        if limits.hi >= _FIELD:        # a query of tens of thousands of tokens: compare with all
            everyone = np.arange(len(self._texts))
            return everyone, self._lens_np[everyone]
        postings = np.concatenate([np.frombuffer(p, dtype=np.int64) for _, p in probes])
        rows = np.repeat(np.array([i for i, _ in probes]), [len(p) for _, p in probes])
        m = np.minimum((postings >> 16) & _FIELD, limits.hi + 1)
        feasible = limits.feasible[m]  # length filter, an item-level property
        if not feasible.all():
            postings, rows, m = postings[feasible], rows[feasible], m[feasible]
        if len(postings) == 0:
            return _NONE, _NONE
        j = postings & _FIELD
        # Prefix filter lemma: the first shared element sits at i <= n - need and j <= m - need.
        misses = (j > limits.deepest[rows * limits.width + m]).astype(np.int64)
        # PPJoin's overlap bound: matches are found in increasing (i, j), every shared element up
        # to the last match (i, j) is among them, and at most min(n-1-i, m-1-j) can follow; that
        # slack shrinks at each match, so its minimum belongs to the last one.
        slack = np.maximum(np.minimum(n - 1 - rows, m - 1 - j), 0)
        keys = np.sort((postings >> 32 << 17) | (slack << 1) | misses)
        item = keys >> 17
        starts = np.flatnonzero(np.concatenate(([True], item[1:] != item[:-1])))
        count = np.diff(np.append(starts, len(keys)))
        bound = count + ((keys[starts] >> 1) & _FIELD)
        hits = np.add.reduceat(1 - (keys & 1), starts) > 0
        return item[starts][hits], bound[hits]

    def _lcs_many(self, query: str | tuple[int, ...], choices: np.ndarray) -> np.ndarray:
        if isinstance(query, str) and len(choices) > 20 and not self._wide:
            return process.cdist([query], choices, scorer=LCSseq.similarity, dtype=np.int64)[0]
        return np.array([_lcs(query, s) for s in choices], dtype=np.int64)


class _Limits:
    """What the filter needs to know about partners of a token list of length ``n``.

    The first shared element of a pair that can exceed the threshold sits at query prefix position
    i <= n - need and partner prefix position j <= m - need (0-based). ``deepest[i * width + m]`` is
    that last j for query position i and partner length m, or -1 where the pair is out (which also
    holds the length filter). Lengths run to hi + 1, the first infeasible one; longer ones are
    clipped onto it.
    """

    def __init__(self, n: int, need):
        lo = next((m for m in range(1, n + 1) if need(n, m) <= m), n + 1)
        hi = n
        while need(n, hi + 1) <= n:
            hi += 1
        self.hi = hi
        self.prefix_len = n - need(n, lo) + 1 if lo <= n else 0
        self.width = hi + 2
        # need[m]: least LCS for F > t with a partner of length m; feasible[m]: lo <= m <= hi.
        self.need = np.array([need(n, m) for m in range(self.width)], dtype=np.int64)
        self.feasible = np.array([lo <= m <= hi for m in range(self.width)])
        self.deepest = np.array([m - need(n, m) if lo <= m <= hi and i <= n - need(n, m) else -1
                                 for i in range(self.prefix_len) for m in range(self.width)], dtype=np.int64)


_NONE = np.zeros(0, dtype=np.int64)
_LIMITS: dict[tuple[float, int], _Limits] = {}     # shared by indexes with the same threshold


