"""RedisCache under connection faults, through a TCP proxy in front of the test Redis.

A half-open connection (nothing comes back) must not stall the script pipeline, and so
every callback of the process, until the OS gives up: the pipeline's calls fail with
:class:`CacheError` after the cache's timeout, its connection is dropped, the calls queued
behind it go on a fresh one, and a callback still gets an answer at once. A claim whose
reply was lost (Redis ran it, the client sent it again) is still the first delivery's.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlparse

import pytest

from bot.appkeys import METRICS
from bot.wechat.intake import Deduper
from storage.cache import CacheError, Gate, RedisCache
from storage.keys import Key, KeyBuilder
from tests.conftest import TEST_REDIS, AppMaker, base_config, make_settings
from tests.fakes import FakeWall, ManualBudget
from tests.helpers import lock_is_free, oa_crypto, oa_text, post_oa, reply_fields

pytestmark = pytest.mark.redis

# Short, so the faulty pipelines fail soon; never asserted on (HANG bounds a hang instead).
TIMEOUT = 0.3
HANG = 30.0


class Proxy:
    """Forwards TCP to Redis.

    :meth:`freeze`: the connections open now go silent both ways (half-open: nothing comes
    back, nothing is closed); new ones still work. ``drop_next_reply``: the next reply from
    Redis is not forwarded and that client connection is closed (the command did run).
    """

    def __init__(self) -> None:
        self.open: set[asyncio.StreamWriter] = set()
        self._upstream: set[asyncio.StreamWriter] = set()
        self.frozen: set[asyncio.StreamWriter] = set()
        self.swallowed = asyncio.Event()  # a frozen connection was sent something
        self.drop_next_reply = False

    async def start(self) -> str:
        """Listen on a free local port; the Redis URL to use (the test Redis's db)."""
        target = urlparse(TEST_REDIS)
        self.host, self.port = target.hostname or "127.0.0.1", target.port or 6379
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"redis://127.0.0.1:{port}{target.path or '/0'}"
        return self.url

    def freeze(self) -> None:
        """Make every connection open now half-open."""
        self.frozen |= self.open

    async def close(self) -> None:
        """Stop listening and close every connection."""
        self.server.close()
        for writer in [*self.open, *self._upstream]:
            writer.close()
        await self.server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        redis_r, redis_w = await asyncio.open_connection(self.host, self.port)
        self.open.add(client_w)
        self._upstream.add(redis_w)

        async def up() -> None:
            while data := await client_r.read(65536):
                if client_w in self.frozen:
                    self.swallowed.set()
                    continue
                redis_w.write(data)
                await redis_w.drain()

        async def down() -> None:
            while data := await redis_r.read(65536):
                if client_w in self.frozen:
                    continue
                if self.drop_next_reply:
                    self.drop_next_reply = False
                    client_w.close()
                    return
                client_w.write(data)
                await client_w.drain()

        try:
            await asyncio.gather(up(), down(), return_exceptions=True)
        finally:
            self.open.discard(client_w)
            self._upstream.discard(redis_w)
            redis_w.close()
            client_w.close()


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    made = Proxy()
    await made.start()
    yield made
    await made.close()


@pytest.fixture
async def faulty(proxy: Proxy) -> AsyncIterator[RedisCache]:
    """A RedisCache through the proxy, with short timeouts."""
    made = RedisCache(proxy.url, timeout=TIMEOUT, connect_timeout=TIMEOUT)
    yield made
    await asyncio.wait_for(made.close(), HANG)


def _gate(prefix: str | None = None) -> tuple[Key, Gate]:
    kb = KeyBuilder(prefix=prefix or f"f{uuid.uuid4().hex[:12]}")
    sender = "oa:brand:oA"
    return kb.inbound("oa:brand:msg:1"), Gate(kb.rate(sender, 1), 10, kb.member_lock(sender))


async def _stuck_claim(faulty: RedisCache, proxy: Proxy) -> asyncio.Future[object]:
    """A claim_admit sent on a frozen connection (the pipeline's), not answered."""
    assert await faulty.claim_admit(*_gate()) is not None  # the pooled connection is open
    proxy.freeze()
    stuck = asyncio.ensure_future(faulty.claim_admit(*_gate()))
    await asyncio.wait_for(proxy.swallowed.wait(), HANG)
    return stuck


async def test_a_silent_connection_fails_its_pipeline_and_the_next_goes_on_a_fresh_one(
    faulty: RedisCache, proxy: Proxy
) -> None:
    stuck = await _stuck_claim(faulty, proxy)
    # queued behind the stuck pipeline: goes in the next one, on a fresh connection
    claim, gate = _gate()
    queued = asyncio.ensure_future(faulty.claim_admit(claim, gate))
    with pytest.raises(CacheError, match="did not answer"):
        await asyncio.wait_for(stuck, HANG)
    admission = await asyncio.wait_for(queued, HANG)
    assert admission is not None
    assert admission.locked
    async with faulty.hold(admission, 1.0):
        assert not await lock_is_free(faulty, gate.lock)  # on the fresh connection
    assert await lock_is_free(faulty, gate.lock)
    assert await faulty.claim_admit(claim, gate) is None  # the claim did reach Redis


async def test_close_does_not_hang_on_a_silent_pipeline(faulty: RedisCache, proxy: Proxy) -> None:
    stuck = await _stuck_claim(faulty, proxy)
    await asyncio.wait_for(faulty.close(), HANG)
    with pytest.raises(CacheError):
        await stuck


async def test_a_plain_command_on_a_silent_connection_is_a_cache_error(
    faulty: RedisCache, proxy: Proxy
) -> None:
    key = _gate()[0]
    assert await faulty.claim(key)
    proxy.freeze()
    with pytest.raises(CacheError, match="unreachable"):
        await asyncio.wait_for(faulty.get(key), HANG)
    assert await faulty.get(key) == "1"  # and the next one goes on a fresh connection


async def test_a_claim_whose_reply_was_lost_is_still_the_first_deliverys(
    faulty: RedisCache, proxy: Proxy
) -> None:
    claim, gate = _gate()
    await faulty.ping()
    proxy.drop_next_reply = True  # Redis runs the script; the client sends it again
    admission = await faulty.claim_admit(claim, gate)
    assert admission is not None
    assert (admission.count, admission.locked) == (1, True)  # counted once, the lock ours
    assert not await lock_is_free(faulty, gate.lock)
    async with faulty.hold(admission, 1.0):
        assert not await lock_is_free(faulty, gate.lock)  # still ours while held
    assert await lock_is_free(faulty, gate.lock)
    assert await faulty.claim_admit(claim, gate) is None  # a real retry is still refused
    assert await faulty.incr(gate.rate) == 2  # and counted nothing


async def test_two_calls_of_one_sender_retried_together_keep_the_first_admitted(
    faulty: RedisCache, proxy: Proxy
) -> None:
    # One pipeline, two callbacks of one sender (limit 1); its replies lost, the whole
    # pipeline sent again: the second run of the first call finds the count at 2, but the
    # lock under its own token says the first run admitted it
    claim, gate = _gate()
    gate = Gate(gate.rate, 1, gate.lock)
    keys = KeyBuilder(prefix=claim.name.split(":")[0])
    other = keys.inbound("oa:brand:msg:2")
    warm = Gate(keys.rate("oa:brand:oWarm", 1), 9, keys.member_lock("oa:brand:oWarm"))
    assert await faulty.claim_admit(keys.inbound("oa:brand:msg:0"), warm)  # connection open
    proxy.drop_next_reply = True
    first, second = await asyncio.gather(
        faulty.claim_admit(claim, gate), faulty.claim_admit(other, gate)
    )
    assert first is not None
    assert second is not None
    assert (first.count, first.locked) == (1, True)
    assert second.count == 2  # past the limit: refused, nothing locked
    assert second.held is None
    async with faulty.hold(first, 1.0):
        assert not await lock_is_free(faulty, gate.lock)
    assert await lock_is_free(faulty, gate.lock)  # released: not left for its TTL


async def test_a_reply_that_cannot_be_cached_is_still_given(
    faulty: RedisCache, proxy: Proxy, budget: ManualBudget
) -> None:
    deduper = Deduper(faulty, KeyBuilder(prefix=f"f{uuid.uuid4().hex[:12]}"))
    _, gate = _gate(deduper.keys.prefix)
    admission = await deduper.claim_admit("oa:brand:msg:1", gate)
    assert admission is not None
    assert admission.held is not None
    proxy.freeze()
    retry = asyncio.ensure_future(deduper.reply_for("oa:brand:msg:1", budget))
    await budget.waiting()  # the retry waits for the first delivery's reply
    await asyncio.wait_for(deduper.finish("oa:brand:msg:1", "<xml/>", admission.held), HANG)
    assert await retry == "<xml/>"  # a retry in this process still gets it
    assert await faulty.get(deduper.keys.reply("oa:brand:msg:1")) is None  # not cached


async def test_a_callback_on_a_silent_redis_answers_success_and_the_next_is_served(
    make_client: AppMaker, wall: FakeWall, database: str, faulty: RedisCache, proxy: Proxy
) -> None:
    settings = make_settings(base_config(database, redis_url=proxy.url))
    client = await make_client(settings, cache=faulty)
    crypto = oa_crypto(settings)
    first = await post_oa(client, settings, oa_text("帮助", msg_id=1), timestamp=int(wall.now))
    assert "可用指令" in reply_fields(crypto, await first.text())["Content"]
    proxy.freeze()
    stalled = await post_oa(client, settings, oa_text("帮助", msg_id=2), timestamp=int(wall.now))
    assert (stalled.status, await stalled.text()) == (200, "success")
    outcome = {"platform": "oa", "kind": "text", "outcome": "cache_error"}
    registry = client.app[METRICS].registry
    assert registry.get_sample_value("scrm_callbacks_total", outcome) == 1.0
    after = await post_oa(client, settings, oa_text("帮助", msg_id=3), timestamp=int(wall.now))
    assert "可用指令" in reply_fields(crypto, await after.text())["Content"]
