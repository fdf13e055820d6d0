"""``selfinstruct filter --engine ray [--ray-address ADDR]``: the engine contract
(``selfinstruct.engines``) on a Ray cluster, or on a local one started for the run.

- ``map(fn, items)``: the items are cut into a few contiguous chunks per worker, one Ray task per
  chunk, and the chunks' results are joined in chunk order. Plain tasks, not a Ray Data pipeline:
  the filters call ``map`` once per batch of a few thousand records, and a Ray Data execution costs
  about 0.3 s of planning and scheduling per call against about 0.02 s for the tasks (measured on
  2 local CPUs), which on a million records would be minutes of overhead for the same work.
- ``actors(cls, args_list)``: one Ray actor per entry, each hosting ``cls(*args)`` (built inside the
  actor: a pool shard never travels through the driver). Actors are spread over the cluster's nodes
  and reserve no CPU while they live: a filter's shards only work inside ``call``, and the chain may
  hold several filters' actors at once next to the map tasks; actors that each held a CPU would
  leave those waiting for ever on a cluster of ``workers`` CPUs.
- ``call(calls)`` sends every method call at once and waits for all; results in order. An exception
  raised inside an actor (or a map task) is raised again here as itself, with its own message
  (a ``UsageError`` from a worker is still a one-line error); a worker that died is a RuntimeError.
- ``peak_rss()`` asks each actor for its own peak resident memory (``own_peak_rss``).
- ``close()`` kills the actors, then ends this process's Ray session if the engine opened it: that
  stops the local cluster it started, and only disconnects from a cluster joined with
  ``--ray-address`` (which keeps running). A Ray the caller had initialised stays as it was.

Without an address a local cluster of ``max(2, workers)`` CPUs starts (``address="local"``: never
silently joining a cluster some other process left running), with no dashboard, quiet logs, no usage
statistics. Every node of a joined cluster must have selfinstruct installed, in the same version:
actors and tasks import the filters' code from there.
"""
from __future__ import annotations

import logging
import os
import re
import socket
import sys
from typing import Any, Callable, Sequence

from selfinstruct.engines import Actor, Engine, own_peak_rss
from selfinstruct.errors import UsageError

CHUNKS_PER_WORKER = 4     # a few chunks per worker keep every CPU busy when chunks differ in cost
INSTALL = "pip install 'selfinstruct[ray]'"
CONNECT_SECONDS = 10      # for the probe of --ray-address: Ray itself retries for many minutes


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise UsageError(f"--engine ray needs Ray ({e.name or e} is missing): {INSTALL}") from None
    return ray


class RayActor(Actor):
    """A handle on one Ray actor hosting an instance of the class given to ``actors``."""

    def __init__(self, handle: Any):
        self.handle = handle


class RayEngine(Engine):
    name = "ray"

    def __init__(self, workers: int = 2, address: str | None = None):
        self.workers = workers
        self.address = address
        self._ray = _import_ray()
        self._opened = False       # whether ray.init was ours (close ends it)
        self._actors: list[RayActor] = []
        self._host = None
        self._task = None
        self._connect()

    # -- the cluster ------------------------------------------------------------------------------

    def _connect(self) -> None:
        ray = self._ray
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if self.address:
            _reachable(self.address)
        if ray.is_initialized():        # the caller's Ray (a notebook, a test session): use it as it is
            return
        from ray.job_config import JobConfig
        # Workers import what they are sent (module-level functions, filter classes, plugins) by
        # reference, so they search this process's import path, as the local engine's workers do.
        search = [os.path.abspath(p or ".") for p in sys.path]
        options = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
                       configure_logging=True,
                       job_config=JobConfig(code_search_path=[p for p in search if os.path.isdir(p)]))
        if self.address:
            try:
                ray.init(address=self.address, **options)
            except Exception as e:      # ConnectionError, ValueError (a malformed address), …
                reason = " ".join(str(e).split()) or type(e).__name__
                raise UsageError(f"--ray-address {self.address}: cannot join the Ray cluster ({reason[:200]})") \
                    from None
        else:
            ray.init(address="local", num_cpus=max(2, self.workers), **options)
        self._opened = True

    # -- the contract -----------------------------------------------------------------------------

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        items = list(items)
        if not items:
            return []
        task = self._map_task()
        refs = [task.remote(fn, chunk) for chunk in _chunks(items, self.workers * CHUNKS_PER_WORKER)]
        return [result for chunk in self._get(refs) for result in chunk]

    def actors(self, cls: type, args_list: Sequence[tuple]) -> list[RayActor]:
        host = self._host_class()
        made = [RayActor(host.remote(cls, tuple(args))) for args in args_list]
        self._actors.extend(made)
        # Wait until every instance is built, so that a constructor's error surfaces here, not later.
        self._get([a.handle.ready.remote() for a in made])
        return made

    def call(self, calls: Sequence[tuple[RayActor, str, tuple]]) -> list[Any]:
        return self._get([actor.handle.run.remote(method, tuple(args)) for actor, method, args in calls])

    def peak_rss(self) -> list[int]:
        """Each actor's peak resident memory in bytes (this process's when there is no actor yet)."""
        live = [a for a in self._actors if a.handle is not None]
        if not live:
            return [own_peak_rss()]
        return self._get([a.handle.peak_rss.remote() for a in live])

    def close(self) -> None:
        ray = self._ray
        for actor in self._actors:
            if actor.handle is not None:
                try:
                    ray.kill(actor.handle)
                except Exception:       # already dead, or Ray already down
                    pass
                actor.handle = None
        self._actors = []
        if self._opened and ray.is_initialized():
            ray.shutdown()
        self._opened = False

    # -- helpers ----------------------------------------------------------------------------------

    def _host_class(self):
        if self._host is None:
            # SPREAD puts the shards on different nodes; num_cpus=0: see the module docstring.
            self._host = self._ray.remote(num_cpus=0, scheduling_strategy="SPREAD")(_Host)
        return self._host

    def _map_task(self):
        if self._task is None:
            self._task = self._ray.remote(_map_chunk)
        return self._task

    def _get(self, refs: list) -> list[Any]:
        try:
            return self._ray.get(refs)
        except Exception as e:
            raise _original(self._ray, e) from None


class _Host:
    """What runs inside each Ray actor: the hosted instance, and its process's memory. A constructor
    that raises is kept and raised by ``ready``: Ray reports an actor that died in ``__init__`` as a
    dead actor, losing the original exception."""

    def __init__(self, cls: type, args: tuple):
        self.obj, self.error = None, None
        try:
            self.obj = cls(*args)
        except Exception as e:
            self.error = e

    def ready(self) -> bool:
        if self.error is not None:
            raise self.error
        return True

    def run(self, method: str, args: tuple) -> Any:
        self.ready()
        return getattr(self.obj, method)(*args)

    def peak_rss(self) -> int:
        return own_peak_rss()


def _map_chunk(fn: Callable[[Any], Any], chunk: list[Any]) -> list[Any]:
    """What one map task runs: ``fn`` over one contiguous chunk of the items."""
    return [fn(item) for item in chunk]


def _reachable(address: str) -> None:
    """Refuse a ``--ray-address`` that nothing answers on at once: ``ray.init`` would retry an
    unreachable address for many minutes before failing. ``auto`` (the cluster ``ray start`` left
    on this machine, or ``$RAY_ADDRESS``) is Ray's to find."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = hostport.rstrip("/").rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        raise UsageError(f"--ray-address {address}: expected HOST:PORT (the head node's GCS, port 6379 "
                         "by default), ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as e:
        raise UsageError(f"--ray-address {address}: no Ray cluster answers there "
                         f"({e.strerror or type(e).__name__})") from None


def _chunks(items: list[Any], count: int) -> list[list[Any]]:
    """``items`` cut into at most ``count`` contiguous chunks of near-equal size."""
    count = max(1, min(count, len(items)))
    size, extra = divmod(len(items), count)
    chunks, start = [], 0
    for k in range(count):
        end = start + size + (1 if k < extra else 0)
        chunks.append(items[start:end])
        start = end
    return chunks


def _original(ray: Any, error: BaseException) -> BaseException:
    """The exception a worker raised, as itself (Ray wraps it in a RayTaskError, and Ray Data in
    another layer); a dead worker becomes a RuntimeError that says so."""
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, ray.exceptions.RayActorError):
            said = re.sub(r"\x1b\[[0-9;]*m", "", " ".join(str(error).split()))      # no terminal colours
            return RuntimeError(f"a Ray worker died: {said[:300]}")
        cause = getattr(error, "cause", None)
        if isinstance(error, ray.exceptions.RayTaskError) and isinstance(cause, BaseException):
            error = cause
            continue
        inner = error.__cause__
        if isinstance(inner, BaseException) and (isinstance(error, ray.exceptions.RayError)
                                                 or type(error).__module__.startswith("ray.")):
            error = inner
            continue
        break
    return error
