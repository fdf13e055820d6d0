"""A filter is one small class: a stable ``name``, the ``stage`` it belongs to, thresholds as keyword
arguments, and ``check(record)`` that returns ``None`` to keep the record or a ``Rejection`` with a
stable reason code.

Stateful filters (duplicates, novelty) remember only what the whole chain kept: the chain calls
``add(record)`` on every filter once a record has passed them all. Filters that can vectorise work
over many records (MinHash signatures) may precompute in ``prepare(records)``; it must not change
what ``check`` decides.

``FilterChain`` runs the filters in order, stops at the first rejection, counts rejections per
reason, times each stage, and hands each rejection to an optional sink (the rejects writer).
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, ClassVar, Iterable, Sequence

from selfinstruct.record import Record

STAGES = ("exact", "quality", "minhash", "rouge")


@dataclass(frozen=True)
class Rejection:
    reason: str          # stable code, e.g. "rouge_too_similar"
    detail: str = ""     # human-readable specifics, e.g. the most similar kept instruction
    filter: str = ""     # name of the filter that rejected


class Filter:
    name: ClassVar[str] = ""
    stage: ClassVar[str] = "quality"
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
        return Rejection(reason, detail, self.name)


RejectSink = Callable[[Record, Rejection], None]


class FilterChain:
    def __init__(self, filters: Iterable[Filter], on_reject: RejectSink | None = None):
        self.filters = list(filters)
        self.on_reject = on_reject
        self.kept = 0
        self.rejected: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()   # per stage

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.filters]

    def check(self, record: Record) -> Rejection | None:
        """Run every filter on ``record``; on keep, let stateful filters remember it."""
        for f in self.filters:
            t0 = time.perf_counter()
            verdict = f.check(record)
            self.seconds[f.stage] += time.perf_counter() - t0
            if verdict is not None:
                self.rejected[verdict.reason] += 1
                if self.on_reject is not None:
                    self.on_reject(record, verdict)
                return verdict
        for f in self.filters:
            f.add(record)
        self.kept += 1
        return None

    def seed(self, records: Iterable[Record]) -> None:
        """Put records into the filters' memory without checking or counting them (the seed tasks,
        ``--against`` pools, the accepted records of a resumed run)."""
        for r in records:
            for f in self.filters:
                f.add(r)

    def run(self, records: Iterable[Record], batch_size: int = 4096) -> Iterable[Record]:
        """Yield the kept records of ``records`` in order, batching ``prepare`` calls."""
        batch: list[Record] = []
        for r in records:
            batch.append(r)
            if len(batch) >= batch_size:
                yield from self._run_batch(batch)
                batch = []
        if batch:
            yield from self._run_batch(batch)

    def _run_batch(self, batch: list[Record]) -> Iterable[Record]:
        for f in self.filters:
            t0 = time.perf_counter()
            f.prepare(batch)
            self.seconds[f.stage] += time.perf_counter() - t0
        for r in batch:
            if self.check(r) is None:
                yield r

    def split(self, fields: set[str]) -> tuple["FilterChain", "FilterChain"]:
        """Two chains sharing these filter objects: those reading only ``fields``, and the rest."""
        pre = [f for f in self.filters if set(f.fields) <= fields]
        post = [f for f in self.filters if not set(f.fields) <= fields]
        return FilterChain(pre, self.on_reject), FilterChain(post, self.on_reject)

    def summary(self) -> dict:
        return {
            "kept": self.kept,
            "rejected": dict(sorted(self.rejected.items())),
            "seconds_per_stage": {k: round(v, 3) for k, v in self.seconds.items()},
        }
