"""Cache.claim_admit: the dedupe claim and the sender gate's first step in one round trip.

A member's callback costs two cache calls: ``claim_admit`` before the handler (claim, rate
count, one try of the sender lock, the identity-cache read) and ``put`` after it (the reply
for retries and the lock's release). A retry is refused by the claim and counts nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from storage.cache import Cache, CacheError, Gate, RedisCache
from storage.keys import Key, KeyBuilder
from tests.conftest import TEST_REDIS, AppMaker, base_config, make_settings
from tests.fakes import FakeWall
from tests.helpers import lock_is_free, oa_crypto, oa_text, post_oa, reply_fields


def _gate(limit: int = 10) -> tuple[Key, Gate]:
    kb = KeyBuilder(prefix=f"t{uuid.uuid4().hex[:12]}")
    sender = "oa:brand:oA"
    peek = Key(f"{kb.prefix}:peek", 60)
    return kb.inbound("oa:brand:msg:1"), Gate(
        kb.rate(sender, 1), limit, kb.member_lock(sender), peek
    )


async def test_only_the_first_claim_is_counted(any_cache: Cache) -> None:
    claim, gate = _gate()
    first = await any_cache.claim_admit(claim, gate)
    assert first is not None
    assert first.count == 1
    async with any_cache.hold(first, 1.0):
        assert not await lock_is_free(any_cache, gate.lock)  # held while the handler runs
    assert await any_cache.claim_admit(claim, gate) is None  # a retry: claimed before
    assert await any_cache.incr(gate.rate) == 2  # and it counted nothing
    assert await lock_is_free(any_cache, gate.lock)  # nor took the lock


async def test_hold_keeps_the_lock_until_the_block_ends_and_reads_the_peek(
    any_cache: Cache,
) -> None:
    claim, gate = _gate()
    assert gate.peek is not None
    await any_cache.put(gate.peek, "7:M7")
    admission = await any_cache.claim_admit(claim, gate)
    assert admission is not None
    async with any_cache.hold(admission, 1.0) as held:
        assert held.peeked == "7:M7"
        assert not await lock_is_free(any_cache, gate.lock)
    assert await lock_is_free(any_cache, gate.lock)


async def test_past_the_limit_nothing_is_locked_or_read(any_cache: Cache) -> None:
    claim, gate = _gate(limit=1)
    assert gate.peek is not None
    await any_cache.put(gate.peek, "7:M7")
    await any_cache.incr(gate.rate)  # the one allowed use this minute is gone
    admission = await any_cache.claim_admit(claim, gate)
    assert admission is not None
    async with any_cache.hold(admission, 1.0) as held:
        assert (held.count, held.peeked, held.keep()) == (2, None, None)
        assert await lock_is_free(any_cache, gate.lock)


async def test_a_busy_lock_is_waited_for_and_the_peek_read_again(any_cache: Cache) -> None:
    claim, gate = _gate()
    assert gate.peek is not None
    await any_cache.put(gate.peek, "old")
    release = asyncio.Event()
    entered = asyncio.Event()

    async def holder() -> None:
        async with any_cache.lock(gate.lock, 1.0):
            entered.set()
            await release.wait()
            await any_cache.put(gate.peek, "new")  # type: ignore[arg-type]

    first = asyncio.create_task(holder())
    await entered.wait()
    admission = await any_cache.claim_admit(claim, gate)  # its one try finds the lock busy
    assert admission is not None

    async def waiter() -> str | None:
        async with any_cache.hold(admission, 5.0) as held:
            return held.peeked

    second = asyncio.create_task(waiter())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not second.done()
    release.set()
    await first
    assert await second == "new"
    assert await lock_is_free(any_cache, gate.lock)


async def test_a_lock_that_stays_busy_raises_after_the_wait(any_cache: Cache) -> None:
    claim, gate = _gate()
    async with any_cache.lock(gate.lock, 1.0):
        admission = await any_cache.claim_admit(claim, gate)
        assert admission is not None
        with pytest.raises(CacheError):
            async with any_cache.hold(admission, 0.02):
                pytest.fail("entered a held lock")


async def test_a_kept_lock_is_released_by_put(any_cache: Cache) -> None:
    claim, gate = _gate()
    admission = await any_cache.claim_admit(claim, gate)
    assert admission is not None
    async with any_cache.hold(admission, 1.0) as held:
        kept = held.keep()
    assert kept is not None
    assert not await lock_is_free(any_cache, gate.lock)
    await any_cache.put(Key(claim.name + ":reply", 60), "r", release=kept)
    assert await lock_is_free(any_cache, gate.lock)


class CountingCache:
    """A cache that records the name of every cache call (each is one round trip)."""

    def __init__(self, inner: Cache) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return attr(*args, **kwargs)

        return call


async def test_a_members_sign_in_callback_makes_two_cache_calls(
    make_client: AppMaker, wall: FakeWall, database: str, cache: Cache
) -> None:
    counting = CountingCache(cache)
    settings = make_settings(base_config(database))
    client = await make_client(settings, cache=counting)
    crypto = oa_crypto(settings)
    first = await post_oa(client, settings, oa_text("帮助", msg_id=1), timestamp=int(wall.now))
    assert "可用指令" in reply_fields(crypto, await first.text())["Content"]
    counting.calls.clear()  # the member exists and is in the identity cache
    resp = await post_oa(client, settings, oa_text("签到", msg_id=2), timestamp=int(wall.now))
    assert "签到成功" in reply_fields(crypto, await resp.text())["Content"]
    # hold() only enters the lock claim_admit took: no round trip (see the Redis test below)
    assert counting.calls == ["claim_admit", "hold", "put"]
    counting.calls.clear()
    again = await post_oa(client, settings, oa_text("签到", msg_id=2), timestamp=int(wall.now))
    assert reply_fields(crypto, await again.text())["Content"].startswith("签到成功")
    assert counting.calls == ["claim_admit", "get"]  # a retry: refused, the cached reply


@pytest.mark.redis
async def test_on_redis_a_sign_in_callback_is_two_round_trips(
    make_client: AppMaker, wall: FakeWall, database: str, cache: Cache, keys: KeyBuilder
) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    crypto = oa_crypto(settings)
    first = await post_oa(client, settings, oa_text("帮助", msg_id=1), timestamp=int(wall.now))
    assert "可用指令" in reply_fields(crypto, await first.text())["Content"]
    watcher = aioredis.Redis.from_url(TEST_REDIS, decode_responses=True)
    end = f"{keys.prefix}:end-of-test"
    try:
        async with watcher.monitor() as monitor:
            resp = await post_oa(
                client, settings, oa_text("签到", msg_id=2), timestamp=int(wall.now)
            )
            assert "签到成功" in reply_fields(crypto, await resp.text())["Content"]
            await cache.get(Key(end, 1))  # a marker: every command before it has been seen
            sent = []
            while (command := await monitor.next_command())["command"] != f"GET {end}":
                # the commands a script runs are listed too, from "lua": not round trips
                if keys.prefix in command["command"] and command.get("client_type") != "lua":
                    sent.append(command["command"].split()[0])
    finally:
        await watcher.aclose()
    assert sent == ["EVALSHA", "EVALSHA"]  # claim + admit; reply + release


@pytest.mark.redis
async def test_claims_made_in_one_tick_share_a_pipeline_and_stay_exact() -> None:
    cache = RedisCache(TEST_REDIS)
    claim, gate = _gate(limit=100)
    kb = KeyBuilder(prefix=claim.name + "x")
    claims = [kb.inbound(f"m{i}") for i in range(20)]
    try:
        # 20 deliveries and a retry of the first, all in one tick: one pipeline
        made = await asyncio.gather(*(cache.claim_admit(c, gate) for c in [*claims, claims[0]]))
        assert made[-1] is None  # the retry: claimed in the same pipeline, just before
        admitted = [a for a in made if a is not None]
        assert sorted(a.count for a in admitted) == list(range(1, 21))
        assert sum(a.locked for a in admitted) == 1  # one sender: one holder
        for admission in admitted:
            if admission.locked:
                async with cache.hold(admission, 1.0):
                    assert not await lock_is_free(cache, gate.lock)
        assert await lock_is_free(cache, gate.lock)
    finally:
        await cache.close()


@pytest.mark.redis
async def test_a_script_redis_does_not_know_is_loaded_alone_and_in_a_pipeline() -> None:
    cache = RedisCache(TEST_REDIS)
    # a script text never run before: its SHA is unknown to Redis until loaded
    unknown = cache.script(f"return ARGV[1] .. '-{uuid.uuid4().hex}'")
    other = cache.script(f"return ARGV[1] .. '-{uuid.uuid4().hex}'")
    try:
        assert str(await cache.run(unknown, [], ["a"])).startswith("a-")
        both = await asyncio.gather(cache.run(other, [], ["b"]), cache.run(other, [], ["c"]))
        assert [str(v)[:2] for v in both] == ["b-", "c-"]
        bad = cache.script("return redis.call('incr', KEYS[1])")
        key = claimed = _gate()[0].name
        await cache.claim(Key(claimed, 60), "not a number")
        results = await asyncio.gather(
            cache.run(bad, [key], []), cache.run(other, [], ["d"]), return_exceptions=True
        )
        assert isinstance(results[0], aioredis.ResponseError)  # only that call fails
        assert str(results[1]).startswith("d-")
    finally:
        await cache.close()
