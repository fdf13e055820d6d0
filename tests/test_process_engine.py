"""ProcessEngine (``filter --workers N``): the engine contract on spawned worker processes — map keeps
input order, actors keep state in their own process (round-robin over workers), call runs them at
once, peak_rss is each worker's own, a worker's exception surfaces with its traceback, a worker
that dies is an error rather than a hang, and close is idempotent."""
import os
import signal

import pytest

from selfinstruct.engines import EngineSettings, open_engine
from selfinstruct.engines.local import ProcessEngine, RemoteTraceback, WorkerDied, _chunks


# Functions and classes the workers run: module-level, so they pickle by reference.
def square(x):
    return x * x


def pid_of(_):
    return os.getpid()


def fail_on_seven(x):
    if x == 7:
        raise ValueError(f"seven is not allowed (got {x})")
    return x


def die(_):
    os.kill(os.getpid(), signal.SIGKILL)


def unpicklable_result(_):
    return lambda: None


class Counter:
    def __init__(self, start):
        self.total = start

    def add(self, n):
        self.total += n
        return self.total

    def pid(self):
        return os.getpid()

    def grow(self, megabytes):
        self.ballast = bytearray(megabytes * 1024 * 1024)
        self.ballast[::4096] = b"x" * len(self.ballast[::4096])     # touch every page
        return len(self.ballast)

    def boom(self):
        raise KeyError("no such shard")


@pytest.fixture(scope="module")
def engine():
    eng = ProcessEngine(2)
    yield eng
    eng.close()


def test_map_returns_results_in_input_order_and_uses_every_worker(engine):
    items = list(range(1000))
    assert engine.map(square, items) == [x * x for x in items]
    assert engine.map(square, []) == []
    assert engine.map(square, [3]) == [9]
    pids = set(engine.map(pid_of, range(64)))
    assert os.getpid() not in pids and len(pids) == 2


def test_chunks_cover_every_item_once_in_order():
    for n in (1, 2, 7, 8, 9, 1000):
        for parts in (1, 3, 8):
            bounds = _chunks(n, parts)
            assert [i for a, b in bounds for i in range(a, b)] == list(range(n))
            assert len(bounds) == min(parts, n)
            sizes = [b - a for a, b in bounds]
            assert max(sizes) - min(sizes) <= 1


def test_actors_are_placed_round_robin_and_keep_their_state(engine):
    counters = engine.actors(Counter, [(0,), (100,), (1000,)])
    assert [a.worker for a in counters] == [0, 1, 0]
    pids = engine.call([(a, "pid", ()) for a in counters])
    assert pids[0] == pids[2] != pids[1] and os.getpid() not in pids
    assert engine.call([(a, "add", (1,)) for a in counters]) == [1, 101, 1001]
    # Two calls to one actor in one batch run in the order given.
    assert engine.call([(counters[1], "add", (5,)), (counters[1], "add", (5,)),
                        (counters[0], "add", (2,))]) == [106, 111, 3]


def test_peak_rss_is_each_workers_own():
    # The coordinator is large when the workers start (as a test process is after loading torch): a
    # worker must not report the coordinator's peak as its own.
    parent_ballast = bytearray(400 * 2**20)
    parent_ballast[::4096] = b"x" * len(parent_ballast[::4096])
    eng = ProcessEngine(2)        # fresh workers: their peaks are only what this test makes them do
    try:
        ballast = eng.actors(Counter, [(0,), (0,)])
        before = eng.peak_rss()
        assert len(before) == 2 and all(rss > 0 for rss in before)
        eng.call([(ballast[0], "grow", (200,))])
        after = eng.peak_rss()
        assert after[0] - before[0] >= 150 * 2**20      # the worker that grew...
        assert after[1] - before[1] < 50 * 2**20        # ...and only it
        assert after[1] < 300 * 2**20                   # not the coordinator's 400 MB
    finally:
        eng.close()
        del parent_ballast


def test_a_worker_exception_surfaces_with_its_traceback_and_the_engine_stays_usable(engine):
    with pytest.raises(ValueError, match="seven is not allowed") as raised:
        engine.map(fail_on_seven, range(40))
    assert isinstance(raised.value.__cause__, RemoteTraceback)
    assert "fail_on_seven" in str(raised.value.__cause__)
    counter = engine.actors(Counter, [(0,)])[0]
    with pytest.raises(KeyError, match="no such shard"):
        engine.call([(counter, "boom", ())])
    with pytest.raises(AttributeError):
        engine.call([(counter, "no_such_method", ())])
    with pytest.raises(Exception, match="pickle"):
        engine.map(unpicklable_result, [1, 2])
    # Every reply of the failed rounds was read: the next calls get their own answers.
    assert engine.map(square, range(10)) == [x * x for x in range(10)]
    assert engine.call([(counter, "add", (4,))]) == [4]


def test_a_worker_that_dies_is_an_error_not_a_hang():
    eng = ProcessEngine(2)
    try:
        with pytest.raises(WorkerDied, match="signal 9"):
            eng.map(die, [1])
        with pytest.raises(RuntimeError, match="closed"):
            eng.map(square, [1])
    finally:
        eng.close()
    assert all(p.poll() is not None for p in eng._procs)


def test_close_twice_is_fine_and_stops_every_worker():
    eng = ProcessEngine(2)
    procs = list(eng._procs)
    assert all(p.poll() is None for p in procs)
    eng.close()
    eng.close()
    assert all(p.poll() is not None for p in procs)


def test_open_engine_gives_a_process_engine_for_several_local_workers():
    with open_engine(EngineSettings("local", 2)) as eng:
        assert isinstance(eng, ProcessEngine) and eng.workers == 2 and eng.name == "local"
        assert eng.map(square, [1, 2, 3]) == [1, 4, 9]
        procs = list(eng._procs)
    assert all(p.poll() is not None for p in procs)
