"""What a running unit of work is offered (the recipes' ``UnitContext``): the teacher's answers,
replayed from the journal or the response cache when they exist, and the decisions on candidates,
each journaled before it counts.

A candidate that passes the synchronous filters may still have work ahead of it: turns to grow
(``--turns K``, ``conversation``) and the judge. It then waits (``_awaiting``) and counts for
novelty meanwhile, and ``settle`` — which runs outside any turn, so that many units' candidates are
continued and judged at once — grows the conversations, checks each new turn, judges the
survivors, and decides in unit order (lane "judged"). No unit waits for another's continuation,
and the decisions are the same in every run with the same answers."""
from __future__ import annotations

import contextvars
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence

from selfinstruct import journal as jr
from selfinstruct.cache import complete_cached
from selfinstruct.errors import TeacherError
from selfinstruct.filters import FilterChain
from selfinstruct.filters.base import gather_or_cancel
from selfinstruct.generate.conversation import Continuation, Stopped
from selfinstruct.generate.ordering import Lanes, Turn
from selfinstruct.generate import settings
from selfinstruct.generate.settings import MAX_CONSECUTIVE_FAILURES, Settings
from selfinstruct.record import Record
from selfinstruct.summary import Counts, Tally
from selfinstruct.teachers.base import Request, Response, Teacher

# The number of the unit whose code is running (set by the scheduler for each unit's task).
current_unit: contextvars.ContextVar[int] = contextvars.ContextVar("current_unit")


class PoolView(Sequence):
    """The first ``end`` records of the pool, without copying them."""

    def __init__(self, pool: list[Record], end: int):
        self._pool, self._end = pool, end

    def __len__(self) -> int:
        return self._end

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self._pool[: self._end][i]
        if not -self._end <= i < self._end:
            raise IndexError(i)
        return self._pool[i % self._end]


class Context:
    """The ``UnitContext`` of a run (see ``selfinstruct.recipes.base``)."""

    def __init__(self, s: Settings, teacher: Teacher, chain: FilterChain, journal: jr.Journal,
                 state: jr.JournalState, lanes: Lanes, scheduler, outputs, two_phase: bool, cache=None):
        self.s, self.teacher, self.journal, self.state, self.cache = s, teacher, journal, state, cache
        self.lanes, self.scheduler, self.outputs = lanes, scheduler, outputs
        self.chain = chain
        self.tally: Tally = chain.tally
        # the instruction-only filters (checked before instances are paid for) and the rest
        self.instruction_filters, self.example_filters = chain.split({"instruction"})
        self.two_phase = two_phase
        self.counts = Counts()
        # The pool of generated tasks prompts sample from, with the number of the unit each came from.
        self.pool: list[Record] = list(state.pooled if two_phase else state.accepted)
        self.pool_units: list[int] = [unit_number(r.request_id or "") for r in self.pool]
        # With a cache, a rerun replays: until its first miss, a miss waits to be needed (below).
        self.replaying = cache is not None
        self.seed_nearest = None      # a SeedNearest over the seed instructions (set by the run)
        # unit -> request stage -> seconds its paid requests took (each record's meta["seconds"])
        self._seconds: dict[int, Counter] = {}
        self.units_without_accept = 0      # units ended since the last accepted record
        self.asked = 0                     # requests sent to the cache or the teacher (not replayed)
        # unit -> its candidates that passed the synchronous filters and await their turns, the judge
        self._awaiting: dict[int, list[tuple[Record, str]]] = {}
        # how candidates grow into conversations (None: single-turn data)
        self.continuation: Continuation | None = None
        if s.turns > 1:
            self.continuation = Continuation.for_recipe(scheduler.recipe, teacher, s.lang, s.turns)

    # -- the pool a unit's first prompt sees ----------------------------------------------------

    def pool_for(self, n: int, lag: int) -> PoolView:
        """The pool as units ``0 .. n-lag`` left it: the same in every run with the same answers."""
        return PoolView(self.pool, bisect_right(self.pool_units, n - lag))

    # -- asking ------------------------------------------------------------------------------------

    async def ask(self, request: Request, teacher: Teacher | None = None) -> Response:
        """The answer to ``request`` from ``teacher`` (the run's by default; the judge may have its
        own): replayed from the journal, else from the cache, else paid for."""
        key = request.key()
        replay = self.state.responses.get(key)
        if replay is not None:
            self.counts.count(request, "replayed")
            return Response.from_dict({**replay.to_dict(), "cached": True})
        self.scheduler.asking += 1
        self.asked += 1
        if self.s.sample_requests is not None and self.asked >= self.s.sample_requests:
            self.scheduler.drain(f"sampled: {self.s.sample_requests} requests")
        t0 = time.perf_counter()
        try:
            resp = await complete_cached(teacher or self.teacher, self.cache, request, self._before_miss)
        finally:
            self.scheduler.asking -= 1
        if not resp.cached and request.stage != "judge":
            spent = self._seconds.setdefault(current_unit.get(-1), Counter())
            spent[request.stage] += time.perf_counter() - t0
        self.counts.answered(request, resp)
        if resp.error:
            limit = max(MAX_CONSECUTIVE_FAILURES, 2 * self.teacher.concurrency)
            # a teacher with several endpoints retries elsewhere: failures stop the run only
            # while none of its endpoints is healthy
            if self.counts.failures_in_row >= limit and (teacher or self.teacher).all_down():
                raise TeacherError(f"the teacher failed {self.counts.failures_in_row} requests in a row "
                                   f"(last: {resp.error}); check --base-url and that the server is up, "
                                   "then rerun to resume")
        else:
            self.journal.write({"ev": "resp", "key": key, "stage": request.stage, "resp": resp.to_dict()})
        # A request slot just came free: the next unit's request goes out now, before this answer is
        # parsed and filtered, so the pipe stays full.
        self.scheduler.refill()
        if not resp.cached:
            await self.scheduler.pace()
        return resp

    async def _before_miss(self) -> None:
        """While replaying: an identical earlier run answered every unit up to the one that
        completed it; a unit past that one finds no answer and must not pay for one, so it waits
        until it is the oldest unfinished unit (surely needed), unless the run completes first.
        The first miss that is sent ends the replay."""
        if not self.replaying:
            return
        await self.lanes.oldest(current_unit.get())
        if self.replaying:
            self.replaying = False
            self.lanes.release_all()

    # -- deciding ----------------------------------------------------------------------------------

    def turn(self, lane: str) -> Turn:
        """``async with ctx.turn("accept"):`` decisions inside run in unit order."""
        return Turn(self.lanes, lane, current_unit.get())

    async def offer(self, record: Record, key: str) -> bool:
        """Decide on a whole candidate. With turns to grow or a judge, a candidate that passes the
        synchronous filters awaits them (``settle``) and counts for novelty meanwhile; True then
        means "not rejected yet"."""
        if key in self.state.decided:
            return self.state.decided[key]
        self._stamp(record, key)
        if self.outputs.accepted >= self.s.num:
            self.reject(record, key, "over_quota", f"{self.s.num} examples were already accepted")
            return False
        chain = self.example_filters if self.two_phase else self.chain
        verdict = chain.check_head(record)
        if verdict is not None:
            self._rejected(record, key, verdict.reason, verdict.detail)
            return False
        if chain.tail or self.continuation is not None:
            self._awaiting.setdefault(current_unit.get(), []).append((record, key))
            return True
        self._accept(record, key)
        return True

    async def settle(self, n: int) -> None:
        """Grow unit ``n``'s candidates into conversations, then judge those that passed every turn
        (each step for all of them at once, outside any turn, so that the requests of many units
        are in flight together), then decide on them in unit order: a candidate joins the data and
        the pool once judged."""
        waiting = self._awaiting.pop(n, None)
        if not waiting:
            return
        stopped: list[Stopped | None] = [None] * len(waiting)
        if self.continuation is not None:
            # every turn is judged by the whole chain's per-turn rules: in a two-phase recipe the
            # instruction-only ones too (they judged only the first user turn so far)
            stopped = await gather_or_cancel([self.continuation.grow(record, self.ask, self.chain)
                                              for record, _ in waiting])
        chain = self.example_filters if self.two_phase else self.chain
        whole = [record for (record, _), why in zip(waiting, stopped) if why is None]
        judged = iter(await gather_or_cancel([chain.judge_tail(record) for record in whole]) if chain.tail
                      else [None] * len(whole))
        async with Turn(self.lanes, "judged", n):
            for (record, key), why in zip(waiting, stopped):
                self._refresh_seconds(record, key)
                if why is not None:
                    self.tally.reject(why.reason, why.stage)
                    self._rejected(record, key, why.reason, why.detail, passed_head=True)
                    continue
                verdict = chain.settle_tail(record, next(judged))
                if verdict is not None:
                    self._rejected(record, key, verdict.reason, verdict.detail, passed_head=True)
                elif self.outputs.accepted >= self.s.num:
                    self.reject(record, key, "over_quota", f"{self.s.num} examples were already accepted")
                else:
                    self._accept(record, key)

    def _accept(self, record: Record, key: str) -> None:
        if self.seed_nearest is not None:       # the report's Figure 3: vs the seeds, exact
            record.nearest_seed, record.nearest_seed_rouge = self.seed_nearest.nearest(record.instruction)
        self.state.decided[key] = True
        self.units_without_accept = 0
        self.outputs.accept(record, key, self.journal)
        if not self.two_phase:
            self._pool_add(record, key)
        if self.outputs.accepted >= self.s.num:
            self.scheduler.stop("done")

    async def offer_instruction(self, record: Record, key: str) -> bool:
        if key in self.state.decided:
            return self.state.decided[key]
        self._stamp(record, key)
        chain = self.instruction_filters
        verdict = chain.check_head(record)         # instruction-only filters: never the judge
        if verdict is not None:
            self._rejected(record, key, verdict.reason, verdict.detail)
            return False
        self.journal.write({"ev": "pool", "key": key, "record": record.to_dict()})
        self.state.decided[key] = True
        self._pool_add(record, key)
        return True

    def reject(self, record: Record, key: str, reason: str, detail: str = "") -> None:
        """A rejection decided outside the filters (unparseable, teacher_failed, over_quota)."""
        if key in self.state.decided:
            return
        self._stamp(record, key)
        self.tally.reject(reason, "generate")
        self._rejected(record, key, reason, detail)

    def _rejected(self, record: Record, key: str, reason: str, detail: str, passed_head: bool = False) -> None:
        """``passed_head``: the record passed the synchronous filters, which remember it (it counts
        for novelty), before its turns or the judge rejected it; a resumed run remembers it too."""
        self.state.decided[key] = False
        event = {"ev": "reject", "key": key, "reason": reason, "detail": detail,
                 "stage": self.tally.stage_of.get(reason, "generate"), "record": record.to_dict()}
        if passed_head:
            event["passed_head"] = True
        self.journal.write(event)
        self.outputs.rejected()

    def _pool_add(self, record: Record, key: str) -> None:
        self.pool.append(record)
        self.pool_units.append(unit_number(key))

    def _stamp(self, record: Record, key: str) -> None:
        record.lang = record.lang or self.s.lang
        record.origin = record.origin or "machine"
        record.teacher = self.teacher.label
        record.request_id = key
        self._refresh_seconds(record, key)

    def _refresh_seconds(self, record: Record, key: str) -> None:
        """The seconds the unit's paid requests took so far (a conversation's turns come later)."""
        spent = self._seconds.get(unit_number(key))
        if spent:
            record.meta["seconds"] = {stage: round(s, 3) for stage, s in spent.items()}

    def end_unit(self, n: int) -> None:
        self._seconds.pop(n, None)
        self.units_without_accept += 1
        if self.units_without_accept >= settings.STALL_UNITS:
            top = self.tally.top(3)
            self.scheduler.stop(f"stalled: the last {settings.STALL_UNITS} units accepted nothing"
                                + (f" (rejected most: {top})" if top else ""))


def unit_number(key: str) -> int:
    """``"u12:3:0"`` → 12 (-1 for a key that is not a unit's)."""
    head = key.split(":", 1)[0]
    return int(head[1:]) if head[:1] == "u" and head[1:].isdigit() else -1
