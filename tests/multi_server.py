"""Several loopback OpenAI-compatible servers at once (tests/fake_openai_server.py's ``FakeOpenAI``,
each on its own thread), for the endpoint-pool tests.

``CountedServer`` adds what one server cannot see: the requests in flight across all of them
(``Shared.in_flight`` / ``Shared.peak``), and the global arrival order (``Shared.arrivals``: the
server index of every completion request, in the order they came), so a test can split a run into
phases and count each server's share in each.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

from tests.fake_openai_server import Behaviour, FakeOpenAI, serve_in_thread, server_error


class Shared:
    """Counters shared by the servers of one test (each server runs on its own thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.arrivals: list[int] = []      # server index per completion request, in arrival order

    def moved(self, delta: int) -> None:
        with self.lock:
            self.in_flight += delta
            self.peak = max(self.peak, self.in_flight)

    def arrived(self, index: int) -> int:
        """Records an arrival at server ``index``; returns its place in the global order."""
        with self.lock:
            self.arrivals.append(index)
            return len(self.arrivals) - 1


class CountedServer(FakeOpenAI):
    """A FakeOpenAI whose in-flight count also moves ``shared``'s, and whose completion requests
    are numbered in the global arrival order; ``failing(place)`` says whether the request at that
    place gets a 503 (default: never)."""

    def __init__(self, index: int, shared: Shared, failing=None, **options: Any):
        self.index, self.shared = index, shared
        self.failing = failing or (lambda place: False)
        self._own_in_flight = 0
        super().__init__(**options)
        self.responder = self._respond

    # FakeOpenAI's connections do ``server.in_flight += 1`` / ``-= 1`` on their server
    @property
    def in_flight(self) -> int:                    # type: ignore[override]
        return self._own_in_flight

    @in_flight.setter
    def in_flight(self, value: int) -> None:
        delta = value - self.__dict__.get("_own_in_flight", 0)
        self._own_in_flight = value
        if delta and "shared" in self.__dict__:
            self.shared.moved(delta)

    def _respond(self, body: Any, n: int) -> Behaviour | None:
        place = self.shared.arrived(self.index)
        return server_error(503) if self.failing(place) else None


@contextlib.contextmanager
def servers(count: int, latencies: list[float] | None = None, failing: dict[int, Any] | None = None,
            **options: Any) -> Iterator[tuple[list[CountedServer], Shared]]:
    """``count`` servers (``latencies[i]`` each; ``failing[i]`` a predicate on the global arrival
    place), all serving for the duration of the block."""
    shared = Shared()
    latencies = latencies or [0.0] * count
    failing = failing or {}
    made = [CountedServer(i, shared, failing.get(i), latency=latencies[i], **options)
            for i in range(count)]
    with contextlib.ExitStack() as stack:
        for server in made:
            stack.enter_context(serve_in_thread(server))
        yield made, shared


def received(server: FakeOpenAI) -> int:
    """Completion requests ``server`` received."""
    return len(server.received("completions"))
