"""Every follower becomes one member: subscribe, unsubscribe, return, races, activity."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.context import Services
from storage.models import Identity, Member
from tests.conftest import OA_APPID, AppMaker, base_config, make_settings
from tests.fakes import FakeWall
from tests.helpers import oa_crypto, oa_text, post_oa, reply_fields


def _event(openid: str, event: str, at: int, key: str = "") -> str:
    return (
        f"<xml><ToUserName><![CDATA[gh_brand]]></ToUserName><FromUserName><![CDATA[{openid}]]>"
        f"</FromUserName><CreateTime>{at}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[{event}]]></Event><EventKey><![CDATA[{key}]]></EventKey></xml>"
    )


async def test_subscribe_unsubscribe_and_return_keep_one_member(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    first = await post_oa(
        client, settings, _event("oFan", "subscribe", int(wall.now)), timestamp=int(wall.now)
    )
    welcome = reply_fields(oa_crypto(settings), await first.text())["Content"]
    member = await Member.get()
    assert "欢迎加入会员" in welcome
    assert member.code in welcome
    assert "普卡" in welcome
    identity = await Identity.get(member_id=member.id)
    assert (identity.kind, identity.app, identity.value, identity.followed) == (
        "oa_openid",
        OA_APPID,
        "oFan",
        True,
    )
    wall.advance(10)
    await post_oa(
        client, settings, _event("oFan", "unsubscribe", int(wall.now)), timestamp=int(wall.now)
    )
    await identity.refresh_from_db()
    assert identity.followed is False
    assert identity.unfollowed_at is not None
    wall.advance(10)
    again = await post_oa(
        client, settings, _event("oFan", "subscribe", int(wall.now)), timestamp=int(wall.now)
    )
    assert "欢迎回来" in reply_fields(oa_crypto(settings), await again.text())["Content"]
    assert await Member.all().count() == 1
    await identity.refresh_from_db()
    assert identity.followed is True


async def test_a_member_who_wrote_before_following_is_welcomed_as_new(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    await post_oa(client, settings, oa_text("帮助", openid="oEarly"), timestamp=int(wall.now))
    resp = await post_oa(
        client, settings, _event("oEarly", "subscribe", int(wall.now)), timestamp=int(wall.now)
    )
    assert "欢迎加入会员" in reply_fields(oa_crypto(settings), await resp.text())["Content"]
    assert await Member.all().count() == 1


async def test_concurrent_first_messages_through_two_instances_make_one_member(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    from storage.cache import MemoryCache

    settings = make_settings(base_config(database), business={"rate_limit_per_minute": 1000})
    # two processes: separate in-process caches and locks; only the database is shared
    one = await make_client(settings, cache=MemoryCache())
    two = await make_client(settings, cache=MemoryCache())
    posts = [
        post_oa(c, settings, oa_text("帮助", openid="oRacer"), timestamp=int(wall.now))
        for c in (one, two) * 10
    ]
    responses = await asyncio.gather(*posts)
    assert all(r.status == 200 for r in responses)
    assert await Member.all().count() == 1
    assert await Identity.filter(value="oRacer").count() == 1


async def test_messages_record_activity_off_the_reply_path(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    await post_oa(client, settings, oa_text("帮助", openid="oActive"), timestamp=int(wall.now))
    identity = await Identity.get(value="oActive")
    assert identity.last_message_at is None  # not written on the reply path
    await _services(client).members.activity.flush()
    await identity.refresh_from_db()
    member = await Member.get(id=identity.member_id)  # type: ignore[attr-defined]
    assert identity.last_message_at is not None
    assert member.last_active_at is not None
    assert identity.last_message_at == member.last_active_at


def _services(client: Any) -> Services:
    from bot.appkeys import SERVICES

    services: Services = client.app[SERVICES]
    return services
