"""Exact-duplicate filter: the same instruction and input after normalisation.

The key is ``normalise(instruction) + "\\x1f" + normalise(input)`` (NFKC folds full-width forms, then
case, whitespace and punctuation go), so "Give three tips." and "give three tips" collide, and so do
a full-width and a half-width copy of a Chinese instruction. Only a 64-bit hash of the key and an
index into the list of kept origins are stored: a million kept records cost tens of MB, not the text.
At 64 bits a false collision among a million keys has odds of about 3 in 100 million.
"""
from __future__ import annotations

import hashlib

from selfinstruct.filters.base import Filter, Rejection
from selfinstruct.record import Record
from selfinstruct.text import normalise


def dedup_key(record: Record) -> int:
    """64-bit hash of the normalised instruction and input."""
    key = normalise(record.instruction) + "\x1f" + normalise(record.input)
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little")


class ExactDedup(Filter):
    name = "exact"
    stage = "exact"
    fields = ("instruction", "input")

    def __init__(self) -> None:
        self._index: dict[int, int] = {}   # key hash -> position in _origins
        self._origins: list[str] = []      # origin of each kept record, in keeping order
        # check() and add() run on the same record back to back; hash it once. The texts are kept
        # (by reference) so that a record edited in between is hashed again.
        self._last: tuple[str | None, str | None, int] = (None, None, 0)

    def __len__(self) -> int:
        return len(self._origins)

    def _key(self, record: Record) -> int:
        instruction, input_, key = self._last
        if instruction is record.instruction and input_ is record.input:
            return key
        key = dedup_key(record)
        self._last = (record.instruction, record.input, key)
        return key

    def check(self, record: Record) -> Rejection | None:
        kept_at = self._index.get(self._key(record))
        if kept_at is None:
            return None
        origin = self._origins[kept_at] or f"kept record #{kept_at + 1}"
        return self.reject("exact_duplicate", f"duplicate of {origin}")

    def add(self, record: Record) -> None:
        key = self._key(record)
        if key not in self._index:        # the first kept copy stays the one duplicates point at
            self._index[key] = len(self._origins)
            self._origins.append(record.where)
