"""Keeping the pipe full: which units run, and when.

The scheduler keeps ``teacher.concurrency`` requests *wanted* at all times: units waiting for an
answer (``asking``) plus units started but not yet running (``starting``). A unit that is parsing
and filtering an answer holds no slot, so the moment an answer arrives a new unit takes its slot,
instead of waiting for the whole unit (and, with many answers at once, for all of them).

Units start in order, and unit ``n``'s first prompt samples the pool as units ``0 .. n-lag`` left
it (``lag`` = 2 x concurrency): so a unit may start only once every unit up to ``n-lag`` has ended.
Together with decisions taken in unit order (``ordering``), that makes every prompt a function of
the settings and the answers, never of arrival times; the lag is wide enough that a slow answer
seldom holds a new unit back (one unit in 2 x concurrency may be slow before anything waits).
"""
from __future__ import annotations

import asyncio
import random
import time
from typing import Callable

from selfinstruct.generate.context import current_unit
from selfinstruct.generate.ordering import Lanes
from selfinstruct.teachers.base import BudgetExhausted, Request


class Scheduler:
    def __init__(self, recipe, concurrency: int, lanes: Lanes, journal, random_seed: int,
                 first_unit: int):
        self.recipe, self.lanes, self.journal = recipe, lanes, journal
        self.concurrency = concurrency
        self.lag = 2 * concurrency
        self.random_seed = random_seed
        self.next_unit = first_unit
        self.ctx = None                    # the Context, set once both exist
        self.asking = self.starting = 0
        self.stop_reason: str | None = None
        # set by drain(): no unit starts any more, the started ones finish, then the run stops so
        self.draining: str | None = None
        self.exhausted = False             # the recipe said it has no unit to start
        self.error: BaseException | None = None
        self._tasks: set[asyncio.Task] = set()
        self._wake: asyncio.Event | None = None
        self._answers: asyncio.Queue | None = None       # answers waiting for their turn (pace)

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        if self._wake is not None:
            self._wake.set()

    def drain(self, reason: str) -> None:
        """Start no more units; the run stops with ``reason`` once the started ones have ended
        (``--estimate``'s sample: whole units, so that their acceptance counts)."""
        if self.draining is None:
            self.draining = reason

    def refill(self) -> None:
        """Start units until enough requests are wanted (and the lag allows)."""
        while (self.asking + self.starting < self.concurrency and self.stop_reason is None
               and self.draining is None and not self.exhausted
               and self.error is None and self.next_unit < self.lanes.ended_through + self.lag):
            n = self.next_unit
            uid = f"u{n}"
            rng = random.Random(f"{self.random_seed}:{uid}")
            first = self.recipe.request_for_unit(n, rng, self.ctx.pool_for(n, self.lag))
            if first is None:          # the recipe's sources are used up: no unit n, ever
                self.exhausted = True
                return
            self.next_unit += 1
            self.journal.write({"ev": "start", "uid": uid, "req": first.to_dict()})
            self._spawn(uid, n, first, fresh=True)

    def _spawn(self, uid: str, n: int, first: Request, fresh: bool) -> None:
        if fresh:
            self.starting += 1
        task = asyncio.create_task(self._unit(uid, n, first, fresh))
        self._tasks.add(task)
        task.add_done_callback(self._unit_done)

    async def _unit(self, uid: str, n: int, first: Request, fresh: bool) -> None:
        current_unit.set(n)
        if fresh:
            self.starting -= 1         # its first ask() comes in this same step: the slot stays counted
        await self.recipe.run(self.ctx, uid, first)
        await self.ctx.settle(n)
        self.ctx.end_unit(n)
        self.journal.write({"ev": "end", "uid": uid})
        self.lanes.end(n)

    def _unit_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, BudgetExhausted):
            self.stop(f"max_cost: {exc}" if str(exc) else "max_cost")
        elif exc is not None and self.error is None:
            self.error = exc
        self.refill()                  # a unit answered from the journal asked for nothing
        if exc is not None or self.stop_reason is not None or not self._tasks:
            self._wake.set()

    # -- pacing ------------------------------------------------------------------------------------

    async def pace(self) -> None:
        """Wait for this answer's turn to be parsed and filtered: one answer per pass of the event
        loop, after everything else that pass had ready (new units sending, the HTTP writes,
        answers being read). When many answers land at once (the first wave, a pause), working
        through all of them before sending anything would send the next wave in one burst, and
        bursts come back as bursts: throughput would fall to waves."""
        fut = asyncio.get_running_loop().create_future()
        self._answers.put_nowait(fut)
        await fut

    async def _pacer(self) -> None:
        while True:
            fut = await self._answers.get()
            await asyncio.sleep(0)             # one pass of the loop per answer
            if not fut.done():                 # a unit cancelled while waiting has no turn
                fut.set_result(None)

    # -- the loop ----------------------------------------------------------------------------------

    async def run(self, open_units: dict[str, Request], every_s: float, tick: Callable[[], None]) -> None:
        """Run units until the run stops, fails or runs out of work; ``tick`` every ``every_s``."""
        self._wake, self._answers = asyncio.Event(), asyncio.Queue()
        pacer = asyncio.create_task(self._pacer())
        for uid, req in sorted(open_units.items(), key=lambda kv: int(kv[0][1:])):
            self._spawn(uid, int(uid[1:]), req, fresh=False)     # finish what a crash interrupted
        last = time.monotonic()
        try:
            self.refill()
            while self.stop_reason is None and self.error is None and self._tasks:
                try:
                    await asyncio.wait_for(self._wake.wait(), max(last + every_s - time.monotonic(), 0.0))
                except asyncio.TimeoutError:
                    tick()
                    last = time.monotonic()
                self._wake.clear()
            if self.error is not None:
                raise self.error
            if self.draining is not None and self.stop_reason is None:
                self.stop_reason = self.draining
            if self.exhausted and self.stop_reason is None:
                self.stop_reason = f"exhausted: {self.recipe.exhausted_reason()}"
        finally:
            tasks = list(self._tasks) + [pacer]
            for t in tasks:
                t.cancel()
            # collect every exception so none is reported as "never retrieved"; the first one that
            # stopped the loop is already propagating
            await asyncio.gather(*tasks, return_exceptions=True)
