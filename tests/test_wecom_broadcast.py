"""群发 from the WeCom agent: a manager drafts a broadcast, confirms it with a one-time code
and hears its progress and final report, all through the encrypted callback and the fake
platform (which receives the broadcast's customer-service messages and the agent
messages to the manager)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.appkeys import SERVICES
from bot.config import Settings
from bot.context import Services
from bot.services.broadcast_chat import CODE_TTL, Command, digest, parse
from bot.services.broadcast_progress import RESTART_AFTER
from storage.cache import MemoryCache
from storage.models import (
    AuditLog,
    Broadcast,
    BroadcastConfirmation,
    Member,
    OutboxMessage,
    Segment,
)
from storage.repos import broadcast_confirmations as codes
from storage.repos import segments as segments_repo
from tests.broadcast_support import members
from tests.conftest import AppMaker, FakeServer
from tests.fakes import FakeWall
from tests.outbound_support import sender
from tests.test_signin_concurrency import wide_pool  # noqa: F401
from tests.wecom_staff_support import say, staff_settings

GOLD = {"all": [{"field": "tier", "in": ["gold"]}]}
PROMO = "群发 gold broadcast_promo 双十一大促 | 全场 8 折"
_CODE = re.compile(r"确认 (\d{6})")
RACE_AT = datetime(2026, 12, 1, 10, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _daytime(wall: FakeWall) -> None:
    """10:13 in Shanghai: marketing waits out the quiet hours (the pinned time is 06:13)."""
    wall.now += 4 * 3600


async def _app(
    make_client: AppMaker, database: str, fake: FakeServer
) -> tuple[TestClient[Any, Any], Settings, Services]:
    settings = staff_settings(database, fake)
    client = await make_client(settings)
    services = client.app[SERVICES]
    await segments_repo.save("gold", GOLD, description="", actor="test", now=services.clock.now())
    return client, settings, services


def _agent(fake: FakeServer, userid: str = "boss") -> list[str]:
    return [m.text for m in fake.platform.messages(userid=userid) if m.channel == "agent"]


def _code(reply: str) -> str:
    found = _CODE.search(reply)
    assert found is not None, reply
    return found.group(1)


async def _tick(services: Services) -> None:
    """The scheduler's broadcast step (start_due and its watchers), then the sender."""
    await services.broadcasts.start_due(services.clock.now())
    await sender(services).drain()


def test_parse_reads_names_channel_account_and_text_parts() -> None:
    assert parse("gold") is None
    assert parse("gold broadcast_promo") == Command("gold", "broadcast_promo")
    assert parse("gold broadcast_promo 双十一 大促 | 8 折") == Command(
        "gold", "broadcast_promo", parts=("双十一 大促", "8 折")
    )
    assert parse("gold broadcast_notice oa_mass@brand 停水通知\n明天 9 点\n到 12 点") == Command(
        "gold", "broadcast_notice", "oa_mass", "brand", ("停水通知", "明天 9 点", "到 12 点")
    )
    assert parse("gold broadcast_promo wecom_customer 标题｜正文") == Command(
        "gold", "broadcast_promo", "wecom_customer", "", ("标题", "正文")
    )


async def test_a_manager_drafts_confirms_and_hears_progress_once(
    make_client: AppMaker, database: str, fake: FakeServer, wall: FakeWall
) -> None:
    client, settings, services = await _app(make_client, database, fake)
    reached = await members(services, 4, fake=fake)
    await members(services, 1, wrote=None)  # no customer-service window
    reply = await say(client, settings, PROMO, "boss", wall.now)
    assert "预计触达：4 / 5 人" in reply
    assert "没有客服消息窗口或额度已用完 1 人" in reply
    b = await Broadcast.get()
    assert (b.state, b.channel, b.account, b.kind) == ("draft", "oa_cs", "brand", "marketing")
    assert b.content == {"variables": {"headline": "双十一大促", "body": "全场 8 折"}}
    assert b.created_by == "staff:boss"
    code = _code(reply)
    assert (await BroadcastConfirmation.get()).code_hash == digest("boss", code)

    reply = await say(client, settings, f"确认 {code}", "boss", wall.now)
    assert f"群发 #{b.id} 开始发送" in reply
    await services.background.idle()
    assert (await Broadcast.get()).state == "sending"
    started = await AuditLog.filter(action="broadcast.sending").values_list("actor", flat=True)
    assert started == ["staff:boss"]

    await sender(services, batch=2).run_once()  # two of the four members
    await _tick(services)  # 50 %: the half message, then the sender sends the rest
    await _tick(services)  # every row final: done, and the final report
    await _tick(services)
    texts = _agent(fake)
    assert len(texts) == 3, texts
    assert "已开始发送：4 条待发送，预计触达 4 人" in texts[0]
    assert "已发送过半：50%（2 / 4）" in texts[1]
    assert "已完成。发送报告" in texts[2]
    assert "已送达 4" in texts[2]
    assert "跳过 1（没有客服消息窗口或额度已用完 1）" in texts[2]
    assert (await Broadcast.get()).state == "done"
    for _, openid in reached:
        promos = [m.text for m in fake.platform.messages(openid=openid) if m.channel == "custom"]
        assert len(promos) == 1
        assert promos[0].startswith("双十一大促\n全场 8 折")
    keys = await OutboxMessage.filter(channel="wecom_agent").values_list(
        "idempotency_key", flat=True
    )
    assert sorted(keys) == sorted(f"bcchat:{b.id}:{s}" for s in ("started", "half", "final"))


async def test_only_managers_may_broadcast(
    make_client: AppMaker, database: str, fake: FakeServer, wall: FakeWall
) -> None:
    client, settings, _ = await _app(make_client, database, fake)
    for text in (PROMO, "确认 123456", "进度 1"):
        assert "您的角色不能使用这个功能" in await say(client, settings, text, "zhangsan", wall.now)
        assert "还不是本系统登记的员工" in await say(client, settings, text, "stranger", wall.now)
    assert not await Broadcast.exists()
    assert not await BroadcastConfirmation.exists()


async def test_unknown_names_and_missing_text_get_a_clear_reply(
    make_client: AppMaker, database: str, fake: FakeServer, wall: FakeWall
) -> None:
    client, settings, services = await _app(make_client, database, fake)
    for n in range(6):
        await segments_repo.save(
            f"seg{n}", GOLD, description="", actor="t", now=services.clock.now()
        )

    async def ask(text: str) -> str:
        return await say(client, settings, text, "boss", wall.now)

    reply = await ask("群发 nope broadcast_promo 标题 | 正文")
    assert "没有这个分群" in reply
    assert "gold、seg0、seg1、seg2、seg3 等 7 个" in reply
    reply = await ask("群发 gold welcome 标题 | 正文")
    assert "没有这个群发模板" in reply
    assert "broadcast_promo" in reply
    assert "welcome" not in reply
    assert "需要 2 段文字（headline、body）" in await ask("群发 gold broadcast_promo 只有标题")
    assert "没有这个公众号" in await ask("群发 gold broadcast_promo oa_cs@nope 标题 | 正文")
    assert "用法：群发" in await ask("群发")
    assert "用法：群发" in await ask("群发 gold")
    reply = await ask("群发 gold broadcast_member_offer oa_mass 本周 8 折")
    assert "无法创建群发" in reply
    assert "per-member variables" in reply
    assert not await Broadcast.exists()


async def test_a_code_is_used_once_by_its_own_manager_before_it_expires(
    make_client: AppMaker, database: str, fake: FakeServer, wall: FakeWall
) -> None:
    roster = [
        {"userid": "boss", "name": "老板", "role": "manager"},
        {"userid": "boss2", "name": "店长", "role": "manager"},
    ]
    settings = staff_settings(database, fake, roster)
    client = await make_client(settings)
    services = client.app[SERVICES]
    await segments_repo.save("gold", GOLD, description="", actor="t", now=services.clock.now())
    await members(services, 2, fake=fake)

    async def ask(text: str, who: str = "boss") -> str:
        return await say(client, settings, text, who, wall.now)

    first = _code(await ask(PROMO))
    wrong = f"{(int(first) + 1) % 1_000_000:06d}"
    assert "确认码不对" in await ask(f"确认 {wrong}")
    assert "确认码不对" in await ask(f"确认 {first}", "boss2")  # bound to who drafted it
    assert "确认码不对" in await ask("确认 12ab")
    assert "开始发送" in await ask(f"确认 {first}")
    assert "已经用过了" in await ask(f"确认 {first}")
    await services.background.idle()
    assert await AuditLog.filter(action="broadcast.sending").count() == 1

    second = _code(await ask(PROMO))
    wall.advance(CODE_TTL.total_seconds() + 1)  # the business clock follows the wall here
    assert "已过期" in await ask(f"确认 {second}")
    await services.background.idle()
    late = await Broadcast.get(id=(await BroadcastConfirmation.get(status="pending")).broadcast_id)
    assert late.state == "draft"
    assert not await OutboxMessage.filter(group_key=f"bc:{late.id}").exists()


async def test_two_processes_confirming_one_code_start_it_once(
    make_client: AppMaker, database: str, fake: FakeServer, wall: FakeWall
) -> None:

    settings = staff_settings(database, fake)
    # Two app instances with their own caches: no per-process lock or dedupe serialises
    # the two callbacks (different MsgIds), only the database does.
    clients = [await make_client(settings, cache=MemoryCache()) for _ in range(2)]
    services = clients[0].app[SERVICES]
    await segments_repo.save("gold", GOLD, description="", actor="t", now=services.clock.now())
    await members(services, 3, fake=fake)
    code = _code(await say(clients[0], settings, PROMO, "boss", wall.now))
    replies = await asyncio.gather(
        *(say(c, settings, f"确认 {code}", "boss", wall.now) for c in clients)
    )
    assert sorted("开始发送" in r for r in replies) == [False, True]
    assert sum("已经用过了" in r for r in replies) == 1
    for c in clients:
        await c.app[SERVICES].background.idle()
    assert await AuditLog.filter(action="broadcast.confirm").count() == 1
    assert await AuditLog.filter(action="broadcast.sending").count() == 1
    assert await OutboxMessage.filter(source="broadcast").count() == 3


async def test_a_start_that_fails_tells_the_manager_why(
    make_client: AppMaker, database: str, fake: FakeServer, wall: FakeWall
) -> None:
    client, settings, services = await _app(make_client, database, fake)
    await members(services, 1, fake=fake)
    code = _code(await say(client, settings, PROMO, "boss", wall.now))
    await Segment.filter(name="gold").update(rule={"all": [{"field": "shoe_size", "in": [42]}]})
    await say(client, settings, f"确认 {code}", "boss", wall.now)
    await services.background.idle()
    await _tick(services)
    await _tick(services)
    texts = _agent(fake)
    assert len(texts) == 1
    assert "未能开始" in texts[0]
    assert (await Broadcast.get()).state == "draft"


async def test_a_cancelled_broadcast_gets_its_final_report(
    make_client: AppMaker, database: str, fake: FakeServer, wall: FakeWall
) -> None:
    client, settings, services = await _app(make_client, database, fake)
    await members(services, 3, fake=fake)
    code = _code(await say(client, settings, PROMO, "boss", wall.now))
    await say(client, settings, f"确认 {code}", "boss", wall.now)
    await services.background.idle()
    b = await Broadcast.get()
    await services.broadcasts.cancel(int(b.id), actor="test")
    await _tick(services)
    await _tick(services)
    texts = _agent(fake)
    assert len(texts) == 2, texts
    assert "已取消。发送报告" in texts[1]
    assert "已取消 3（群发已取消 3）" in texts[1]


async def test_a_confirmed_draft_left_by_a_dead_process_is_started_by_the_tick(
    make_client: AppMaker, database: str, fake: FakeServer, wall: FakeWall
) -> None:
    client, settings, services = await _app(make_client, database, fake)
    await members(services, 2, fake=fake)
    code = _code(await say(client, settings, PROMO, "boss", wall.now))
    # The code was taken, then the process died before its background start ran.
    taken = await codes.take("boss", digest("boss", code), services.clock.now())
    assert taken.outcome == "taken"
    await _tick(services)
    assert (await Broadcast.get()).state == "draft"  # within the grace: maybe still starting
    wall.advance(RESTART_AFTER.total_seconds())
    await _tick(services)
    assert (await Broadcast.get()).state == "sending"
    assert (await AuditLog.get(action="broadcast.sending")).actor == "staff:boss"
    await _tick(services)
    await _tick(services)
    assert [t.split("「")[0] for t in _agent(fake)] == [f"群发 #{taken.broadcast_id}"] * 2


async def test_progress_on_demand(
    make_client: AppMaker, database: str, fake: FakeServer, wall: FakeWall
) -> None:
    client, settings, services = await _app(make_client, database, fake)
    await members(services, 2, fake=fake)

    async def ask(text: str) -> str:
        return await say(client, settings, text, "boss", wall.now)

    assert "没有找到群发" in await ask("进度")
    code = _code(await ask(PROMO))
    b = await Broadcast.get()
    assert "草稿" in await ask("进度")
    await ask(f"确认 {code}")
    await services.background.idle()
    reply = await ask(f"进度 {b.id}")
    assert "：发送中，进度 0%（0 / 2）" in reply
    assert "待发送 2" in reply
    await _tick(services)
    await _tick(services)
    reply = await ask(f"进度 #{b.id}")
    assert "：已完成，进度 100%（2 / 2）" in reply
    assert "已送达 2" in reply
    assert "没有找到群发 #999" in await ask("进度 999")
    assert await Member.all().count() == 2


@pytest.mark.postgres
async def test_racing_takes_of_one_code_take_it_once(wide_pool: str) -> None:  # noqa: F811
    now = RACE_AT
    await _issued()
    results = await asyncio.gather(
        *(codes.take("boss", digest("boss", "123456"), now) for _ in range(16))
    )
    assert sorted(r.outcome for r in results) == ["taken"] + ["used"] * 15


@pytest.mark.postgres
async def test_the_race_assertion_catches_a_check_then_update(wide_pool: str) -> None:  # noqa: F811
    row = await _issued()
    barrier = asyncio.Barrier(16)

    async def naive() -> str:
        found = await BroadcastConfirmation.get(id=row.id)
        await barrier.wait()  # every racer has read the row pending
        if found.status != codes.PENDING:
            return "used"
        await BroadcastConfirmation.filter(id=row.id).update(status=codes.USED)
        return "taken"

    results = await asyncio.gather(*(naive() for _ in range(16)))
    assert results.count("taken") == 16  # the assertion above would fail on this


async def _issued() -> BroadcastConfirmation:
    """Boss's code 123456 for a bare draft (the races need no members)."""
    b = await Broadcast.create(name="b", channel="oa_cs", created_at=RACE_AT, updated_at=RACE_AT)
    return await codes.issue(int(b.id), "boss", digest("boss", "123456"), RACE_AT, CODE_TTL)


async def test_in_the_quiet_hours_the_manager_is_told_when_marketing_goes_out(
    make_client: AppMaker, database: str, fake: FakeServer, wall: FakeWall
) -> None:
    wall.now -= 4 * 3600  # back to 06:13 in Shanghai, inside 22:00–08:00
    client, settings, services = await _app(make_client, database, fake)
    await members(services, 1, fake=fake)
    code = _code(await say(client, settings, PROMO, "boss", wall.now))
    await say(client, settings, f"确认 {code}", "boss", wall.now)
    await services.background.idle()
    await _tick(services)
    assert "营销消息将在 08:00 后发出" in await say(client, settings, "进度", "boss", wall.now)
    texts = _agent(fake)
    assert len(texts) == 1
    assert "营销消息将在 08:00 后发出" in texts[0]
    assert (await OutboxMessage.get(source="broadcast")).status == "pending"


async def test_wecom_customer_channel_and_a_segment_rule_that_cannot_run(
    make_client: AppMaker, database: str, fake: FakeServer, wall: FakeWall
) -> None:
    client, settings, services = await _app(make_client, database, fake)
    await members(services, 2, fake=fake)
    reply = await say(
        client,
        settings,
        "群发 gold broadcast_promo wecom_customer 新品到店\n欢迎\n来店试穿",
        "boss",
        wall.now,
    )
    assert "预计触达：0 / 2 人" in reply
    assert "没有在职的跟进员工 2 人" in reply
    b = await Broadcast.get()
    assert (b.channel, b.account) == ("wecom_customer", "corp")
    assert b.content["variables"] == {"headline": "新品到店", "body": "欢迎\n来店试穿"}
    await Segment.filter(name="gold").update(rule={"all": [{"field": "shoe_size", "in": [42]}]})
    reply = await say(client, settings, PROMO, "boss", wall.now)
    assert "无法创建群发" in reply
    assert "确认码" not in reply
    assert await Broadcast.filter(state="cancelled").count() == 1
    assert await BroadcastConfirmation.all().count() == 1


def test_receive_limit_reasons_read_in_chinese() -> None:
    from zoneinfo import ZoneInfo

    from bot.services.broadcast_labels import reason_label
    from bot.services.broadcast_sql import OPTED_OUT, Target, receive_limit

    tz = ZoneInfo("Asia/Shanghai")
    now = datetime(2027, 2, 17, 10, 0, tzinfo=tz)
    for rule, text in (
        ("month", "本月已收到 28 条"),
        ("week", "本周已收到 7 条"),
        ("day", "今天已收到 1 条"),
    ):
        t = Target(1, "wecom_customer", "marketing", "", "", "corp", now, tz, receive_rule=rule)
        assert reason_label(receive_limit(t)).startswith(text)
    assert reason_label(OPTED_OUT) == "已退订"
    assert reason_label("something new") == "something new"
