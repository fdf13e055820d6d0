"""A filter is one small class: a stable ``name``, the ``stage`` it belongs to, thresholds as keyword
arguments (its options, see ``selfinstruct.options``), and ``check(record)`` that returns ``None``
to keep the record or a ``Rejection`` with a stable reason code. ``check`` may be a coroutine
function (a filter that asks a teacher); the chain then has to be driven with ``acheck``.

Stateful filters (duplicates, novelty) remember what passed them: the chain calls ``add(record)``
on its synchronous filters once a record has passed all of them (see ``FilterChain`` for the
asynchronous tail). Filters that can vectorise work
over many records (MinHash signatures) may precompute in ``prepare(records)``; it must not change
what ``check`` decides.

``FilterChain`` runs the filters in stage order, stops at the first rejection and returns it,
counts and times what it decides in a ``Tally``, and hands each rejection to an optional sink (the
rejects writer of ``selfinstruct filter``).

Conversations (``record.messages``) are judged turn by turn. The record's own fields mirror its
first exchange (first user turn, first assistant turn), so every filter judges that exchange as it
judges single-turn data: novelty and duplicates are about the task, and the first user turn sets it.
Each later exchange is then checked, as a record of its own (the user turn as the instruction, the
reply as the output), by the filters that judge every turn: by default the synchronous filters that
remember nothing (the quality rules, the language check, decontamination); a filter says otherwise
with ``per_turn``. A later user turn leans on the conversation before it ("Why?", "And in
French?", "Summarise it."), so the rules that ask whether an instruction stands on its own
(``FOLLOW_UP_EXEMPT``) do not apply to it; an empty user turn is rejected instead. A rejection of a
later exchange keeps the filter's reason and names the turn in its detail ("turn 3: …").

In parallel (``selfinstruct filter --workers N`` or ``--engine ray``; ``use_engine``), the filters
that remember nothing are judged for a whole batch at once by the engine's workers, each holding its
own copy of them (pickled once; decontamination's index is copied into every worker, so its memory
is paid once per worker), and return per record the first of them that rejects it, what they
wrote onto the record (the language check fills ``record.lang``) and the later turns' verdict.
``check_head`` then walks the chain in order exactly as in one process: a precomputed verdict for
those filters, a live ``check`` for the ones that remember (exact, MinHash, ROUGE-L), which may
parallelise their own ``prepare``; so the first rejection of each record, and everything
remembered, are the same for any number of workers. The workers' wall time is spread over the
stages in proportion to the time the workers measured in each.
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import io
import pickle
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, ClassVar, Iterable, Iterator, Sequence

from selfinstruct.record import Record
from selfinstruct.summary import Tally
from selfinstruct.teachers.base import BudgetExhausted

# The stages, in the order a record meets them: cheap first, so that no expensive check is paid for
# a record a cheap one rejects. A filter names its stage; a new stage is one entry here.
STAGES = ("exact", "quality", "decontam", "minhash", "rouge", "judge")

# The reasons that say an instruction does not stand on its own (too few words, a fragment that
# continues something, a pointer at material it does not carry): a follow-up turn of a conversation
# stands on the turns before it, so these do not reject it.
FOLLOW_UP_EXEMPT = frozenset({"too_short", "bad_start", "missing_material"})


@dataclass(frozen=True)
class Rejection:
    reason: str          # stable code, e.g. "rouge_too_similar"
    detail: str = ""     # human-readable specifics, e.g. the most similar kept instruction


class Filter:
    name: ClassVar[str] = ""
    stage: ClassVar[str] = "quality"
    # Within a stage, filters run by ``order``, then by module and definition order.
    order: ClassVar[int] = 100
    # Record fields the filter reads. The self-instruct recipe checks instruction-only filters as soon as
    # an instruction is parsed (before paying for its instances) and the rest once instances exist.
    fields: ClassVar[tuple[str, ...]] = ("instruction", "input", "output")
    # Whether the filter also judges each later exchange of a conversation. None: it does when it is
    # synchronous and remembers nothing (``add`` not overridden); a filter that remembers records is
    # about novelty, which the first user turn decides.
    per_turn: ClassVar[bool | None] = None

    def check(self, record: Record) -> Rejection | None:
        raise NotImplementedError

    def add(self, record: Record) -> None:
        """Called once the whole chain kept ``record``. Stateless filters ignore it."""

    def prepare(self, records: Sequence[Record]) -> None:
        """Optional batch precomputation before ``check`` is called on each of ``records``."""

    def use_engine(self, engine) -> None:
        """Run this filter's parallel work (in ``prepare``) on ``engine`` (``selfinstruct.engines``):
        the decisions must be the same on every engine and any number of workers."""

    def reject(self, reason: str, detail: str = "") -> Rejection:
        return Rejection(reason, detail)


RejectSink = Callable[[Record, Rejection], None]


def remembers_nothing(f: Filter) -> bool:
    """Synchronous with ``add`` not overridden: its verdict on a record depends on that record alone,
    so it may be computed anywhere and in any order (another turn, another process)."""
    return type(f).add is Filter.add and not inspect.iscoroutinefunction(f.check)


def judges_each_turn(f: Filter) -> bool:
    if f.per_turn is not None:
        return f.per_turn
    return remembers_nothing(f)


def runs_in_parallel(engine) -> bool:
    """Whether ``engine`` (``selfinstruct.engines``) has workers outside this process: below that,
    filters keep their one-process code path."""
    return engine is not None and (engine.workers > 1 or engine.name == "ray")


def exchanges(messages: Sequence[dict[str, str]]) -> list[tuple[str, str]]:
    """A conversation's (user turn, assistant reply) pairs in order, system turns left out. A user
    turn that no reply follows pairs with "" (two user turns in a row: the first is unanswered),
    and a reply without a user turn before it with ""."""
    pairs: list[tuple[str, str]] = []
    user: str | None = None
    for m in messages:
        role, content = m.get("role"), m.get("content") or ""
        if role == "user":
            if user is not None:
                pairs.append((user, ""))
            user = content
        elif role == "assistant":
            pairs.append((user or "", content))
            user = None
    if user is not None:
        pairs.append((user, ""))
    return pairs


async def gather_or_cancel(coros: list) -> list:
    """``asyncio.gather`` that, when one fails (a judge that cannot follow its format), cancels the
    others instead of letting them go on paying for answers nobody reads. A spent budget is the
    exception: the requests in flight are paid already, so their answers are waited for (and kept by
    whoever journals them); the rest stop at the budget too."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return await asyncio.gather(*tasks)
    except BudgetExhausted:
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class FilterChain:
    """The filters in chain order, except that filters whose ``check`` is a coroutine (the judge, a
    plugin that asks a service) form the chain's *tail*, after every synchronous one: they are the
    slow and costly checks, never paid for a record a cheap filter rejects. A record that passes the head is remembered by the
    head's stateful filters at once, before the tail has decided on it: a candidate awaiting
    judgement counts for duplicates and novelty exactly like a kept one (and still does if the judge
    then rejects it), so later records' decisions never depend on when a judgement arrives, and the
    tail can judge many records at once."""

    def __init__(self, filters: Iterable[Filter], on_reject: RejectSink | None = None,
                 tally: Tally | None = None):
        self.filters = list(filters)
        self.on_reject = on_reject
        self.tally = tally if tally is not None else Tally()
        self.head = [f for f in self.filters if not inspect.iscoroutinefunction(f.check)]
        self.tail = [f for f in self.filters if inspect.iscoroutinefunction(f.check)]
        self.filters = self.head + self.tail
        self.turn_filters = [f for f in self.head if judges_each_turn(f)]
        self.is_async = bool(self.tail)
        self._tail_busy, self._tail_since = 0, 0.0
        self._remote: _RemoteVerdicts | None = None     # set by use_engine on a parallel engine

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.filters]

    def check(self, record: Record) -> Rejection | None:
        """The chain's verdict on ``record``; on keep, stateful filters remember it."""
        if self.is_async:
            raise TypeError("this chain has asynchronous filters: use acheck()")
        return self.check_head(record)

    async def acheck(self, record: Record) -> Rejection | None:
        """``check`` for chains with asynchronous filters (any chain works)."""
        verdict = self.check_head(record)
        if verdict is not None or not self.tail:
            return verdict
        return self.settle_tail(record, await self.judge_tail(record))

    def check_head(self, record: Record) -> Rejection | None:
        """The synchronous filters' verdict (on a conversation: its first exchange, then each later
        one); on pass they remember ``record``."""
        for f in self.head:
            t0 = time.perf_counter()
            verdict = f.check(record)
            self.tally.seconds[f.stage] += time.perf_counter() - t0
            if verdict is not None:
                return self._rejected(record, verdict, f.stage)
        if record.messages is not None:
            verdict = self.check_turns(record)
            if verdict is not None:
                return verdict
        for f in self.head:
            f.add(record)
        return None

    def _check_head_with(self, record: Record, outcome: "_Outcome | None") -> Rejection | None:
        """``check_head`` taking the workers' ``outcome`` for the filters they judged (None: none of
        them rejects or edits the record, and its later turns pass) and calling the others live."""
        remote = self._remote
        at, verdict, edits, turns = outcome or _PASSED
        edits = dict(edits)
        for position, f in enumerate(self.head):
            k = remote.index_of.get(position)
            if k is None:
                t0 = time.perf_counter()
                found = f.check(record)
                self.tally.seconds[f.stage] += time.perf_counter() - t0
            else:
                for name, value in edits.get(k, {}).items():
                    setattr(record, name, value)
                found = verdict if k == at else None
            if found is not None:
                return self._rejected(record, found, f.stage)
        if record.messages is not None:
            if not remote.turns:
                found = self.check_turns(record)
                if found is not None:
                    return found
            elif turns is not None:
                return self._rejected(record, turns[1], turns[0])
        for f in self.head:
            f.add(record)
        return None

    def check_turns(self, record: Record, first: int = 2, last: int | None = None) -> Rejection | None:
        """The per-turn filters' verdict on exchanges ``first`` .. ``last`` (counted from 1; the
        first is the record's own fields, which ``check_head`` judges) of ``record.messages``,
        counted. Remembers nothing."""
        outcome = self.judge_turns(record, first, last)
        if outcome is None:
            return None
        stage, verdict = outcome
        return self._rejected(record, verdict, stage)

    def judge_turns(self, record: Record, first: int = 2, last: int | None = None) -> tuple[str, Rejection] | None:
        """``check_turns`` with nothing counted: (the stage, the rejection) or None. The generate
        loop counts a rejection when it decides, in unit order. ``record.meta["truncated_turns"]``
        lists the turns the teacher cut off at its token limit (a generated conversation)."""
        pairs = exchanges(record.messages or [])
        cut = set(record.meta.get("truncated_turns") or ())
        for k in range(max(first, 2), min(len(pairs), last or len(pairs)) + 1):
            user, reply = pairs[k - 1]
            if not user.strip():
                return "quality", Rejection("empty_turn", f"turn {k}: the user's message is empty")
            turn = Record(instruction=user, output=reply, lang=record.lang,
                          meta={"truncated": True} if k in cut else {})
            for f in self.turn_filters:
                t0 = time.perf_counter()
                verdict = f.check(turn)
                self.tally.seconds[f.stage] += time.perf_counter() - t0
                if verdict is not None and verdict.reason not in FOLLOW_UP_EXEMPT:
                    return f.stage, Rejection(verdict.reason, f"turn {k}: {verdict.detail}" if verdict.detail
                                              else f"turn {k}")
        return None

    async def judge_tail(self, record: Record) -> tuple[Filter, Rejection] | None:
        """The asynchronous filters' verdict on a record that passed the head, with nothing counted
        or written yet (``settle_tail`` does that, so that many records can be judged at once and
        still be settled in order). Seconds are the wall time during which any judgement was
        pending, not the sum of overlapping waits."""
        if self._tail_busy == 0:
            self._tail_since = time.perf_counter()
        self._tail_busy += 1
        try:
            for f in self.tail:
                verdict = await f.check(record)
                if verdict is not None:
                    return f, verdict
            return None
        finally:
            self._tail_busy -= 1
            if self._tail_busy == 0:
                self.tally.seconds[self.tail[0].stage] += time.perf_counter() - self._tail_since

    def settle_tail(self, record: Record, outcome: tuple[Filter, Rejection] | None) -> Rejection | None:
        if outcome is not None:
            f, verdict = outcome
            return self._rejected(record, verdict, f.stage)
        for f in self.tail:
            f.add(record)
        return None

    def _rejected(self, record: Record, verdict: Rejection, stage: str) -> Rejection:
        self.tally.reject(verdict.reason, stage)
        if self.on_reject is not None:
            self.on_reject(record, verdict)
        return verdict

    def use_engine(self, engine) -> None:
        """Hand every filter the engine its parallel work runs on (``selfinstruct filter``); on a
        parallel engine, also put the filters that remember nothing on its workers (module
        docstring). Call it after ``preload``: nothing is preloaded into the workers' copies."""
        self.engine = engine
        for f in self.filters:
            f.use_engine(engine)
        self._remote = _RemoteVerdicts.start(self, engine) if runs_in_parallel(engine) else None

    def preload(self, records: Iterable[Record]) -> None:
        """Put records into the filters' memory without checking or counting them (the seed tasks,
        ``--against`` pools, the accepted records of a resumed run)."""
        for r in records:
            for f in self.filters:
                f.add(r)

    def run(self, records: Iterable[Record], batch_size: int = 4096,
            run_async: Callable[[Awaitable], Any] = asyncio.run) -> Iterator[Record]:
        """Yield the kept records of ``records`` in order, batching ``prepare`` calls. A chain with
        asynchronous filters judges each batch's survivors at once, through ``run_async`` (give it
        the runner of the event loop the filters' clients live on)."""
        batch: list[Record] = []
        for r in records:
            batch.append(r)
            if len(batch) >= batch_size:
                yield from self._run_batch(batch, run_async)
                batch = []
        if batch:
            yield from self._run_batch(batch, run_async)

    def _run_batch(self, batch: list[Record], run_async) -> Iterator[Record]:
        """One batch: ``prepare``, the head in order, then the tail on the survivors at once. On a
        parallel engine the workers first judge the batch for the filters they hold (their own
        ``prepare`` runs there), and the head walk takes their verdicts."""
        remote = self._remote
        outcomes = remote.judge(batch, self.tally) if remote is not None else None
        for position, f in enumerate(self.filters):
            if remote is not None and position in remote.index_of:
                continue
            t0 = time.perf_counter()
            f.prepare(batch)
            self.tally.seconds[f.stage] += time.perf_counter() - t0
        if outcomes is None:
            passed = (r for r in batch if self.check_head(r) is None)
        else:
            passed = (r for r, o in zip(batch, outcomes) if self._check_head_with(r, o) is None)
        if not self.is_async:
            yield from passed
            return
        passed = list(passed)                 # in order: later records see earlier ones
        outcomes = run_async(self._judge_all(passed))
        yield from (r for r, outcome in zip(passed, outcomes) if self.settle_tail(r, outcome) is None)

    async def _judge_all(self, records: list[Record]) -> list:
        return await gather_or_cancel([self.judge_tail(r) for r in records])

    def split(self, fields: set[str]) -> tuple["FilterChain", "FilterChain"]:
        """Two chains sharing these filter objects and this tally: the filters reading only
        ``fields``, and the rest."""
        pre = [f for f in self.filters if set(f.fields) <= fields]
        post = [f for f in self.filters if not set(f.fields) <= fields]
        return (FilterChain(pre, self.on_reject, self.tally),
                FilterChain(post, self.on_reject, self.tally))


# ---- the filters that remember nothing, on an engine's workers ----------------------------------
# A record's outcome from the workers: (the position, among the workers' filters, of the first that
# rejects it, or None; that rejection; what those filters wrote onto the record, as (position,
# {field: value}) pairs in order; the later turns' (stage, rejection) or None).
_Outcome = tuple[int | None, Rejection | None, tuple[tuple[int, dict[str, Any]], ...], tuple[str, Rejection] | None]
_PASSED: _Outcome = (None, None, (), None)


class _RemoteVerdicts:
    """The driver's side: which of the chain's head filters the workers judge, and the actors."""

    def __init__(self, engine, actors: list, index_of: dict[int, int], turns: bool, stages: list[str]):
        self.engine = engine
        self.actors = actors
        self.index_of = index_of      # head position -> position among the workers' filters
        self.turns = turns            # the workers also judge conversations' later turns
        self.stages = stages          # the workers' filters' stages, by position

    @classmethod
    def start(cls, chain: FilterChain, engine) -> "_RemoteVerdicts | None":
        pickled = _shippable(chain.head)
        if not pickled:
            return None
        positions = list(pickled)
        filters = [chain.head[p] for p in positions]
        # Pickled once here; every worker unpickles its own copy.
        actors = engine.actors(_VerdictWorker, [(list(pickled.values()),)] * engine.workers)
        turns = all(any(t is f for f in filters) for t in chain.turn_filters)
        return cls(engine, actors, {p: k for k, p in enumerate(positions)}, turns, [f.stage for f in filters])

    def judge(self, batch: list[Record], tally: Tally) -> list[_Outcome | None]:
        """Every record's outcome, in order; the wall time goes to the stages in proportion to the
        seconds the workers measured in each."""
        bounds = _cuts(len(batch), len(self.actors))
        t0 = time.perf_counter()
        replies = self.engine.call([(actor, "judge", (batch[lo:hi], self.turns))
                                    for actor, (lo, hi) in zip(self.actors, bounds)])
        wall = time.perf_counter() - t0
        measured: dict[str, float] = {}
        outcomes: list[_Outcome | None] = []
        for part, seconds in replies:
            outcomes.extend(part)
            for stage, spent in seconds.items():
                measured[stage] = measured.get(stage, 0.0) + spent
        total = sum(measured.values())
        for stage, spent in measured.items():
            tally.seconds[stage] += wall * spent / total if total > 0 else 0.0
        if total <= 0 and self.stages:
            tally.seconds[self.stages[0]] += wall
        return outcomes


def _shippable(head: list[Filter]) -> dict[int, bytes]:
    """The head filters the workers may judge, pickled, by position: those that remember nothing,
    can be pickled, and come before any filter that remembers outside the exact stage. (ROUGE-L
    writes its score onto the record, so a filter after it must see that; the exact stage's filters
    edit nothing.)"""
    chosen: dict[int, bytes] = {}
    for position, f in enumerate(head):
        if not remembers_nothing(f):
            if f.stage != STAGES[0]:
                break
            continue
        try:
            chosen[position] = _dumps(f)
        except Exception:             # noqa: BLE001 - a plugin holding a client, a lock, a module
            continue                  # judged live, in this process
    return chosen


class _VerdictWorker:
    """One worker's copy of the filters that remember nothing (an engine actor)."""

    def __init__(self, blobs: list[bytes]):
        self.filters: list[Filter] = [pickle.loads(b) for b in blobs]
        self.chain = FilterChain(self.filters)     # its judge_turns: the later turns, as in the driver

    def judge(self, records: list[Record], turns: bool) -> tuple[list[_Outcome | None], dict[str, float]]:
        """Each record's outcome (None for the common one: no rejection, no edit), and the seconds
        spent per stage."""
        self.chain.tally.seconds.clear()
        seconds = self.chain.tally.seconds
        for f in self.filters:
            t0 = time.perf_counter()
            f.prepare(records)
            seconds[f.stage] += time.perf_counter() - t0
        outcomes = [self._one(r, turns, seconds) for r in records]
        return outcomes, dict(seconds)

    def _one(self, record: Record, turns: bool, seconds) -> _Outcome | None:
        fields = vars(record)
        before = dict(fields)
        edits: list[tuple[int, dict[str, Any]]] = []
        for k, f in enumerate(self.filters):
            t0 = time.perf_counter()
            verdict = f.check(record)
            seconds[f.stage] += time.perf_counter() - t0
            if fields != before:      # e.g. the language check filling record.lang
                edits.append((k, {name: v for name, v in fields.items() if before.get(name) is not v}))
                before = dict(fields)
            if verdict is not None:
                return k, verdict, tuple(edits), None
        later = self.chain.judge_turns(record) if turns and record.messages is not None else None
        if not edits and later is None:
            return None
        return None, None, tuple(edits), later


def _cuts(n: int, parts: int) -> list[tuple[int, int]]:
    """``n`` items as ``parts`` contiguous (start, stop) ranges of near-equal size (some may be empty)."""
    size, extra = divmod(n, max(1, parts))
    bounds, start = [], 0
    for i in range(max(1, parts)):
        stop = start + size + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


class _Pickler(pickle.Pickler):
    """Pickles an ``functools.lru_cache`` made per instance (``self._f = lru_cache()(self._g)``, as
    the language check does) as a fresh cache around the same function: the standard pickler looks
    the wrapper up by name, finds the undecorated function and refuses. The cache's contents are
    only a cache."""

    def reducer_override(self, obj):
        if isinstance(obj, functools._lru_cache_wrapper):
            try:
                pickle.dumps(obj)
            except Exception:         # noqa: BLE001 - the per-instance case
                params = obj.cache_parameters()
                return _new_lru_cache, (obj.__wrapped__, params["maxsize"], params["typed"])
        return NotImplemented


def _new_lru_cache(fn, maxsize, typed):
    return functools.lru_cache(maxsize=maxsize, typed=typed)(fn)


def _dumps(obj) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()
