"""Cache.admit: the rate-limit count and the sender lock in one call, on both caches."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from bot.context import Ctx, Services, Trace
from bot.middlewares import SenderGateMiddleware
from bot.replies import Reply, TextReply
from bot.routing import Unhandled
from bot.wechat.inbound import Inbound
from storage.cache import Cache, CacheError, MemoryCache, RedisCache
from storage.keys import Key, KeyBuilder
from tests.conftest import TEST_REDIS
from tests.fakes import FakeWall
from tests.helpers import lock_is_free


class Ticks:
    """A monotonic clock moved by hand, for MemoryCache TTLs."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _keys() -> tuple[Key, Key]:
    kb = KeyBuilder(prefix=f"t{uuid.uuid4().hex[:12]}")
    return kb.rate("oa:brand:oA", 1), kb.member_lock("oa:brand:oA")


async def test_counts_up_to_the_limit_then_stops_locking(any_cache: Cache) -> None:
    rate, lock = _keys()
    seen = []
    for _ in range(3):
        async with any_cache.admit(rate, 3, lock, 1.0) as admission:
            seen.append(admission.count)
            assert not await lock_is_free(any_cache, lock)  # held within the limit
    async with any_cache.admit(rate, 3, lock, 1.0) as admission:
        seen.append(admission.count)
        assert await lock_is_free(any_cache, lock)  # past the limit nothing is locked
    assert seen == [1, 2, 3, 4]
    assert await any_cache.incr(rate) == 5  # the same counter incr() sees


async def test_lock_held_is_busy_after_the_wait_and_the_count_still_taken(
    any_cache: Cache,
) -> None:
    rate, lock = _keys()
    async with any_cache.admit(rate, 10, lock, 1.0):
        with pytest.raises(CacheError):
            async with any_cache.admit(rate, 10, lock, 0.02):
                pytest.fail("entered a held lock")
    assert await any_cache.incr(rate) == 3


async def test_a_waiter_gets_the_lock_when_the_holder_leaves(any_cache: Cache) -> None:
    rate, lock = _keys()
    order: list[str] = []
    release = asyncio.Event()

    async def first() -> None:
        async with any_cache.admit(rate, 10, lock, 1.0):
            order.append("first in")
            await release.wait()
            order.append("first out")

    async def second() -> None:
        async with any_cache.admit(rate, 10, lock, 5.0) as admission:
            order.append(f"second in {admission.count}")

    holder = asyncio.create_task(first())
    while not order:
        await asyncio.sleep(0)
    waiter = asyncio.create_task(second())
    while await any_cache.get(rate) != "2":  # the waiter has counted and tried the lock
        await asyncio.sleep(0)
    assert order == ["first in"]
    assert not waiter.done()
    release.set()
    await asyncio.gather(holder, waiter)
    assert order == ["first in", "first out", "second in 2"]


async def test_lock_released_after_the_body_even_when_it_raises(any_cache: Cache) -> None:
    rate, lock = _keys()
    with pytest.raises(ValueError, match="handler failed"):
        async with any_cache.admit(rate, 10, lock, 1.0):
            raise ValueError("handler failed")
    assert await lock_is_free(any_cache, lock)
    async with any_cache.admit(rate, 10, lock, 1.0) as admission:
        assert admission.count == 2


async def test_admit_reads_the_peek_key_within_the_limit_only(any_cache: Cache) -> None:
    rate, lock = _keys()
    peek = Key(lock.name + ":peek", 60)
    async with any_cache.admit(rate, 2, lock, 1.0, peek) as admission:
        assert admission.peeked is None  # absent
        await any_cache.put(peek, "7:M7")
    async with any_cache.admit(rate, 2, lock, 1.0, peek) as admission:
        assert (admission.count, admission.peeked) == (2, "7:M7")
    async with any_cache.admit(rate, 2, lock, 1.0, peek) as admission:
        assert (admission.count, admission.peeked) == (3, None)  # past the limit: not read
    async with any_cache.admit(rate, 5, lock, 1.0) as admission:
        assert admission.peeked is None  # no key given


async def test_a_waiter_reads_the_peek_key_again_once_it_holds_the_lock(
    any_cache: Cache,
) -> None:
    rate, lock = _keys()
    peek = Key(lock.name + ":peek", 60)
    await any_cache.put(peek, "old")
    release = asyncio.Event()

    async def holder() -> None:
        async with any_cache.admit(rate, 10, lock, 1.0, peek):
            await release.wait()
            await any_cache.put(peek, "new")  # changed while the waiter waits

    first = asyncio.create_task(holder())
    while await any_cache.get(rate) != "1":
        await asyncio.sleep(0)

    async def waiter() -> str | None:
        async with any_cache.admit(rate, 10, lock, 5.0, peek) as admission:
            return admission.peeked

    second = asyncio.create_task(waiter())
    while await any_cache.get(rate) != "2":
        await asyncio.sleep(0)
    release.set()
    await first
    assert await second == "new"


async def test_a_kept_lock_stays_held_until_put_releases_it(any_cache: Cache) -> None:
    rate, lock = _keys()
    reply = Key(lock.name + ":reply", 60)
    async with any_cache.admit(rate, 10, lock, 1.0) as admission:
        held = admission.keep()
    assert held is not None
    assert not await lock_is_free(any_cache, lock)  # admit left it held
    await any_cache.put(reply, "the reply", release=held)
    assert await any_cache.get(reply) == "the reply"
    assert await lock_is_free(any_cache, lock)
    async with any_cache.admit(rate, 1, lock, 1.0) as admission:
        assert admission.keep() is None  # past the limit: nothing to keep
    assert await lock_is_free(any_cache, lock)


async def test_put_does_not_release_a_lock_taken_again_by_someone_else(any_cache: Cache) -> None:
    rate, lock = _keys()
    async with any_cache.admit(rate, 10, lock, 1.0) as admission:
        held = admission.keep()
    assert held is not None
    await any_cache.put(Key(lock.name + ":reply", 60), "r", release=held)
    async with any_cache.admit(rate, 10, lock, 1.0):  # a new holder
        if isinstance(any_cache, RedisCache):  # a stale token must not free the new holder
            await any_cache.put(Key(lock.name + ":reply", 60), "r", release=held)
        assert not await lock_is_free(any_cache, lock)


async def test_memory_counter_expires_with_the_rate_key_ttl() -> None:
    ticks = Ticks()
    cache = MemoryCache(now=ticks)
    rate, lock = _keys()
    for _ in range(2):
        async with cache.admit(rate, 1, lock, 1.0):
            pass
    ticks.now += rate.ttl - 1
    async with cache.admit(rate, 1, lock, 1.0) as admission:
        assert admission.count == 3
    ticks.now += 1
    async with cache.admit(rate, 1, lock, 1.0) as admission:
        assert admission.count == 1


@pytest.mark.redis
async def test_redis_keys_carry_their_ttls() -> None:
    cache = RedisCache(TEST_REDIS)
    raw = aioredis.Redis.from_url(TEST_REDIS, decode_responses=True)
    rate, lock = _keys()
    try:
        async with cache.admit(rate, 1, lock, 1.0):
            assert 0 < await raw.ttl(rate.name) <= rate.ttl
            assert 0 < await raw.pttl(lock.name) <= lock.ttl * 1000
        assert await raw.exists(lock.name) == 0
        await raw.persist(rate.name)
        async with cache.admit(rate, 1, lock, 1.0) as admission:
            assert admission.count == 2
            assert await raw.exists(lock.name) == 0  # past the limit: no lock key
        assert 0 < await raw.ttl(rate.name) <= rate.ttl  # a lost TTL is set again
    finally:
        await raw.delete(rate.name, lock.name)
        await raw.aclose()
        await cache.close()


async def test_gate_middleware_answers_busy_while_another_callback_holds_the_lock(
    services: Services, wall: FakeWall
) -> None:
    inbound = Inbound(
        "oa", "brand", None, "text", "oBusy", "gh_brand", int(wall.now), "oa:brand:msg:9", ""
    )
    ctx = Ctx(inbound=inbound, services=services, now=services.clock.now(), trace=Trace())
    calls = 0

    async def handler(inbound: Inbound, ctx: Ctx) -> Reply | Unhandled:
        nonlocal calls
        calls += 1
        return TextReply("done")

    gate = SenderGateMiddleware(wait_seconds=0.02)
    async with services.cache.lock(services.keys.member_lock("oa:brand:oBusy"), 1.0):
        reply = await gate(inbound, ctx, handler)
    assert ctx.trace.outcome == "busy"
    assert isinstance(reply, TextReply)
    assert reply.content == services.renderer.render("busy")
    assert calls == 0
    again = Ctx(inbound=inbound, services=services, now=services.clock.now(), trace=Trace())
    assert await gate(inbound, again, handler) == TextReply("done")
    assert calls == 1


def test_memory_sweep_drops_expired_values_and_keeps_the_rewritten() -> None:
    ticks = Ticks()
    cache = MemoryCache(now=ticks)
    short, long = Key("short", 10), Key("long", 100)
    cache._store(short, "a")
    cache._store(long, "b")
    ticks.now += 5
    cache._store(Key("again", 10), "c")
    ticks.now += 6  # "short" has expired, "again" has not
    cache._store(short, "d")  # stored again: its first expiry must not drop it
    cache._sweep()
    assert set(cache._values) == {"short", "long", "again"}
    ticks.now += 1
    cache._store(Key("later", 10), "e")
    ticks.now += 9  # "again" and the rewritten "short" have expired; "later", "long" live
    cache._sweep()
    assert set(cache._values) == {"long", "later"}
