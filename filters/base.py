"""A filter is one small class: a stable ``name``, the ``stage`` it belongs to, thresholds as keyword
arguments (its options, see ``selfinstruct.options``), and ``check(record)`` that returns ``None``
to keep the record or a ``Rejection`` with a stable reason code. ``check`` may be a coroutine
function (a filter that asks a teacher); the chain then has to be driven with ``acheck``.

Stateful filters (duplicates, novelty) remember only what the whole chain kept: the chain calls
``add(record)`` on every filter once a record has passed them all. Filters that can vectorise work
over many records (MinHash signatures) may precompute in ``prepare(records)``; it must not change
what ``check`` decides.

``FilterChain`` runs the filters in stage order, stops at the first rejection and returns it,
counts and times what it decides in a ``Tally``, and hands each rejection to an optional sink (the
rejects writer of ``selfinstruct filter``).
"""
from __future__ import annotations

import asyncio
import inspect
import time
from dataclasses import dataclass
from typing import Callable, ClassVar, Iterable, Iterator, Sequence

from selfinstruct.record import Record
from selfinstruct.summary import Tally

# The stages, in the order a record meets them: cheap first, so that no expensive check is paid for
# a record a cheap one rejects. A filter names its stage; a new stage is one entry here.
STAGES = ("exact", "quality", "decontam", "minhash", "rouge", "judge")


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

    def check(self, record: Record) -> Rejection | None:
        raise NotImplementedError

    def add(self, record: Record) -> None:
        """Called once the whole chain kept ``record``. Stateless filters ignore it."""

    def prepare(self, records: Sequence[Record]) -> None:
        """Optional batch precomputation before ``check`` is called on each of ``records``."""

    def reject(self, reason: str, detail: str = "") -> Rejection:
        return Rejection(reason, detail)


RejectSink = Callable[[Record, Rejection], None]


class FilterChain:
    def __init__(self, filters: Iterable[Filter], on_reject: RejectSink | None = None,
                 tally: Tally | None = None):
        self.filters = list(filters)
        self.on_reject = on_reject
        self.tally = tally if tally is not None else Tally()
        self.is_async = any(inspect.iscoroutinefunction(f.check) for f in self.filters)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.filters]

    def check(self, record: Record) -> Rejection | None:
        """The chain's verdict on ``record``; on keep, stateful filters remember it."""
        if self.is_async:
            raise TypeError("this chain has asynchronous filters: use acheck()")
        for f in self.filters:
            t0 = time.perf_counter()
            verdict = f.check(record)
            self.tally.seconds[f.stage] += time.perf_counter() - t0
            if verdict is not None:
                return self._rejected(record, verdict, f.stage)
        return self._kept(record)

    async def acheck(self, record: Record) -> Rejection | None:
        """``check`` for chains with asynchronous filters (any chain works)."""
        for f in self.filters:
            t0 = time.perf_counter()
            verdict = f.check(record)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            self.tally.seconds[f.stage] += time.perf_counter() - t0
            if verdict is not None:
                return self._rejected(record, verdict, f.stage)
        return self._kept(record)

    def _rejected(self, record: Record, verdict: Rejection, stage: str) -> Rejection:
        self.tally.reject(verdict.reason, stage)
        if self.on_reject is not None:
            self.on_reject(record, verdict)
        return verdict

    def _kept(self, record: Record) -> None:
        for f in self.filters:
            f.add(record)
        return None

    def preload(self, records: Iterable[Record]) -> None:
        """Put records into the filters' memory without checking or counting them (the seed tasks,
        ``--against`` pools, the accepted records of a resumed run)."""
        for r in records:
            for f in self.filters:
                f.add(r)

    def run(self, records: Iterable[Record], batch_size: int = 4096) -> Iterator[Record]:
        """Yield the kept records of ``records`` in order, batching ``prepare`` calls."""
        batch: list[Record] = []
        for r in records:
            batch.append(r)
            if len(batch) >= batch_size:
                yield from self._run_batch(batch)
                batch = []
        if batch:
            yield from self._run_batch(batch)

    def _run_batch(self, batch: list[Record]) -> Iterator[Record]:
        for f in self.filters:
            t0 = time.perf_counter()
            f.prepare(batch)
            self.tally.seconds[f.stage] += time.perf_counter() - t0
        if self.is_async:
            verdicts = asyncio.run(self._acheck_all(batch))
            yield from (r for r, v in zip(batch, verdicts) if v is None)
            return
        for r in batch:
            if self.check(r) is None:
                yield r

    async def _acheck_all(self, batch: list[Record]) -> list[Rejection | None]:
        return [await self.acheck(r) for r in batch]     # in order: later records see earlier keeps

    def split(self, fields: set[str]) -> tuple["FilterChain", "FilterChain"]:
        """Two chains sharing these filter objects and this tally: the filters reading only
        ``fields``, and the rest."""
        pre = [f for f in self.filters if set(f.fields) <= fields]
        post = [f for f in self.filters if not set(f.fields) <= fields]
        return (FilterChain(pre, self.on_reject, self.tally),
                FilterChain(post, self.on_reject, self.tally))
