"""The endpoint pool of ``--teacher openai``: several OpenAI-compatible servers behind one teacher.

Given by ``--base-url`` repeated or ``--endpoints FILE`` (one endpoint a line: ``URL [model=NAME]
[key_env=VARIABLE]``, ``#`` comments and blank lines allowed). The teacher asks the pool for an
endpoint before each *attempt* (not each request), so a retry may go elsewhere:

* **Routing**: the healthy endpoint with the fewest attempts in flight, ties to the first in order.
  A slow server holds its attempts longer, so it is chosen less often: the load follows each
  server's speed without measuring it. The teacher's ``--concurrency`` still bounds the total.
* **Health**: ``FAILURES_TO_PAUSE`` transient failures in a row (5xx, timeouts, connection errors,
  bodies that do not decode; not a 429, which is the rate limiter's business) pause an endpoint for
  ``backoff_s(n)`` (exponential with full jitter, the teacher's back-off base and cap), n counting the
  pauses since it last answered. When the pause ends the endpoint is *probed*: it gets one attempt
  while another endpoint is healthy; an answer makes it healthy again, a failure pauses it longer.
  A retry avoids the endpoint that just failed when another one can take it.
* **All down**: while no endpoint is healthy, attempts wait for the earliest end of a pause instead
  of failing at once, then go to the endpoints being probed (there is nowhere else for them to go,
  and one probe at a time would let the run's stop rule take tens of minutes to fire).
  ``all_down()`` is what the run's "failed N requests in a row" rule asks before it stops.
* **One endpoint** behaves as the teacher always has: never paused, ``all_down()`` always true.

Per-endpoint figures (attempts, answers, failures, pauses, latency) go to summary.json keyed by the
URL without credentials.
"""
from __future__ import annotations

import asyncio
import os
from array import array
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from yarl import URL

from selfinstruct.errors import InputError, UsageError
from selfinstruct.ratelimit import backoff_s

# Failures in a row that pause an endpoint. One failure is noise (a dropped connection, a replica
# restarting a worker); three in a row, with retries spread over the other endpoints meanwhile, is a
# server that is down or overloaded, and every further attempt on it costs a request its back-off.
FAILURES_TO_PAUSE = 3

FIELDS = ("model", "key_env")


@dataclass(frozen=True)
class EndpointSpec:
    """One endpoint as the user gave it."""
    url: str
    model: str
    api_key: str | None              # None: no Authorization header (a local server)


def shown_url(url: str) -> str:
    """``url`` without user:password@ (the key never reaches summary.json or a log)."""
    return str(URL(url).with_user(None))


def parse_endpoints_file(path: str, default_model: str, default_key: str | None) -> list[EndpointSpec]:
    """The endpoints of ``--endpoints FILE``; a bad line is an ``InputError`` naming ``FILE:line``."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise UsageError(f"--endpoints {path}: cannot read it ({e.strerror or e})") from None
    specs: list[EndpointSpec] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        spec = _parse_line(text, path, number, default_model, default_key)
        same = _identity(spec.url)
        if same in seen:
            raise InputError(f"duplicate endpoint {shown_url(spec.url)} (also on line {seen[same]})",
                             path, number)
        seen[same] = number
        specs.append(spec)
    if not specs:
        raise InputError("no endpoint in the file (one URL a line: URL [model=NAME] [key_env=VARIABLE])",
                         path)
    return specs


def _parse_line(text: str, path: str, number: int, default_model: str,
                default_key: str | None) -> EndpointSpec:
    url, *rest = text.split()
    if "=" in url or not _is_http_url(url):
        raise InputError(f"expected a URL (http:// or https://) first, got '{url}'", path, number)
    values: dict[str, str] = {}
    for item in rest:
        name, eq, value = item.partition("=")
        if not eq or name not in FIELDS:
            raise InputError(f"unknown field '{item}' (fields: model=NAME, key_env=VARIABLE)", path, number)
        if not value:
            raise InputError(f"{name}= needs a value", path, number)
        if name in values:
            raise InputError(f"{name}= given twice", path, number)
        values[name] = value
    api_key = default_key
    if "key_env" in values:
        variable = values["key_env"]
        if variable not in os.environ:
            raise InputError(f"key_env={variable}: the variable is not set", path, number)
        api_key = os.environ[variable] or None
    return EndpointSpec(url, values.get("model", default_model), api_key)


def _identity(url: str) -> str:
    """What makes two endpoints the same one: the URL as summary.json shows it, less a final /."""
    return shown_url(url).rstrip("/")


def _is_http_url(text: str) -> bool:
    try:
        url = URL(text)
    except ValueError:
        return False
    return url.scheme in ("http", "https") and bool(url.host)


def specs_from_urls(urls: list[str], model: str, api_key: str | None) -> list[EndpointSpec]:
    """``--base-url`` given several times: the same model and key for each."""
    seen: set[str] = set()
    for url in urls:
        if _identity(url) in seen:
            raise UsageError(f"--base-url {shown_url(url)} is given twice")
        seen.add(_identity(url))
    return [EndpointSpec(url, model, api_key) for url in urls]


@dataclass
class Endpoint:
    """One endpoint of the pool with its health and its figures."""
    spec: EndpointSpec
    index: int
    shown: str
    in_flight: int = 0
    failures_in_row: int = 0
    pauses_in_row: int = 0           # > 0: not healthy (paused, or probed once its pause ends)
    paused_until: float = 0.0
    # figures for summary.json
    requests: int = 0                # attempts sent
    answered: int = 0
    failures: int = 0                # failed attempts (transient failures, 429s and refusals included)
    abandoned: int = 0               # attempts the run stopped waiting for (it had enough)
    pauses: int = 0
    paused_s: float = 0.0
    in_flight_peak: int = 0
    # of the answered attempts (8 bytes each: a run of millions of requests keeps them all)
    latencies: array = field(default_factory=lambda: array("d"))

    @property
    def model(self) -> str:
        return self.spec.model

    @property
    def healthy(self) -> bool:
        return self.pauses_in_row == 0

    def figures(self) -> dict[str, Any]:
        return {"model": self.model, "requests": self.requests, "answered": self.answered,
                "failures": self.failures, "abandoned": self.abandoned, "pauses": self.pauses,
                "paused_s": round(self.paused_s, 3), "in_flight_peak": self.in_flight_peak,
                "latency_s": latency_summary(self.latencies)}


def latency_summary(latencies: Sequence[float]) -> dict[str, float | None]:
    if not latencies:
        return {"mean": None, "p50": None, "p90": None}
    ordered = sorted(latencies)
    return {"mean": round(sum(ordered) / len(ordered), 4), "p50": round(_quantile(ordered, 0.5), 4),
            "p90": round(_quantile(ordered, 0.9), 4)}


def _quantile(ordered: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class EndpointPool:
    """Chooses the endpoint of each attempt and keeps each one's health (see the module docstring).

    Used from one event loop; ``choose`` is the only coroutine. The clock is injectable for tests."""

    def __init__(self, specs: list[EndpointSpec], backoff_base: float = 1.0, backoff_cap: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None):
        if not specs:
            raise UsageError("no endpoint given")
        self.endpoints = [Endpoint(spec, i, shown_url(spec.url)) for i, spec in enumerate(specs)]
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self._clock = clock
        self._rng = rng or random.Random()
        self._changed: asyncio.Event | None = None    # set when an attempt ends: waiters look again

    def restart(self) -> None:
        """A new event loop (the teacher started again): waiters of the last one are gone."""
        self._changed = None

    @property
    def several(self) -> bool:
        return len(self.endpoints) > 1

    # -- choosing ----------------------------------------------------------------------------
    def pick(self, avoid: Endpoint | None = None) -> Endpoint | None:
        """The endpoint for the next attempt now, or None when every one is paused (or, while
        another is healthy, being probed already)."""
        if not self.several:
            return self.endpoints[0]
        now = self._clock()
        any_healthy = any(e.healthy for e in self.endpoints)
        candidates = [e for e in self.endpoints if self._open(e, now, any_healthy)]
        if avoid is not None and len(candidates) > 1:
            candidates = [e for e in candidates if e is not avoid]
        if not candidates:
            return None
        return min(candidates, key=lambda e: (e.in_flight, e.index))

    @staticmethod
    def _open(e: Endpoint, now: float, any_healthy: bool) -> bool:
        if e.healthy:
            return True
        if now < e.paused_until:
            return False
        # Its pause is over: probed with one attempt while others carry the traffic; with every
        # endpoint down, the waiting attempts are the probe.
        return e.in_flight == 0 or not any_healthy

    async def choose(self, avoid: Endpoint | None = None) -> Endpoint:
        """``pick``, waiting while it finds none: until an attempt ends or the earliest pause does."""
        while (chosen := self.pick(avoid)) is None:
            if self._changed is None:
                self._changed = asyncio.Event()
            changed = self._changed
            now = self._clock()
            # None means every endpoint is paused: the first pause to end, or an attempt's end (a
            # late answer heals its endpoint), is the next change
            ends = [e.paused_until - now for e in self.endpoints if e.paused_until > now]
            try:
                await asyncio.wait_for(changed.wait(), timeout=min(ends) if ends else None)
            except asyncio.TimeoutError:
                pass
        return chosen

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    # -- one attempt -------------------------------------------------------------------------
    def sent(self, e: Endpoint) -> float:
        """An attempt goes to ``e``: returns its start time for ``answered``."""
        e.requests += 1
        e.in_flight += 1
        if e.in_flight > e.in_flight_peak:
            e.in_flight_peak = e.in_flight
        return self._clock() if self.several else 0.0     # one endpoint's latency is never shown

    def answered(self, e: Endpoint, started: float) -> None:
        e.in_flight -= 1
        e.answered += 1
        if self.several:
            e.latencies.append(self._clock() - started)
        e.failures_in_row = e.pauses_in_row = 0       # it works: healthy again
        self._wake()

    def failed(self, e: Endpoint, unhealthy: bool = True) -> None:
        """A transient failure; ``unhealthy`` False for one that says nothing of the server's
        health (a 429: the rate limiter pauses the whole pool for it)."""
        e.in_flight -= 1
        e.failures += 1
        if unhealthy and self.several:
            e.failures_in_row += 1
            self._judge(e)
        self._wake()

    def refused(self, e: Endpoint) -> None:
        """A final refusal (a 4xx other than 429): the server is up, the request is wrong."""
        e.in_flight -= 1
        e.failures += 1
        self._wake()

    def abandoned(self, e: Endpoint) -> None:
        """The attempt was cancelled (the run stopped): whatever the server does with it is unseen."""
        e.in_flight -= 1
        e.abandoned += 1
        self._wake()

    def _judge(self, e: Endpoint) -> None:
        now = self._clock()
        if e.healthy:
            if e.failures_in_row >= FAILURES_TO_PAUSE:
                self._pause(e, now)
        elif now >= e.paused_until:
            self._pause(e, now)                 # a probe failed: a longer pause
        # else: an attempt sent before the pause began: the pause already counts it

    def _pause(self, e: Endpoint, now: float) -> None:
        e.pauses_in_row += 1
        e.pauses += 1
        seconds = backoff_s(e.pauses_in_row, self.backoff_base, self.backoff_cap, self._rng)
        e.paused_until = now + seconds
        e.paused_s += seconds

    # -- state -------------------------------------------------------------------------------
    def all_down(self) -> bool:
        return not self.several or not any(e.healthy for e in self.endpoints)

    def healthy_count(self) -> int:
        return sum(1 for e in self.endpoints if e.healthy)

    def has_other_healthy(self, e: Endpoint) -> bool:
        return any(other.healthy and other is not e for other in self.endpoints)

    def stats(self) -> dict[str, dict[str, Any]]:
        return {e.shown: e.figures() for e in self.endpoints}
