"""Exactly-once intake: retries, concurrent duplicates, the reply budget and late replies."""

from __future__ import annotations

import asyncio
from typing import Any

from wechatpy.messages import TextMessage

from bot.appkeys import RECORDER
from bot.context import Ctx
from bot.filters import Keyword
from bot.replies import Reply, TextReply
from bot.routing import Router
from storage.cache import Cache
from storage.keys import KeyBuilder
from storage.models import InboundEvent
from tests.conftest import TEST_REDIS, AppMaker, base_config, make_settings
from tests.fakes import FakeWall, ManualBudget, RecordingLateHook
from tests.helpers import oa_crypto, oa_text, post_oa, post_wecom, reply_fields


class CountingRouter:
    """A router whose handler counts runs and can be held on an asyncio.Event."""

    def __init__(self) -> None:
        self.runs = 0
        self.release = asyncio.Event()
        self.release.set()
        self.router = Router("counting")
        self.router.on(TextMessage, Keyword("签到"))(self.handle)

    async def handle(self, event: Any, ctx: Ctx) -> Reply:
        self.runs += 1
        await self.release.wait()
        return TextReply(f"run {self.runs}")


async def test_three_deliveries_run_the_handler_once_and_get_the_same_reply(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    counting = CountingRouter()
    settings = make_settings(base_config(database))
    client = await make_client(settings, routers=(counting.router,))
    message = oa_text("签到", msg_id=777)
    replies = []
    for attempt in range(3):
        wall.advance(5)  # WeChat retries about every 5 s, each with a new nonce
        resp = await post_oa(
            client, settings, message, timestamp=int(wall.now), nonce=f"n{attempt}"
        )
        assert resp.status == 200
        replies.append(reply_fields(oa_crypto(settings), await resp.text()))
    assert counting.runs == 1
    assert replies[0] == replies[1] == replies[2]
    assert replies[0]["Content"] == "run 1"
    assert await _recorded(client) == 1


async def _recorded(client: Any) -> int:
    await client.app[RECORDER].flush()
    return await InboundEvent.all().count()


async def test_concurrent_duplicates_wait_for_the_first_result(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    counting = CountingRouter()
    counting.release.clear()
    settings = make_settings(base_config(database))
    client = await make_client(settings, routers=(counting.router,))
    message = oa_text("签到", msg_id=888)
    posts = [
        asyncio.create_task(
            post_oa(client, settings, message, timestamp=int(wall.now), nonce=f"c{i}")
        )
        for i in range(5)
    ]
    while counting.runs == 0:
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    counting.release.set()
    responses = await asyncio.gather(*posts)
    bodies = [reply_fields(oa_crypto(settings), await r.text()) for r in responses]
    assert counting.runs == 1
    assert {b["Content"] for b in bodies} == {"run 1"}
    assert await _recorded(client) == 1


async def test_late_handler_answers_success_then_hands_its_reply_on(
    make_client: AppMaker,
    wall: FakeWall,
    budget: ManualBudget,
    late_hook: RecordingLateHook,
    database: str,
) -> None:
    counting = CountingRouter()
    counting.release.clear()
    settings = make_settings(base_config(database))
    client = await make_client(settings, routers=(counting.router,))
    post = asyncio.create_task(post_oa(client, settings, oa_text("签到"), timestamp=int(wall.now)))
    await budget.waiting()
    budget.fire()
    resp = await post
    assert await resp.text() == "success"
    assert late_hook.replies == []
    counting.release.set()
    inbound, reply = await late_hook.next()
    assert reply == TextReply("run 1")
    assert inbound.sender == "oMember1"
    assert await _recorded(client) == 1
    row = await InboundEvent.get()
    assert row.outcome == "late"


async def test_the_sender_lock_is_free_after_a_reply_and_after_a_late_handler(
    make_client: AppMaker,
    wall: FakeWall,
    budget: ManualBudget,
    cache: Cache,
    keys: KeyBuilder,
    database: str,
) -> None:
    counting = CountingRouter()
    settings = make_settings(base_config(database))
    client = await make_client(settings, routers=(counting.router,))
    lock = keys.member_lock("oa:brand:oMember1")
    resp = await post_oa(client, settings, oa_text("签到"), timestamp=int(wall.now))
    assert reply_fields(oa_crypto(settings), await resp.text())["Content"] == "run 1"
    async with cache.lock(lock, 0.01):  # released together with the cached reply
        pass
    counting.release.clear()
    post = asyncio.create_task(post_oa(client, settings, oa_text("签到"), timestamp=int(wall.now)))
    await budget.waiting()
    budget.fire()
    assert await (await post).text() == "success"
    counting.release.set()  # the late handler finishes and its gate releases the lock
    async with cache.lock(lock, 2.0):
        assert counting.runs == 2


async def test_retry_of_a_late_callback_gets_success_and_no_second_run(
    make_client: AppMaker, wall: FakeWall, budget: ManualBudget, database: str
) -> None:
    counting = CountingRouter()
    counting.release.clear()
    settings = make_settings(base_config(database))
    client = await make_client(settings, routers=(counting.router,))
    message = oa_text("签到", msg_id=999)
    first = asyncio.create_task(post_oa(client, settings, message, timestamp=int(wall.now)))
    await budget.waiting()
    await _until(lambda: counting.runs == 1)  # the handler is running, and stays blocked
    budget.fire()
    assert await (await first).text() == "success"
    retry = await post_oa(client, settings, message, timestamp=int(wall.now) + 5)
    assert await retry.text() == "success"
    counting.release.set()
    await asyncio.sleep(0.01)
    assert counting.runs == 1


async def _until(condition: Any, seconds: float = 2.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.001)


def _tag_event(tag_id: str, created: int) -> str:
    return (
        "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>"
        "<FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_tag]]></Event>"
        f"<Id><![CDATA[{tag_id}]]></Id><TagType><![CDATA[tag]]></TagType>"
        "<ChangeType><![CDATA[create]]></ChangeType></xml>"
    )


def _chat_join(cur_ver: str, member: str, created: int) -> str:
    return (
        "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>"
        "<FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_chat]]></Event>"
        "<ChatId><![CDATA[wrOgQhDgAAMYQiS5ol9G7gK9JVAAAA]]></ChatId>"
        "<ChangeType><![CDATA[update]]></ChangeType>"
        "<UpdateDetail><![CDATA[add_member]]></UpdateDetail><JoinScene>1</JoinScene>"
        f"<MemChangeCnt>1</MemChangeCnt><MemChangeList><Item>{member}</Item></MemChangeList>"
        f"<LastMemVer>v0</LastMemVer><CurMemVer>{cur_ver}</CurMemVer></xml>"
    )


async def test_distinct_wecom_events_in_the_same_second_are_all_processed(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    created = int(wall.now)
    bodies = [
        _tag_event("etTAG1", created),
        _tag_event("etTAG2", created),
        _chat_join("v1", "wmMember1", created),
        _chat_join("v2", "wmMember2", created),
    ]
    for body in bodies:
        resp = await post_wecom(client, settings, body, timestamp=created)
        assert resp.status == 200
        assert await resp.text() == "success"
    # and a retry of the last one is recognised as a retry
    await post_wecom(client, settings, bodies[-1], timestamp=created + 5)
    assert await _recorded(client) == 4
    kinds = sorted(await InboundEvent.all().values_list("kind", flat=True))
    assert kinds == [
        "wecom:change_external_chat:update",
        "wecom:change_external_chat:update",
        "wecom:change_external_tag:create",
        "wecom:change_external_tag:create",
    ]


async def test_two_app_instances_sharing_the_cache_run_a_handler_once(
    make_client: AppMaker, wall: FakeWall, database: str, cache: Any
) -> None:
    from storage.cache import RedisCache

    counting = CountingRouter()
    counting.release.clear()
    settings = make_settings(base_config(database))
    # two processes: each its own cache client, one shared store (Redis on that pass)
    second_cache = RedisCache(TEST_REDIS) if TEST_REDIS else cache
    one = await make_client(settings, routers=(counting.router,))
    two = await make_client(settings, routers=(counting.router,), cache=second_cache)
    message = oa_text("签到", msg_id=4343)
    posts = [
        asyncio.create_task(post_oa(c, settings, message, timestamp=int(wall.now), nonce=f"x{i}"))
        for i, c in enumerate((one, two, one, two))
    ]
    while counting.runs == 0:
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.02)
    counting.release.set()
    replies = {reply_fields(oa_crypto(settings), await (await p).text())["Content"] for p in posts}
    assert counting.runs == 1
    assert replies == {"run 1"}
    if isinstance(second_cache, RedisCache):
        await second_cache.close()


async def test_a_handler_that_crashes_is_recorded_and_wechat_gets_success(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    crashing = Router("crashing")

    @crashing.on(TextMessage, Keyword("签到"))
    async def crash(event: Any, ctx: Ctx) -> Reply:
        raise RuntimeError("handler bug")

    settings = make_settings(base_config(database))
    client = await make_client(settings, routers=(crashing,))
    resp = await post_oa(client, settings, oa_text("签到", msg_id=778), timestamp=int(wall.now))
    assert resp.status == 200
    assert await _recorded(client) == 1
    assert await InboundEvent.all().values_list("outcome", flat=True) == ["error"]
