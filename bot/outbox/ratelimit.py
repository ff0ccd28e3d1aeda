"""Global token buckets per (platform, app id, API): the outbound engine's pace.

Each call reserves one token (a window of calls: its tokens in one reservation,
``acquire_many``); when the bucket is empty the reservation still succeeds
and says how long to wait (the token is the caller's after that wait), so one round trip
per call and no polling. With Redis one Lua script keeps the bucket, atomically, for
every process of a deployment; without Redis the bucket lives in this process (the
embedded default runs one sender). A bucket holds one second of its rate (at least one
token), so an idle API may start with a burst of that size.

Time comes from the injected wall clock (seconds since the epoch, the same on every host
within clock skew); waiting uses the injected sleep.
"""

from __future__ import annotations

import asyncio
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Protocol

from bot.coalesce import Coalescer
from bot.config_outbound import OutboundSettings
from storage.cache import Cache, RedisCache
from storage.keys import KeyBuilder

Now = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

_RESERVE = """
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 't', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate)
  at = now
end
local before = tokens
tokens = tokens - tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 't', string.format('%.6f', tokens), 'at', string.format('%.6f', at))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return string.format('%.6f', before)
"""


class RateLimiter(Protocol):
    """Paces calls of one API of one app."""

    async def acquire(self, platform: str, app_id: str, api: str) -> float:
        """Wait for this call's token; returns the seconds waited."""

    async def acquire_many(self, platform: str, app_id: str, api: str, count: int) -> float:
        """Wait until the last of ``count`` tokens is due (one reservation); seconds waited."""

    def burst(self, platform: str, api: str) -> int:
        """The most whole tokens the bucket holds: calls that may go out at once."""


def reserve(
    tokens: float, at: float, now: float, rate: float, burst: float
) -> tuple[float, float, float]:
    """One reservation: (tokens left, as of when, seconds to wait for the token)."""
    if now > at:
        tokens, at = min(burst, tokens + (now - at) * rate), now
    tokens -= 1
    return tokens, at, (0.0 if tokens >= 0 else -tokens / rate)


def _burst(rate: float) -> float:
    """A bucket holds one second of its rate, at least one token."""
    return max(1.0, rate)


class _Buckets(ABC):
    def __init__(self, settings: OutboundSettings, now: Now, sleep: Sleep) -> None:
        self.settings = settings
        self.now = now
        self.sleep = sleep

    async def acquire(self, platform: str, app_id: str, api: str) -> float:
        """Reserve a token of this API's bucket and wait until it is due."""
        rate = self.settings.rate(platform, api)
        wait = await self._reserve((platform, app_id, api), rate, _burst(rate))
        if wait > 0:
            await self.sleep(wait)
        return wait

    async def acquire_many(self, platform: str, app_id: str, api: str, count: int) -> float:
        """Reserve ``count`` tokens at once and wait until the last of them is due."""
        rate = self.settings.rate(platform, api)
        wait = await self._reserve_count((platform, app_id, api), rate, _burst(rate), count)
        if wait > 0:
            await self.sleep(wait)
        return wait

    def burst(self, platform: str, api: str) -> int:
        """One second of the API's rate, whole tokens, at least one."""
        return max(1, math.floor(_burst(self.settings.rate(platform, api))))

    @abstractmethod
    async def _reserve(self, name: tuple[str, str, str], rate: float, burst: float) -> float:
        """Take one token; the seconds until it is due (0: now)."""

    @abstractmethod
    async def _reserve_count(
        self, name: tuple[str, str, str], rate: float, burst: float, count: int
    ) -> float:
        """Take ``count`` tokens; the seconds until the last of them is due."""


class MemoryBuckets(_Buckets):
    """The buckets of this process (no Redis: one sender per database)."""

    def __init__(
        self, settings: OutboundSettings, now: Now = time.time, sleep: Sleep = asyncio.sleep
    ) -> None:
        super().__init__(settings, now, sleep)
        self._state: dict[tuple[str, str, str], tuple[float, float]] = {}

    async def _reserve(self, name: tuple[str, str, str], rate: float, burst: float) -> float:
        now = self.now()
        tokens, at = self._state.get(name, (burst, now))
        tokens, at, wait = reserve(tokens, at, now, rate, burst)
        self._state[name] = (tokens, at)
        return wait

    async def _reserve_count(
        self, name: tuple[str, str, str], rate: float, burst: float, count: int
    ) -> float:
        wait = 0.0
        for _ in range(count):
            wait = await self._reserve(name, rate, burst)
        return wait


class RedisBuckets(_Buckets):
    """Buckets in Redis, shared by every process (one atomic script per reservation).

    Calls of one bucket that ask at the same time share one script call: it takes as
    many tokens as there are callers, atomically, and the i-th caller waits for the
    i-th of them (:class:`bot.coalesce.Coalescer`), so the bucket's pace is the
    same as with one script call per token.
    """

    def __init__(
        self,
        cache: RedisCache,
        keys: KeyBuilder,
        settings: OutboundSettings,
        now: Now = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(settings, now, sleep)
        self.keys = keys
        self._script = cache.script(_RESERVE)
        self._shared: dict[tuple[str, str, str], Coalescer[tuple[float, float], float]] = {}

    async def _reserve(self, name: tuple[str, str, str], rate: float, burst: float) -> float:
        shared = self._shared.get(name)
        if shared is None:

            async def reserve_many(items: list[tuple[float, float]]) -> list[float]:
                return await self._reserve_many(name, items)

            shared = self._shared[name] = Coalescer(reserve_many)
        return await shared.submit((rate, burst))

    async def _reserve_count(
        self, name: tuple[str, str, str], rate: float, burst: float, count: int
    ) -> float:
        return max(await self._reserve_many(name, [(rate, burst)] * count))

    async def _reserve_many(
        self, name: tuple[str, str, str], items: list[tuple[float, float]]
    ) -> list[float]:
        """Take ``len(items)`` tokens in one script call; each caller's wait, in order."""
        rate, burst = items[0]
        key = self.keys.rate_bucket(*name)
        args: list[str | int] = [
            f"{self.now():.6f}",
            repr(rate),
            repr(burst),
            key.ttl * 1000,
            len(items),
        ]
        before = float(await self._script(keys=[key.name], args=args))
        return [max(0.0, (i + 1 - before) / rate) for i in range(len(items))]


def make_limiter(
    settings: OutboundSettings,
    cache: Cache,
    keys: KeyBuilder,
    now: Now = time.time,
    sleep: Sleep = asyncio.sleep,
) -> RateLimiter:
    """Redis buckets when the cache is Redis, else in-process buckets."""
    if isinstance(cache, RedisCache):
        return RedisBuckets(cache, keys, settings, now, sleep)
    return MemoryBuckets(settings, now, sleep)
