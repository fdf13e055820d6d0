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
        self._seen = np.zeros(_CAPACITY, dtype=bool)    # scratch for _candidates, all False
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
            self._seen = np.zeros(len(self._lens_np), dtype=bool)
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
        return self._best_of(query, n, self._candidates(n, order, unknown))

    def find(self, tokens: list[str]) -> tuple[int, float] | None:
        """A pool item with F > threshold (the highest-scoring one), else None."""
        hit = self.best(tokens)
        return hit if hit is not None and hit[1] > self.threshold else None

    # ---- verification ---------------------------------------------------------------------------
    def _best_of(self, query: str | tuple[int, ...], n: int, items: np.ndarray) -> tuple[int, float] | None:
        """The best of ``items`` for a query of ``n`` tokens, each verified with an exact LCS."""
        if len(items) == 0:
            return None
        lcs = self._lcs_many(query, self._seqs[items])
        # Rank by L / (m + n): F = 2L/(m+n) exactly, and distinct such fractions (denominators
        # < 2**20) are far more than an ulp apart, so only equal fractions can tie; among those
        # take the reference's float expression, then the earliest item (items are ascending).
        key = lcs / (self._lens_np[items] + n)
        top = np.flatnonzero(key == key.max()).tolist() if len(key) > 1 else [0]
        scored = [(rouge_l_f(int(lcs[k]), n, self._lens[int(items[k])]), -int(items[k])) for k in top]
        score, neg_item = max(scored)
        return -neg_item, score

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
        size = len(elements)
        prefix_len = self._limits_for(size).prefix_len
        mask = (1 << _KEY_BITS) - 1
        postings = self._postings
        # A smaller (clipped) position only loosens the filter; lengths past _FIELD are never
        # clipped into feasibility (see _candidates).
        head = (item << 32) | (min(size, _FIELD) << 16)
        for pos, key in enumerate((order or self._order(elements))[:prefix_len]):
            plist = postings.get(key & mask)
            if plist is None:
                plist = postings[key & mask] = array("q")
            plist.append(head | (pos if pos < _FIELD else _FIELD))

    def _rebuild(self) -> None:
        """Retake the frequency snapshot and re-index every prefix under the new order."""
        self._order_freq = dict(self._elem_freq)
        self._postings = {}
        for item, seq in enumerate(self._seqs[:len(self._texts)].tolist()):
            if seq:
                self._index(item, _elements(list(map(ord, seq)) if isinstance(seq, str) else list(seq)))
        self._next_rebuild = 4 * len(self._texts)
        self._rebuilds += 1

    def _candidates(self, n: int, order: list[int], unknown: int) -> np.ndarray:
        """Ascending pool items that share a first common element at a feasible (i, j) with a
        query of ``n`` tokens, ``unknown`` of them new to the pool and ``order`` its other keys."""
        limits = self._limits_for(n)
        mask = (1 << _KEY_BITS) - 1
        get = self._postings.get
        probes = []                    # (query prefix position, postings of that element)
        for i, key in enumerate(order[:max(0, limits.prefix_len - unknown)], start=unknown):
            plist = get(key & mask)
            if plist is not None:
                probes.append((i, plist))
        if not probes:
            return _NONE
        if limits.hi >= _FIELD:        # a query of tens of thousands of tokens: compare with all
            return np.arange(len(self._texts))
        postings = np.concatenate([np.frombuffer(p, dtype=np.int64) for _, p in probes])
        row = np.repeat(np.array([i * limits.width for i, _ in probes]), [len(p) for _, p in probes])
        m = np.minimum((postings >> 16) & _FIELD, limits.hi + 1)
        # Prefix filter lemma: the first shared element sits at i <= n - need and j <= m - need.
        keep = (postings & _FIELD) <= limits.deepest[row + m]
        # Deduplicate through a per-item flag array: cheaper than np.unique's hash or sort here.
        seen = self._seen
        seen[postings[keep] >> 32] = True
        items = np.flatnonzero(seen)
        seen[items] = False
        return items

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
        while need(n, hi + 1) <= n and hi < _FIELD:    # at t = 0 every length is feasible
            hi += 1
        self.hi = hi
        self.prefix_len = n - need(n, lo) + 1 if lo <= n else 0
        self.width = hi + 2
        if hi >= _FIELD:               # _candidates compares with every item: no table needed
            self.deepest = np.zeros(0, dtype=np.int64)
            return
        lengths = np.arange(self.width)
        needs = np.array([need(n, m) for m in lengths], dtype=np.int64)
        feasible = (lengths >= lo) & (lengths <= hi)
        positions = np.arange(self.prefix_len)[:, None]
        self.deepest = np.where(feasible & (positions <= n - needs), lengths - needs, -1).astype(np.int64).ravel()


_NONE = np.zeros(0, dtype=np.int64)
_LIMITS: dict[tuple[float, int], _Limits] = {}     # shared by indexes with the same threshold


