"""A grow-only multimap from uint64 LSH band keys to kept-record numbers, held in sorted numpy
arrays (about 12 bytes per entry, where a dict of Python ints costs about 100) and queried for a
whole batch of keys at once.

Inserts wait in a pending list. A lookup compares a few keys (one record's) with the pending ones
directly; a big lookup (a batch's) or a long pending list first sorts them into a small "recent"
level, which is merged into the main level once it reaches a quarter of its size (numpy's stable
sort merges the two sorted runs in linear time), so that inserting N keys costs O(N log N) overall.
"""
from __future__ import annotations

import numpy as np

_EMPTY_KEYS = np.zeros(0, dtype=np.uint64)
_EMPTY_VALS = np.zeros(0, dtype=np.int64)
_SCAN_LIMIT = 1 << 20      # (looked-up keys x pending keys) compared directly rather than sorted
_PENDING_LIMIT = 4096      # pending keys sorted in at the next lookup anyway


class BandTable:
    def __init__(self) -> None:
        self._levels = [(_EMPTY_KEYS, _EMPTY_VALS), (_EMPTY_KEYS, _EMPTY_VALS)]   # main, recent
        self._pending_keys: list[np.ndarray] = []
        self._pending_vals: list[int] = []

    def __len__(self) -> int:
        return sum(len(k) for k, _ in self._levels) + sum(len(k) for k in self._pending_keys)

    def insert(self, keys: np.ndarray, value: int) -> None:
        self._pending_keys.append(keys)
        self._pending_vals.append(value)

    def _pending(self) -> tuple[np.ndarray, np.ndarray]:
        keys = np.concatenate(self._pending_keys)
        vals = np.repeat(np.array(self._pending_vals, dtype=np.int64), [len(k) for k in self._pending_keys])
        return keys, vals

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions in ``keys``, values) of every stored entry whose key equals ``keys[position]``."""
        pending = sum(len(k) for k in self._pending_keys)
        found_at, found = [], []
        if pending > _PENDING_LIMIT or pending * len(keys) > _SCAN_LIMIT:
            self._flush()
        elif pending:
            pend_keys, pend_vals = self._pending()
            at, where = np.nonzero(keys[:, None] == pend_keys[None, :])
            found_at.append(at)
            found.append(pend_vals[where])
        # Sorted needles keep the binary searches cache-friendly.
        by_key = np.argsort(keys)
        needles = keys[by_key]
        for stored_keys, stored_vals in self._levels:
            left = np.searchsorted(stored_keys, needles, side="left")
            right = np.searchsorted(stored_keys, needles, side="right")
            hits = right - left
            at = np.repeat(by_key, hits)
            # Entry k of the hits for key position p is stored index left[p] + k.
            offsets = np.arange(hits.sum()) - np.repeat(np.cumsum(hits) - hits, hits)
            found_at.append(at)
            found.append(stored_vals[np.repeat(left, hits) + offsets])
        return np.concatenate(found_at), np.concatenate(found)

    def _flush(self) -> None:
        if not self._pending_keys:
            return
        new = self._pending()
        self._pending_keys, self._pending_vals = [], []
        main, recent = self._levels
        recent = _merge(recent, _merge(new, (_EMPTY_KEYS, _EMPTY_VALS)))
        if len(recent[0]) * 4 > len(main[0]):
            main, recent = _merge(main, recent), (_EMPTY_KEYS, _EMPTY_VALS)
        self._levels = [main, recent]


def _merge(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    keys = np.concatenate([a[0], b[0]])
    order = np.argsort(keys, kind="stable")
    return keys[order], np.concatenate([a[1], b[1]])[order]
