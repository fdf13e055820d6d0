"""Rate limiting on virtual time: a fake clock whose sleep advances it, so the assertions are about
when (in virtual seconds) each send was allowed, not about how fast this machine is."""
from __future__ import annotations

import asyncio
import random
from email.utils import format_datetime
from datetime import datetime, timezone

import pytest

from selfinstruct.ratelimit import RateLimiter, backoff_s, duration_s
from selfinstruct.teachers._http import retry_after_s


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await asyncio.sleep(0)


def send_times(limiter: RateLimiter, clock: FakeClock, tokens: list[float]) -> list[float]:
    """Start one acquire per entry at once; return the virtual time each was let through."""
    async def main():
        times = []

        async def one(n):
            await limiter.acquire(n)
            times.append(round(clock.t, 6))
        await asyncio.gather(*(one(n) for n in tokens))
        return times
    return asyncio.run(main())


def test_rpm_paces_sends_evenly_after_one_seconds_burst():
    clock = FakeClock()
    limiter = RateLimiter(rpm=120, clock=clock, sleep=clock.sleep)     # 2 per second
    assert send_times(limiter, clock, [1] * 6) == [0, 0, 0.5, 1.0, 1.5, 2.0]


def test_tpm_waits_for_the_estimated_tokens_and_gets_unused_ones_back():
    clock = FakeClock()
    limiter = RateLimiter(tpm=6000, clock=clock, sleep=clock.sleep)    # 100 tokens per second
    assert send_times(limiter, clock, [60, 60]) == [0, 0.2]
    limiter.settle(estimated=60, actual=20)                            # 40 were not used
    assert send_times(limiter, clock, [40]) == [0.2]
    limiter.settle(estimated=40, actual=140)                           # 100 more than estimated
    assert send_times(limiter, clock, [100]) == [2.2]


def test_a_request_larger_than_the_bucket_goes_when_it_is_full_and_leaves_a_debt():
    clock = FakeClock()
    limiter = RateLimiter(tpm=6000, clock=clock, sleep=clock.sleep)
    assert send_times(limiter, clock, [300, 100]) == [0, 3.0]


def test_a_pause_holds_every_send_of_the_pool_until_it_ends():
    clock = FakeClock()
    limiter = RateLimiter(clock=clock, sleep=clock.sleep)              # no rpm/tpm at all
    limiter.pause(5.0)
    limiter.pause(2.0)                                                 # never shortens a pause
    assert send_times(limiter, clock, [1] * 3) == [5.0, 5.0, 5.0]
    assert (limiter.pauses, limiter.paused_s) == (1, 5.0)


def test_a_spent_server_window_pauses_the_pool_until_its_reset():
    clock = FakeClock()
    limiter = RateLimiter(clock=clock, sleep=clock.sleep)
    limiter.observe({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m30s"})
    assert send_times(limiter, clock, [1]) == [90.0]
    limiter.observe({"x-ratelimit-remaining-tokens": "50", "x-ratelimit-reset-tokens": "250ms"},
                    tokens_needed=80)
    assert send_times(limiter, clock, [80]) == [90.25]


def test_headers_with_room_left_change_nothing_but_cap_the_buckets():
    clock = FakeClock()
    limiter = RateLimiter(rpm=600, clock=clock, sleep=clock.sleep)     # 10 per second, bucket 10
    limiter.observe({"x-ratelimit-remaining-requests": "2", "x-ratelimit-reset-requests": "9s"})
    assert send_times(limiter, clock, [1] * 3) == [0, 0, 0.1]
    assert limiter.pauses == 0


@pytest.mark.parametrize("text, seconds", [
    ("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0.5", 0.5),
    ("", None), ("soon", None), ("5x", None),
])
def test_reset_durations_are_read_like_openai_writes_them(text, seconds):
    assert duration_s(text) == seconds


def test_retry_after_is_read_from_ms_seconds_or_an_http_date():
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    in_ten = format_datetime(now.replace(second=10), usegmt=True)
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_s({"retry-after": "3"}) == 3.0
    assert retry_after_s({"retry-after": in_ten}, now=now.timestamp()) == 10.0
    assert retry_after_s({"retry-after": in_ten}, now=now.timestamp() + 60) == 0.0
    assert retry_after_s({"retry-after": "100000"}) == 300.0
    assert retry_after_s({"retry-after": "whenever"}) is None
    assert retry_after_s({}) is None


class Highest(random.Random):
    def uniform(self, a, b):
        return b


def test_backoff_is_full_jitter_under_a_doubling_ceiling():
    assert [backoff_s(a, 0.5, 6.0, Highest()) for a in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 6.0]
    rng = random.Random(7)
    draws = [backoff_s(3, 0.5, 6.0, rng) for _ in range(200)]
    assert min(draws) >= 0.0 and max(draws) <= 2.0 and len(set(draws)) == 200
