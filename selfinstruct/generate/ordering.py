"""Decisions in unit order, so that a run's prompts depend on its settings and on the teacher's
answers, not on when the answers arrived.

Units are numbered in the order they start. A recipe makes its decisions (candidates offered to the
filters, instructions added to the pool) inside ``turn(lane, n)`` blocks; unit ``n`` enters a lane
only after every earlier unit has passed it or ended. The pool, the filters' memory and the count
of accepted examples then grow in the same order in every run with the same answers, whatever the
network did. A unit that ends has passed every lane, including those it never entered.
"""
from __future__ import annotations

import asyncio


class Lanes:
    def __init__(self, ended: set[int] = frozenset()):
        self._oldest: dict[int, asyncio.Future] = {}   # units waiting to be the oldest unfinished
        self._ended = set(ended)
        self.ended_through = 0            # units 0 .. ended_through-1 have all ended
        self._advance_ended()
        self._next: dict[str, int] = {}               # lane -> the unit whose turn it is
        self._passed: dict[str, set[int]] = {}
        self._waiting: dict[tuple[str, int], asyncio.Future] = {}

    async def enter(self, lane: str, n: int) -> None:
        """Wait until it is unit ``n``'s turn in ``lane``."""
        if lane not in self._next:
            self._next[lane], self._passed[lane] = self.ended_through, set()
            self._advance(lane)
        if self._next[lane] == n:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiting[(lane, n)] = fut
        try:
            await fut
        finally:
            self._waiting.pop((lane, n), None)

    def leave(self, lane: str, n: int) -> None:
        self._passed[lane].add(n)
        self._advance(lane)

    def end(self, n: int) -> None:
        """Unit ``n`` is finished: it has passed every lane."""
        self._ended.add(n)
        self._advance_ended()
        for lane in self._next:
            self._advance(lane)

    async def oldest(self, n: int) -> None:
        """Wait until unit ``n`` is the oldest unit that has not ended (or ``release_all``)."""
        if n <= self.ended_through:
            return
        fut = asyncio.get_running_loop().create_future()
        self._oldest[n] = fut
        try:
            await fut
        finally:
            self._oldest.pop(n, None)

    def release_all(self) -> None:
        for fut in self._oldest.values():
            if not fut.done():
                fut.set_result(None)

    def _advance_ended(self) -> None:
        while self.ended_through in self._ended:
            self._ended.discard(self.ended_through)
            self.ended_through += 1
        fut = self._oldest.get(self.ended_through)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _advance(self, lane: str) -> None:
        passed = self._passed[lane]
        n = self._next[lane]
        while n < self.ended_through or n in passed or n in self._ended:
            passed.discard(n)
            n += 1
        self._next[lane] = n
        fut = self._waiting.get((lane, n))
        if fut is not None and not fut.done():
            fut.set_result(None)


class Turn:
    """``async with Turn(lanes, lane, n):`` — the block runs in unit order."""

    def __init__(self, lanes: Lanes, lane: str, n: int):
        self.lanes, self.lane, self.n = lanes, lane, n

    async def __aenter__(self) -> None:
        await self.lanes.enter(self.lane, self.n)

    async def __aexit__(self, *exc) -> None:
        self.lanes.leave(self.lane, self.n)
