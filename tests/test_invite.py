"""邀请: the member's referral QR code as an image, cached, re-issued, or as a link."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import ClientSession

from bot.appkeys import INTAKE, SENDER
from bot.config import Settings
from bot.replies import ImageReply, render_reply
from storage.models import OutboxMessage
from tests.conftest import OA_APPID, AppMaker, FakeServer, base_config, make_settings
from tests.fakes import FakeWall, ManualBudget
from tests.helpers import oa_crypto, oa_text, post_oa, reply_fields
from tests.test_binding import _member_of, _services, _subscribe
from tests.test_members import _event

DAY = 86_400


async def _invite(
    client: Any, settings: Settings, wall: FakeWall, openid: str = "oUser1"
) -> dict[str, Any]:
    wall.advance(1)
    at = int(wall.now)
    resp = await post_oa(client, settings, oa_text("邀请", openid=openid, at=at), timestamp=at)
    return reply_fields(oa_crypto(settings), await resp.text())


def _calls(fake: FakeServer, api: str) -> int:
    return len(fake.platform.calls("oa", api))


async def test_invite_replies_with_the_referral_qr_image(
    make_client: AppMaker, wall: FakeWall, fake: FakeServer, fake_settings: Settings
) -> None:
    client = await make_client(fake_settings)
    await _subscribe(client, fake_settings, wall, "oUser1")
    member = await _member_of("oUser1")
    reply = await _invite(client, fake_settings, wall)
    assert reply["MsgType"] == "image"
    media_id = reply["Image"]["MediaId"]
    assert media_id in fake.platform.world.accounts[OA_APPID].media
    create = fake.platform.calls("oa", "cgi-bin/qrcode/create")[0].body
    assert create["action_name"] == "QR_STR_SCENE"
    assert create["action_info"]["scene"]["scene_str"] == f"ref_{member.code}"
    assert create["expire_seconds"] == 30 * DAY
    # the menu button answers the same, from the cache: no new code, no new upload
    wall.advance(1)
    at = int(wall.now)
    resp = await post_oa(
        client, fake_settings, _event("oUser1", "CLICK", at, "INVITE"), timestamp=at
    )
    clicked = reply_fields(oa_crypto(fake_settings), await resp.text())
    assert clicked["Image"]["MediaId"] == media_id
    assert _calls(fake, "cgi-bin/qrcode/create") == 1
    assert _calls(fake, "cgi-bin/media/upload") == 1
    await _services(client).background.idle()


async def test_media_is_re_uploaded_within_3_days_and_the_qr_re_issued_when_expired(
    make_client: AppMaker, wall: FakeWall, fake: FakeServer, fake_settings: Settings
) -> None:
    client = await make_client(fake_settings)
    first = (await _invite(client, fake_settings, wall))["Image"]["MediaId"]
    wall.advance(3 * DAY - 1800)  # the media would still live half an hour: too close
    second = (await _invite(client, fake_settings, wall))["Image"]["MediaId"]
    assert second != first
    assert (_calls(fake, "cgi-bin/qrcode/create"), _calls(fake, "cgi-bin/media/upload")) == (1, 2)
    wall.advance(27 * DAY)  # the 30-day ticket is (nearly) over: a new one
    third = (await _invite(client, fake_settings, wall))["Image"]["MediaId"]
    assert third not in (first, second)
    assert (_calls(fake, "cgi-bin/qrcode/create"), _calls(fake, "cgi-bin/media/upload")) == (2, 3)
    tickets = [c.query["ticket"] for c in fake.platform.calls("mp", "cgi-bin/showqrcode")]
    assert len(tickets) == 3
    assert tickets[0] == tickets[1] != tickets[2]
    await _services(client).background.idle()


async def test_a_failed_upload_falls_back_to_the_showqrcode_link(
    make_client: AppMaker, wall: FakeWall, fake: FakeServer, fake_settings: Settings
) -> None:
    client = await make_client(fake_settings)
    fake.platform.fail("oa", "cgi-bin/media/upload", errcode=40004)
    reply = await _invite(client, fake_settings, wall)
    assert reply["MsgType"] == "text"
    content = reply["Content"]
    assert "邀请好友扫码关注" in content
    assert "30 天内有效" in content
    url = next(line for line in content.splitlines() if line.startswith("http"))
    assert url.startswith(f"{fake.url}/mp/cgi-bin/showqrcode?ticket=")
    async with ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        assert (await resp.read()).startswith(b"\x89PNG")
    await _services(client).background.idle()


async def test_no_qr_code_gets_a_polite_text(
    make_client: AppMaker, wall: FakeWall, fake: FakeServer, fake_settings: Settings
) -> None:
    client = await make_client(fake_settings)
    fake.platform.fail("oa", "cgi-bin/qrcode/create", errcode=40013)
    reply = await _invite(client, fake_settings, wall)
    assert "暂时无法生成" in reply["Content"]
    # nothing was cached: the next 邀请 tries again and succeeds
    assert (await _invite(client, fake_settings, wall))["MsgType"] == "image"
    await _services(client).background.idle()


async def test_a_slow_platform_answers_through_the_late_reply(
    make_client: AppMaker,
    wall: FakeWall,
    fake: FakeServer,
    fake_settings: Settings,
    budget: ManualBudget,
) -> None:
    client = await make_client(fake_settings, late_hook=None)
    fake.platform.interaction(appid=OA_APPID, openid="oUser2", kind="message")
    held = fake.platform.hold("oa", "cgi-bin/qrcode/create")
    wall.advance(1)
    at = int(wall.now)
    xml = oa_text("邀请", openid="oUser2", msg_id=77, at=at)
    post = asyncio.ensure_future(post_oa(client, fake_settings, xml, timestamp=at))
    await budget.waiting()
    budget.fire()
    assert await (await post).text() == "success"
    held.release()
    await client.app[INTAKE].drain()  # the late handler has finished and enqueued its reply
    row = await OutboxMessage.get(idempotency_key="late:oa:brand:msg:77")
    media_id = row.payload["image"]["media_id"]
    assert media_id in fake.platform.world.accounts[OA_APPID].media
    await client.app[SENDER].drain()
    await row.refresh_from_db()
    assert row.status == "sent"
    assert [d.text for d in fake.platform.messages(openid="oUser2")] == [f"[image] {media_id}"]
    await _services(client).background.idle()


async def test_disabled_referrals_say_so(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database), referral={"enabled": False})
    client = await make_client(settings)
    assert "暂未开启" in (await _invite(client, settings, wall, "oAny"))["Content"]


def test_image_reply_xml_escapes_the_media_id() -> None:
    xml = render_reply(ImageReply("m]]>x<y"), "oUser", "gh_brand", 1)
    fields = reply_fields(None, xml)
    assert fields["MsgType"] == "image"
    assert fields["Image"] == {"MediaId": "m]]>x<y"}
