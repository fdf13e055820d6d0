"""``ProcessEngine``: the engine contract (``selfinstruct.engines``) on N local worker processes, for
``selfinstruct filter --workers N``.

Design:

- Each worker is a fresh interpreter (``python -c`` running ``_serve``), never a plain fork: the
  filter command may have threads running (an event-loop thread, tqdm's monitor), and a forked child
  inherits their locks in whatever state they were in. multiprocessing's "spawn" would do the same
  but re-runs the caller's main script in every worker (a script without an ``if __name__ ==
  "__main__"`` guard then fails in the workers, and the CLI's imports are paid again); here a worker
  imports only this module and what the pickled functions and classes it is sent name (by
  reference: module-level ones, from the coordinator's ``sys.path``, which it adopts first).
  It talks over one end of a socket pair handed down as a file descriptor.
- One duplex pipe per worker and a strict request/reply protocol: the coordinator sends a worker a
  new request only once it has read that worker's previous reply. A worker therefore never blocks
  writing a large reply while the coordinator blocks writing a large request to it (the deadlock of
  two full pipe buffers), and replies need no ids.
- ``map`` cuts the items into contiguous chunks (a few per worker, so that a slow chunk does not
  leave the other workers idle) and hands the next chunk to whichever worker answers first;
  results are reassembled in input order.
- ``actors`` places actor i on worker i % W (round-robin); its state stays in that process
  between ``call``s. Calls to actors on different workers run at once; calls to actors sharing a
  worker run one after the other, in the order given.
- Errors: an exception raised in a worker comes back and is raised again here, with the worker's
  traceback chained as its cause; the other workers' outstanding replies are read first so the
  engine stays usable. A worker that dies (killed, out of memory, a crash in compiled code) closes
  its end of the pipe, which wakes the coordinator with ``WorkerDied`` instead of a hang; the engine
  is then closed, since the dead worker's actors are gone.
- Workers ignore SIGINT (Ctrl-C reaches the whole process group): the coordinator handles it and
  stops them in ``close``. A worker whose coordinator disappears sees the pipe close and exits.

The engine is driven by one thread (the filter chain's); it is not meant to be shared between threads.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import traceback
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Sequence

from selfinstruct.engines import Actor, Engine, own_peak_rss

CHUNKS_PER_WORKER = 4           # map chunks per worker: balance against per-message overhead
_JOIN_SECONDS = 5.0             # how long close() waits for a worker to exit before terminating it


class WorkerDied(RuntimeError):
    """A worker process exited while the coordinator was waiting for its reply."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker (chained as the re-raised error's cause)."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


class ProcessActor(Actor):
    """Handle on one actor: which worker holds it and its number there."""

    def __init__(self, worker: int, key: int):
        self.worker = worker
        self.key = key

    def __repr__(self) -> str:
        return f"ProcessActor(worker={self.worker}, key={self.key})"


class ProcessEngine(Engine):
    name = "local"

    def __init__(self, workers: int):
        if workers < 1:
            raise ValueError(f"ProcessEngine needs at least one worker, got {workers}")
        self.workers = workers
        self._closed = False
        self._next_key = 0
        self._procs: list[subprocess.Popen] = []
        self._conns: list[Connection] = []
        try:
            for _ in range(workers):
                self._start_worker()
        except BaseException:
            self.close()
            raise

    def _start_worker(self) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            proc = subprocess.Popen(
                [sys.executable, "-c", f"from selfinstruct.engines.local import _serve; _serve({theirs.fileno()})"],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        # Only the worker holds its end now: its death reads as EOF here.
        conn = Connection(ours.detach())
        self._procs.append(proc)
        self._conns.append(conn)
        conn.send(list(sys.path))

    # ---- the contract -------------------------------------------------------------------------
    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        items = list(items)
        if not items:
            return []
        chunks = _chunks(len(items), self.workers * CHUNKS_PER_WORKER)
        jobs = [("map", (fn, items[start:stop])) for start, stop in chunks]
        parts = self._run(jobs, workers=None)
        return [result for part in parts for result in part]

    def actors(self, cls: type, args_list: Sequence[tuple]) -> list[ProcessActor]:
        made: list[ProcessActor] = []
        for i, _ in enumerate(args_list):
            made.append(ProcessActor(i % self.workers, self._next_key))
            self._next_key += 1
        jobs = [("new", (actor.key, cls, tuple(args))) for actor, args in zip(made, args_list)]
        self._run(jobs, workers=[actor.worker for actor in made])
        return made

    def call(self, calls: Sequence[tuple[Any, str, tuple]]) -> list[Any]:
        jobs, workers = [], []
        for actor, method, args in calls:
            if not isinstance(actor, ProcessActor):
                raise TypeError(f"{actor!r} is not an actor of this engine")
            jobs.append(("call", (actor.key, method, tuple(args))))
            workers.append(actor.worker)
        return self._run(jobs, workers=workers)

    def peak_rss(self) -> list[int]:
        """Each worker's own peak resident memory (``own_peak_rss``), in bytes."""
        return self._run([("rss", ())] * self.workers, workers=list(range(self.workers)))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for conn in self._conns:
            try:
                conn.send(("stop", ()))
            except (OSError, ValueError):
                pass                    # already gone: nothing to tell it
        for proc in self._procs:
            try:
                proc.wait(_JOIN_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for conn in self._conns:
            conn.close()

    # ---- dispatch -----------------------------------------------------------------------------
    def _run(self, jobs: list[tuple[str, tuple]], workers: list[int] | None) -> list[Any]:
        """Run ``jobs`` and return their results in order. ``workers[i]`` pins job i to a worker (jobs
        on one worker run in the order given); ``None`` lets any idle worker take the next job."""
        if self._closed:
            raise RuntimeError("the worker processes have been stopped (engine closed)")
        results: list[Any] = [None] * len(jobs)
        queues: list[list[int]] = [[] for _ in range(self.workers)]
        shared = list(range(len(jobs))) if workers is None else []
        if workers is not None:
            for job, worker in enumerate(workers):
                queues[worker].append(job)
        for queue in queues:
            queue.reverse()             # pop() from the end takes them in order
        shared.reverse()
        busy: dict[Connection, tuple[int, int]] = {}        # conn -> (worker, job)
        failure: BaseException | None = None

        def feed(worker: int) -> None:
            queue = queues[worker] if workers is not None else shared
            if queue and failure is None:
                job = queue.pop()
                self._send(worker, jobs[job])
                busy[self._conns[worker]] = (worker, job)

        for worker in range(self.workers):
            feed(worker)
        while busy:
            for conn in wait(list(busy)):
                worker, job = busy.pop(conn)
                try:
                    status, value = conn.recv()
                except (EOFError, OSError):
                    self._died(worker, jobs[job][0])
                if status == "ok":
                    results[job] = value
                elif failure is None:
                    failure = _rebuilt(value)
                feed(worker)
        if failure is not None:
            raise failure
        return results

    def _send(self, worker: int, message: tuple[str, tuple]) -> None:
        try:
            self._conns[worker].send(message)
        except (BrokenPipeError, ConnectionResetError):
            self._died(worker, message[0])

    def _died(self, worker: int, what: str):
        proc = self._procs[worker]
        try:
            code = proc.wait(_JOIN_SECONDS)
        except subprocess.TimeoutExpired:
            code = None
        self.close()
        how = f"exit code {code}" if code is None or code >= 0 else f"signal {-code}"
        raise WorkerDied(f"worker process {worker} (pid {proc.pid}) died ({how}) during '{what}'; "
                         f"its work is lost, the engine is closed")


def _chunks(n: int, parts: int) -> list[tuple[int, int]]:
    """``n`` items cut into at most ``parts`` contiguous (start, stop) ranges of near-equal size."""
    parts = max(1, min(parts, n))
    size, extra = divmod(n, parts)
    bounds, start = [], 0
    for i in range(parts):
        stop = start + size + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def _rebuilt(payload: tuple[Any, str]) -> BaseException:
    error, remote = payload
    error.__cause__ = RemoteTraceback(remote)
    return error


# ---- the worker side --------------------------------------------------------------------------
def _serve(fd: int) -> None:
    """A worker's main loop, on the socket ``fd`` the coordinator handed down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    try:
        sys.path[:] = conn.recv()
    except (EOFError, OSError):
        return
    objects: dict[int, Any] = {}
    while True:
        try:
            kind, args = conn.recv()
        except (EOFError, OSError):
            return                      # the coordinator is gone
        if kind == "stop":
            return
        try:
            reply = ("ok", _handle(objects, kind, args))
        except BaseException as error:          # noqa: BLE001 - every error goes back to the coordinator
            reply = ("err", _portable(error))
        try:
            conn.send(reply)
        except Exception as error:              # noqa: BLE001 - e.g. a result that cannot be pickled
            conn.send(("err", _portable(error)))


def _handle(objects: dict[int, Any], kind: str, args: tuple) -> Any:
    if kind == "map":
        fn, items = args
        return [fn(item) for item in items]
    if kind == "new":
        key, cls, init_args = args
        objects[key] = cls(*init_args)
        return None
    if kind == "call":
        key, method, call_args = args
        return getattr(objects[key], method)(*call_args)
    if kind == "rss":
        return own_peak_rss()
    raise ValueError(f"unknown request {kind!r}")


def _portable(error: BaseException) -> tuple[BaseException, str]:
    """The error and its formatted traceback, as something that survives pickling: an exception whose
    class or arguments cannot be pickled becomes a RuntimeError naming it."""
    import pickle

    remote = f"in worker pid {os.getpid()}:\n" + "".join(
        traceback.format_exception(type(error), error, error.__traceback__))
    try:
        pickle.loads(pickle.dumps(error))
        return error, remote
    except Exception:                           # noqa: BLE001
        return RuntimeError(f"{type(error).__name__}: {error}"), remote
