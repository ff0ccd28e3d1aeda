"""The outbound token buckets: per (platform, app, API), in-process and in Redis."""

from __future__ import annotations

import pytest

from bot.config_outbound import OutboundSettings
from bot.outbox.ratelimit import MemoryBuckets, RedisBuckets, make_limiter, reserve
from storage.cache import MemoryCache, RedisCache
from storage.keys import KeyBuilder
from tests.conftest import TEST_REDIS

API = "cgi-bin/message/custom/send"
SETTINGS = OutboundSettings(rate_per_second=10, rates={f"oa:{API}": 4})


class Clock:
    """Seconds that move only when told, and the sleeps asked for (which move them)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Record the wait and let that much time pass."""
        self.slept.append(round(seconds, 3))
        self.now += seconds


def test_reserve_refills_at_the_rate_up_to_the_burst() -> None:
    tokens, at, wait = reserve(0.0, 0.0, 10.0, rate=2, burst=4)
    assert (tokens, at, wait) == (3.0, 10.0, 0.0)  # ten idle seconds refill only four
    tokens, at, wait = reserve(-1.0, 10.0, 10.0, rate=2, burst=4)
    assert (tokens, wait) == (-2.0, 1.0)  # two tokens owed: the second in a second


async def _burst_then_pace(buckets: MemoryBuckets | RedisBuckets, clock: Clock) -> None:
    waits = [await buckets.acquire("oa", "wxapp", API) for _ in range(6)]
    assert waits[:4] == [0, 0, 0, 0]  # one second's worth at once
    assert [round(w, 3) for w in waits[4:]] == [0.25, 0.25]  # then 4 a second
    assert clock.slept == [0.25, 0.25]


async def test_memory_buckets_burst_then_pace_each_api_and_app_apart() -> None:
    clock = Clock()
    buckets = MemoryBuckets(SETTINGS, clock, clock.sleep)
    await _burst_then_pace(buckets, clock)
    assert await buckets.acquire("oa", "wxother", API) == 0  # another app: its own bucket
    other_api = [await buckets.acquire("oa", "wxapp", "cgi-bin/message/template/send")]
    assert other_api == [0]  # the default rate, its own bucket
    clock.now += 10
    assert await buckets.acquire("oa", "wxapp", API) == 0  # refilled while idle


def test_make_limiter_uses_memory_without_redis() -> None:
    limiter = make_limiter(SETTINGS, MemoryCache(), KeyBuilder())
    assert isinstance(limiter, MemoryBuckets)


@pytest.mark.redis
async def test_redis_buckets_are_one_bucket_for_every_process() -> None:
    cache = RedisCache(TEST_REDIS)
    keys = KeyBuilder(prefix="t-bucket-" + str(id(cache)))
    clock = Clock()
    try:
        first = make_limiter(SETTINGS, cache, keys, clock, clock.sleep)
        second = RedisBuckets(cache, keys, SETTINGS, clock, clock.sleep)
        assert isinstance(first, RedisBuckets)
        await _burst_then_pace(first, clock)
        # the other process sees the same bucket: two tokens owed, each 0.25 s apart
        assert round(await second.acquire("oa", "wxapp", API), 3) == 0.25
        clock.now += 10
        assert await second.acquire("oa", "wxapp", API) == 0
    finally:
        await cache.close()


async def _window_then_pace(buckets: MemoryBuckets | RedisBuckets, clock: Clock) -> None:
    # a window of 3 from the full bucket goes at once; the next window of 3 owes 2 tokens
    # and waits for the last of them; a single call after it owes a third
    assert await buckets.acquire_many("oa", "wxapp", API, 3) == 0
    assert round(await buckets.acquire_many("oa", "wxapp", API, 3), 3) == 0.5
    assert round(await buckets.acquire("oa", "wxapp", API), 3) == 0.25
    assert clock.slept == [0.5, 0.25]  # the pace of one reservation per token: 4 a second


async def test_memory_buckets_reserve_a_window_in_one_go_at_the_same_pace() -> None:
    clock = Clock()
    await _window_then_pace(MemoryBuckets(SETTINGS, clock, clock.sleep), clock)


@pytest.mark.redis
async def test_redis_buckets_reserve_a_window_in_one_script_call() -> None:
    cache = RedisCache(TEST_REDIS)
    keys = KeyBuilder(prefix="t-window-" + str(id(cache)))
    clock = Clock()
    try:
        await _window_then_pace(RedisBuckets(cache, keys, SETTINGS, clock, clock.sleep), clock)
    finally:
        await cache.close()
