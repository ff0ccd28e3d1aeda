"""Rate limit, per-member lock, error middleware, health and metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from wechatpy.messages import TextMessage

from bot.context import Ctx
from bot.filters import Keyword
from bot.replies import Reply, TextReply
from bot.routing import Router
from storage.cache import MemoryCache
from storage.keys import Key
from tests.conftest import AppMaker, base_config, make_settings
from tests.fakes import FakeWall
from tests.helpers import oa_crypto, oa_text, post_oa, reply_fields


async def test_rate_limit_replies_politely_once_then_stays_quiet(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    wall.now = 1_700_000_040  # well inside one minute
    settings = make_settings(base_config(database), business={"rate_limit_per_minute": 3})
    client = await make_client(settings)
    contents = []
    for _ in range(5):
        resp = await post_oa(client, settings, oa_text("帮助"), timestamp=int(wall.now))
        text = await resp.text()
        contents.append(
            "" if text == "success" else reply_fields(oa_crypto(settings), text)["Content"]
        )
    assert all("可用指令" in c for c in contents[:3])
    assert "太快" in contents[3]
    assert contents[4] == ""
    # another member is not limited
    other = await post_oa(
        client, settings, oa_text("帮助", openid="oOther"), timestamp=int(wall.now)
    )
    assert "可用指令" in reply_fields(oa_crypto(settings), await other.text())["Content"]
    # the next minute is fresh
    wall.advance(60)
    again = await post_oa(client, settings, oa_text("帮助"), timestamp=int(wall.now))
    assert "可用指令" in reply_fields(oa_crypto(settings), await again.text())["Content"]


async def test_one_callback_per_member_at_a_time(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    active = 0
    peak = 0
    router = Router("probe")

    @router.on(TextMessage, Keyword("go"))
    async def probe(event: Any, ctx: Ctx) -> Reply:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01)
        active -= 1
        return TextReply("done")

    settings = make_settings(base_config(database))
    client = await make_client(settings, routers=(router,))
    same = [post_oa(client, settings, oa_text("go"), timestamp=int(wall.now)) for _ in range(4)]
    await asyncio.gather(*same)
    assert peak == 1
    peak = 0
    others = [
        post_oa(client, settings, oa_text("go", openid=f"o{i}"), timestamp=int(wall.now))
        for i in range(4)
    ]
    await asyncio.gather(*others)
    assert peak > 1


async def test_handler_error_is_a_polite_reply_not_a_500(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    router = Router("broken")

    @router.on(TextMessage)
    async def broken(event: Any, ctx: Ctx) -> Reply:
        raise RuntimeError("boom")

    settings = make_settings(base_config(database))
    client = await make_client(settings, routers=(router,))
    resp = await post_oa(client, settings, oa_text("anything"), timestamp=int(wall.now))
    assert resp.status == 200
    assert "小差" in reply_fields(oa_crypto(settings), await resp.text())["Content"]


async def test_healthz_and_metrics(make_client: AppMaker, wall: FakeWall, database: str) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    health = await client.get("/healthz")
    assert health.status == 200
    assert await health.json() == {"db": "ok", "cache": "ok", "status": "ok"}
    await post_oa(client, settings, oa_text("帮助"), timestamp=int(wall.now))
    message = oa_text("帮助", msg_id=4242)
    await post_oa(client, settings, message, timestamp=int(wall.now))
    await post_oa(client, settings, message, timestamp=int(wall.now))
    text = await (await client.get("/metrics")).text()
    assert 'scrm_callbacks_total{kind="text",outcome="replied",platform="oa"} 2.0' in text
    assert 'scrm_dedupe_hits_total{platform="oa"} 1.0' in text
    assert "scrm_handler_seconds_bucket" in text


class _CountingGets(MemoryCache):
    """The in-process cache, counting reads of identity-cache keys."""

    def __init__(self) -> None:
        super().__init__()
        self.identity_gets = 0

    async def get(self, key: Key) -> str | None:
        if ":idm:" in key.name:
            self.identity_gets += 1
        return await super().get(key)


async def test_the_gate_reads_the_identity_cache_for_the_member_middleware(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    cache = _CountingGets()
    settings = make_settings(base_config(database))
    client = await make_client(settings, cache=cache)
    first = await post_oa(client, settings, oa_text("帮助", msg_id=1), timestamp=int(wall.now))
    assert "可用指令" in reply_fields(oa_crypto(settings), await first.text())["Content"]
    gets = cache.identity_gets  # first contact: the member is created and cached
    again = await post_oa(client, settings, oa_text("帮助", msg_id=2), timestamp=int(wall.now))
    assert "可用指令" in reply_fields(oa_crypto(settings), await again.text())["Content"]
    assert cache.identity_gets == gets  # resolved from the value the admission read
