"""Where ``selfinstruct filter``'s parallel work runs: this process, local worker processes
(``--workers N``) or a Ray cluster (``--engine ray [--ray-address ADDR]``).

An engine offers two things, the same for every kind, so that a filter's parallel path is one code
path whatever runs it (and ``--workers 1`` is that same path with everything in this process):

- ``map(fn, items)``: ``fn`` applied to every item, in parallel, results in input order. ``fn`` is a
  module-level function (it is pickled by reference) and items are picklable; nothing is shared.
- ``actors(cls, args_list)``: one long-lived instance of ``cls`` per entry of ``args_list``, each in
  its own worker (its own process on the local engine, a Ray actor on Ray), for state that stays
  put between calls (a shard of the ROUGE-L pool). ``call(calls)`` runs ``[(actor, method, args)]``
  at once and returns the results in order; ``peak_rss()`` the workers' peak resident memory.

Engines are opened with ``open_engine(settings)`` as a context manager; closing stops their
workers (and the local Ray cluster the run started, if any).
"""
from __future__ import annotations

import resource
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from selfinstruct.errors import UsageError

ENGINES = ("local", "ray")


@dataclass
class EngineSettings:
    name: str = "local"           # --engine
    workers: int = 1              # --workers: worker processes (local) or actors per stage (ray)
    address: str | None = None    # --ray-address: a running cluster (default: start a local one)

    def validate(self) -> None:
        if self.name not in ENGINES:
            raise UsageError(f"unknown --engine '{self.name}' (choose from {', '.join(ENGINES)})")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise UsageError(f"--workers must be a whole number >= 1, got {self.workers!r}")
        if self.address is not None and self.name != "ray":
            raise UsageError("--ray-address applies to --engine ray only")

    def shown(self) -> dict[str, Any]:
        return {"engine": self.name, "workers": self.workers,
                **({"ray_address": self.address} if self.address else {})}


def own_peak_rss() -> int:
    """This process's peak resident memory, in bytes. On Linux a process started by exec from a
    larger one inherits that one's ``ru_maxrss`` (the kernel folds the old address space's peak into
    it), so a worker would report its parent's peak: ``VmHWM`` in /proc/self/status is the peak of
    this process's own address space. Elsewhere, ``ru_maxrss`` (bytes on macOS, KiB on Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class Actor:
    """A handle on one worker's instance (what ``actors`` returns; engines subclass it)."""


class Engine:
    """The in-process engine (``--workers 1``): every call runs here, in order."""

    name = "local"
    workers = 1

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        return [fn(item) for item in items]

    def actors(self, cls: type, args_list: Sequence[tuple]) -> list[Any]:
        return [_InProcess(cls(*args)) for args in args_list]

    def call(self, calls: Sequence[tuple[Any, str, tuple]]) -> list[Any]:
        return [getattr(actor.obj, method)(*args) for actor, method, args in calls]

    def peak_rss(self) -> list[int]:
        """Peak resident memory of each worker, in bytes (this process here)."""
        return [own_peak_rss()]

    def close(self) -> None:
        pass


class _InProcess(Actor):
    def __init__(self, obj: Any):
        self.obj = obj


@contextmanager
def open_engine(settings: EngineSettings | None = None) -> Iterator[Engine]:
    settings = settings or EngineSettings()
    settings.validate()
    if settings.name == "ray":
        from selfinstruct.engines.ray import RayEngine
        engine: Engine = RayEngine(settings.workers, settings.address)
    elif settings.workers > 1:
        from selfinstruct.engines.local import ProcessEngine
        engine = ProcessEngine(settings.workers)
    else:
        engine = Engine()
    try:
        yield engine
    finally:
        engine.close()
