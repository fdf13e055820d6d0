"""Client-side rate limiting shared by every request of one teacher.

* ``--rpm`` / ``--tpm`` are token buckets refilled continuously; a request takes 1 from the request
  bucket and its *estimated* tokens (prompt estimate + max_tokens, as OpenAI counts them) from the
  token bucket before it is sent, and the estimate is corrected by the usage the server returns.
* The buckets hold one second's worth (at least one request), so sends are paced evenly instead of
  bursting a minute's allowance at start-up; a request larger than the bucket may still go once the
  bucket is full, leaving a debt later requests pay off (the long-run rate is kept).
* A 429 pauses the whole pool: ``pause(seconds)`` sets a shared resume time that every ``acquire``
  waits for, so one rate-limit answer does not become N workers each hammering on their own.
* ``observe(headers)`` reads ``x-ratelimit-remaining-*`` / ``x-ratelimit-reset-*``: when the server says
  the window is spent, the pool pauses until it resets, and the buckets never hold more than the
  server says remains.

The clock and sleep are injectable so tests can run on virtual time.
"""
from __future__ import annotations

import asyncio
import random
import re
import time
from typing import Awaitable, Callable, Mapping

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class TokenBucket:
    def __init__(self, per_minute: float, clock: Clock = time.monotonic, burst_s: float = 1.0):
        if per_minute <= 0:
            raise ValueError("a rate limit must be positive")
        self.rate = per_minute / 60.0                     # tokens per second
        self.capacity = max(1.0, self.rate * burst_s)
        self._clock = clock
        self.level = self.capacity
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self.level = min(self.capacity, self.level + (now - self._stamp) * self.rate)
        self._stamp = now

    def wait_s(self, amount: float) -> float:
        """Seconds until ``amount`` may be taken (requests larger than the bucket wait for a full one)."""
        self._refill()
        need = min(amount, self.capacity) - self.level
        return 0.0 if need <= 0 else need / self.rate

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= amount

    def give(self, amount: float) -> None:
        self._refill()
        self.level = min(self.capacity, self.level + amount)

    def cap(self, remaining: float) -> None:
        """The server says only ``remaining`` are left in its window: hold no more than that."""
        self._refill()
        self.level = min(self.level, remaining)


class RateLimiter:
    def __init__(self, rpm: float | None = None, tpm: float | None = None,
                 clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep):
        self.rpm, self.tpm = rpm, tpm
        self._requests = TokenBucket(rpm, clock) if rpm else None
        self._tokens = TokenBucket(tpm, clock) if tpm else None
        self._clock, self._sleep = clock, sleep
        self._resume_at = 0.0
        self._lock = asyncio.Lock()
        self.pauses = 0                 # times the pool was paused (429s and spent windows)
        self.paused_s = 0.0             # total pause time requested (overlaps merged)

    def _wait_s(self, tokens: float) -> float:
        wait = self._resume_at - self._clock()
        if self._requests:
            wait = max(wait, self._requests.wait_s(1))
        if self._tokens:
            wait = max(wait, self._tokens.wait_s(tokens))
        return wait

    async def acquire(self, tokens: float) -> None:
        """Wait for the shared pause, then for room in both buckets; first come, first served."""
        if not self._requests and not self._tokens and self._clock() >= self._resume_at:
            return                      # nothing to wait for: no lock, no await
        async with self._lock:
            while (wait := self._wait_s(tokens)) > 0:
                await self._sleep(wait)
            if self._requests:
                self._requests.take(1)
            if self._tokens:
                self._tokens.take(tokens)

    def settle(self, estimated: float, actual: float) -> None:
        """Correct the token bucket once the server has said what the request really used."""
        if self._tokens and actual != estimated:
            if actual < estimated:
                self._tokens.give(estimated - actual)
            else:
                self._tokens.take(actual - estimated)

    def pause(self, seconds: float) -> None:
        """Hold every send of the pool for ``seconds`` from now (extends, never shortens, a pause)."""
        until = self._clock() + seconds
        if until > self._resume_at:
            self.pauses += 1
            self.paused_s += until - max(self._resume_at, self._clock())
            self._resume_at = until

    def observe(self, headers: Mapping[str, str], tokens_needed: float = 1.0) -> None:
        """Adapt to ``x-ratelimit-*`` headers of a response (absent headers change nothing)."""
        left_req = _number(headers.get("x-ratelimit-remaining-requests"))
        left_tok = _number(headers.get("x-ratelimit-remaining-tokens"))
        if left_req is not None:
            if self._requests:
                self._requests.cap(left_req)
            if left_req < 1:
                self.pause(duration_s(headers.get("x-ratelimit-reset-requests")) or 1.0)
        if left_tok is not None:
            if self._tokens:
                self._tokens.cap(left_tok)
            if left_tok < tokens_needed:
                self.pause(duration_s(headers.get("x-ratelimit-reset-tokens")) or 1.0)


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def backoff_s(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential back-off with full jitter: uniform in [0, min(cap, base * 2**(attempt-1))]."""
    return (rng or random).uniform(0.0, min(cap, base * 2 ** (attempt - 1)))


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def duration_s(text: str | None) -> float | None:
    """``x-ratelimit-reset-*`` values: "1s", "6m0s", "20ms", "1h2m3.5s", or plain seconds."""
    if not text:
        return None
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)
