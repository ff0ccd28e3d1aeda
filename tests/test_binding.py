"""Binding followers: scene channels, the unionid off the reply path, the fresh-member merge."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from bot.appkeys import SERVICES
from bot.background import Background
from bot.config import Settings
from bot.context import MemberRef, Services
from bot.services import points
from storage.cache import Cache
from storage.keys import KeyBuilder
from storage.models import Identity, Member, MemberMerge
from storage.repos import binding as binding_repo
from storage.repos import members as members_repo
from tests.conftest import OA_APPID, AppMaker, FakeServer, base_config, make_settings
from tests.fakes import FakeWall
from tests.helpers import oa_crypto, oa_text, post_oa, reply_fields
from tests.test_members import _event


def _services(client: Any) -> Services:
    services: Services = client.app[SERVICES]
    return services


async def _send(client: Any, settings: Settings, wall: FakeWall, xml_of: Any) -> str:
    """Post one callback at a new second (so it is not a retry); its reply's content."""
    wall.advance(1)
    at = int(wall.now)
    resp = await post_oa(client, settings, xml_of(at), timestamp=at)
    text = await resp.text()
    if text == "success":
        return ""
    return str(reply_fields(oa_crypto(settings), text).get("Content", ""))


async def _member_of(openid: str) -> Member:
    identity = await Identity.get(kind="oa_openid", value=openid)
    return await Member.get(id=identity.member_id)  # type: ignore[attr-defined]


async def _subscribe(
    client: Any, settings: Settings, wall: FakeWall, openid: str, key: str = ""
) -> str:
    return await _send(client, settings, wall, lambda at: _event(openid, "subscribe", at, key))


# --- channels ---------------------------------------------------------------------------


async def test_new_members_get_the_channel_of_their_scene(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database), oa={"scenes": {"store-001": "store:001"}})
    client = await make_client(settings)
    await _subscribe(client, settings, wall, "oStore", "qrscene_store-001")
    await _subscribe(client, settings, wall, "oPoster", "qrscene_poster-9")
    await _subscribe(client, settings, wall, "oOrganic")
    await _send(client, settings, wall, lambda at: _event("oScanner", "SCAN", at, "store-001"))
    await _services(client).background.idle()
    assert (await _member_of("oStore")).channel == "store:001"
    assert (await _member_of("oPoster")).channel == "qr:poster-9"
    assert (await _member_of("oOrganic")).channel == "organic"
    assert (await _member_of("oScanner")).channel == "store:001"


async def test_a_channel_is_never_overwritten(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    await _subscribe(client, settings, wall, "oFan", "qrscene_first")
    await _send(client, settings, wall, lambda at: _event("oFan", "unsubscribe", at))
    await _subscribe(client, settings, wall, "oFan", "qrscene_second")
    await _send(client, settings, wall, lambda at: _event("oFan", "SCAN", at, "third"))
    await _send(client, settings, wall, lambda at: oa_text("帮助", openid="oWriter", at=at))
    await _subscribe(client, settings, wall, "oWriter", "qrscene_later")
    await _services(client).background.idle()
    assert (await _member_of("oFan")).channel == "qr:first"
    # created by a message (an old follower writing first): how they came is unknown
    assert (await _member_of("oWriter")).channel == ""


# --- unionid ------------------------------------------------------------------------------


async def test_unionid_is_fetched_after_the_reply_and_bound(
    make_client: AppMaker, wall: FakeWall, fake: FakeServer, fake_settings: Settings
) -> None:
    client = await make_client(fake_settings)
    held = fake.platform.hold("oa", "cgi-bin/user/info")
    welcome = await _subscribe(client, fake_settings, wall, "oUser1")
    assert "欢迎加入会员" in welcome  # answered while the platform still holds user/info
    background = _services(client).background
    assert background.running == 1
    assert not await Identity.filter(kind="unionid").exists()
    held.release()
    await background.idle()
    member = await _member_of("oUser1")
    unionid = await Identity.get(kind="unionid", app="", value="uUnion1")
    assert unionid.member_id == member.id  # type: ignore[attr-defined]
    assert fake.platform.calls("oa", "cgi-bin/user/info")[0].query["openid"] == "oUser1"


async def _existing_member(unionid: str, with_points: bool = True) -> Member:
    """A member known from WeCom (external contact + unionid), with some points."""
    row = await members_repo.create_with_identity(
        "wecom_external_userid", "", f"wm-{unionid}", now=_at()
    )
    await Identity.create(kind="unionid", app="", value=unionid, member_id=row.id, created_at=_at())
    if with_points:
        await points.earn(
            row.id,
            30,
            f"seed:{unionid}",
            now=_at(),
            expires_at=_at(days=400),
            reason="seed",
            source="test",
        )
    return await Member.get(id=row.id)


def _at(days: int = 0) -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime(2023, 11, 14, tzinfo=UTC) + timedelta(days=days)


async def test_a_fresh_follower_merges_into_the_unionid_holder(
    make_client: AppMaker,
    wall: FakeWall,
    fake: FakeServer,
    fake_settings: Settings,
    cache: Cache,
    keys: KeyBuilder,
) -> None:
    survivor = await _existing_member("uUnion2")
    client = await make_client(fake_settings)
    held = fake.platform.hold("oa", "cgi-bin/user/info")
    fresh_welcome = await _subscribe(client, fake_settings, wall, "oUser2")
    fresh = await _member_of("oUser2")
    assert fresh.id != survivor.id
    assert fresh.code in fresh_welcome
    assert await cache.get(keys.identity("oa_openid", OA_APPID, "oUser2")) is not None
    held.release()
    await _services(client).background.idle()
    await fresh.refresh_from_db()
    assert (fresh.status, fresh.merged_into_id) == ("merged", survivor.id)
    openid = await Identity.get(kind="oa_openid", value="oUser2")
    assert openid.member_id == survivor.id  # type: ignore[attr-defined]
    merge = await MemberMerge.get()
    assert (merge.survivor_id, merge.merged_id) == (survivor.id, fresh.id)  # type: ignore[attr-defined]
    assert merge.moved == {"identity": [openid.id]}
    assert merge.actor == "system:unionid"
    assert await cache.get(keys.identity("oa_openid", OA_APPID, "oUser2")) is None
    # the next callback resolves to the survivor, whose points are there
    await _send(client, fake_settings, wall, lambda at: _event("oUser2", "unsubscribe", at))
    again = await _subscribe(client, fake_settings, wall, "oUser2")
    assert survivor.code in again
    assert "可用积分：30" in again
    await _services(client).background.idle()
    assert await MemberMerge.all().count() == 1
    assert await Member.filter(status="active").count() == 1


async def test_members_who_both_have_history_are_not_merged(
    make_client: AppMaker, wall: FakeWall, fake_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    holder = await _existing_member("uUnion3")
    client = await make_client(fake_settings)
    await _send(client, fake_settings, wall, lambda at: oa_text("帮助", openid="oUser3", at=at))
    with caplog.at_level(logging.INFO, logger="bot.binding"):
        await _subscribe(client, fake_settings, wall, "oUser3")
        await _services(client).background.idle()
    follower = await _member_of("oUser3")
    assert follower.id != holder.id
    assert follower.status == "active"
    assert not await MemberMerge.exists()
    assert not await Identity.filter(kind="unionid", member_id=follower.id).exists()
    assert "not merged automatically" in caplog.text


async def test_a_fresh_member_with_points_is_not_merged(services: Services) -> None:
    await _existing_member("uUnion1")
    fresh = await members_repo.create_with_identity("oa_openid", OA_APPID, "oUser1", now=_at())
    await points.earn(
        fresh.id, 5, "seed:fresh", now=_at(), expires_at=_at(days=400), reason="seed", source="test"
    )
    result = await services.binding.bind_unionid(
        "brand", "oUser1", MemberRef(fresh.id, fresh.code, True)
    )
    assert result is not None
    assert result.outcome == "conflict"
    assert (await Member.get(id=fresh.id)).status == "active"


async def test_binding_is_idempotent(services: Services) -> None:
    row = await members_repo.create_with_identity("oa_openid", OA_APPID, "oUser1", now=_at())
    ref = MemberRef(row.id, row.code, True)
    first = await services.binding.bind_unionid("brand", "oUser1", ref)
    second = await services.binding.bind_unionid("brand", "oUser1", ref)
    assert first is not None
    assert second is not None
    assert (first.outcome, second.outcome) == ("bound", "held")
    assert await Identity.filter(kind="unionid", value="uUnion1").count() == 1


async def test_a_merge_happens_once(services: Services) -> None:
    survivor = await _existing_member("uUnion2", with_points=False)
    fresh = await members_repo.create_with_identity("oa_openid", OA_APPID, "oUser2", now=_at())
    ref = MemberRef(fresh.id, fresh.code, True)
    results = await asyncio.gather(
        *(services.binding.bind_unionid("brand", "oUser2", ref) for _ in range(3))
    )
    outcomes = sorted(r.outcome for r in results if r is not None)
    assert outcomes == ["merged", "skipped", "skipped"]
    assert await MemberMerge.filter(survivor_id=survivor.id).count() == 1


async def test_concurrent_binders_of_one_unionid_leave_one_holder(database: str) -> None:
    one = await members_repo.create_with_identity("oa_openid", "wxA", "oA", now=_at())
    two = await members_repo.create_with_identity("oa_openid", "wxB", "oB", now=_at())
    results = await asyncio.gather(
        binding_repo.bind_unionid(one.id, "uShared", _at(), fresh=False),
        binding_repo.bind_unionid(two.id, "uShared", _at(), fresh=False),
    )
    assert sorted(r.outcome for r in results) == ["bound", "conflict"]
    assert len({r.holder_id for r in results}) == 1
    assert await Identity.filter(kind="unionid", value="uShared").count() == 1


async def test_user_info_failures_are_logged_and_the_welcome_stands(
    make_client: AppMaker,
    wall: FakeWall,
    fake: FakeServer,
    fake_settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await make_client(fake_settings)
    fake.platform.fail("oa", "cgi-bin/user/info", errcode=40003)
    with caplog.at_level(logging.WARNING, logger="bot.binding"):
        welcome = await _subscribe(client, fake_settings, wall, "oUser1")
        await _services(client).background.idle()
    assert "欢迎加入会员" in welcome
    assert "user info failed" in caplog.text
    assert not await Identity.filter(kind="unionid").exists()
    # an openid the platform does not know is the same: logged, nothing bound
    assert "欢迎加入会员" in await _subscribe(client, fake_settings, wall, "oStranger")
    await _services(client).background.idle()
    assert not await Identity.filter(kind="unionid").exists()


# --- the background runner ---------------------------------------------------------------


async def test_background_logs_failures_and_cancels_at_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    background = Background()
    never = asyncio.Event()

    async def stuck() -> None:
        await never.wait()

    async def broken() -> None:
        raise RuntimeError("boom")

    background.spawn(broken(), name="broken")
    with caplog.at_level(logging.ERROR, logger="bot.background"):
        await background.idle()
    assert "background work failed" in caplog.text
    background.spawn(stuck(), name="stuck")
    assert background.running == 1
    await background.close(seconds=0)
    assert background.running == 0
    background.spawn(stuck(), name="late")  # after shutdown: dropped, not started
    assert background.running == 0
