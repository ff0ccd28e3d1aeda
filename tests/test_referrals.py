"""Referrals: a follow through ``ref_<code>`` rewards the referrer once per genuinely new member."""

from __future__ import annotations

import asyncio
from typing import Any

from storage.cache import MemoryCache
from storage.models import Member, OutboxMessage, PointsEntry
from tests.conftest import AppMaker, base_config, make_settings
from tests.fakes import FakeWall
from tests.helpers import oa_crypto, oa_text, post_oa, reply_fields
from tests.test_binding import _member_of, _send, _services, _subscribe
from tests.test_members import _event


async def _referrer(
    client: Any, settings: Any, wall: FakeWall, openid: str = "oReferrer"
) -> Member:
    await _subscribe(client, settings, wall, openid)
    return await _member_of(openid)


async def _rewards(member: Member) -> list[str]:
    entries = await PointsEntry.filter(member_id=member.id, source="referral").order_by("id")
    return [e.idempotency_key for e in entries]


async def test_a_new_member_rewards_the_referrer_once(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database), referral={"points": 40})
    client = await make_client(settings)
    referrer = await _referrer(client, settings, wall)
    welcome = await _subscribe(client, settings, wall, "oNew", f"qrscene_ref_{referrer.code}")
    new = await _member_of("oNew")
    assert "好友的邀请" in welcome
    assert new.referred_by_id == referrer.id
    assert new.channel == f"qr:ref_{referrer.code}"
    await referrer.refresh_from_db()
    assert referrer.points_balance == 40
    assert await _rewards(referrer) == [f"referral:{new.id}"]
    notice = await OutboxMessage.get(idempotency_key=f"notify:referral:{new.id}")
    assert notice.member_id == referrer.id
    assert "40 积分已到账" in notice.payload["text"]
    # re-subscribing through the same code: not new any more
    await _send(client, settings, wall, lambda at: _event("oNew", "unsubscribe", at))
    again = await _subscribe(client, settings, wall, "oNew", f"qrscene_ref_{referrer.code}")
    assert "欢迎回来" in again
    assert "好友的邀请" not in again
    await referrer.refresh_from_db()
    assert referrer.points_balance == 40
    await _services(client).background.idle()


async def test_two_new_members_make_two_rewards(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    referrer = await _referrer(client, settings, wall)
    for openid in ("oFirst", "oSecond"):
        await _subscribe(client, settings, wall, openid, f"qrscene_ref_{referrer.code}")
    await referrer.refresh_from_db()
    assert referrer.points_balance == 2 * settings.referral.points
    assert len(await _rewards(referrer)) == 2
    await _services(client).background.idle()


async def test_returning_followers_self_referrals_and_unknown_codes_earn_nothing(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    referrer = await _referrer(client, settings, wall)
    # a member who unfollowed comes back through someone's code
    await _subscribe(client, settings, wall, "oOld")
    await _send(client, settings, wall, lambda at: _event("oOld", "unsubscribe", at))
    await _subscribe(client, settings, wall, "oOld", f"qrscene_ref_{referrer.code}")
    # a member (who wrote before ever following) follows through their own code
    await _send(client, settings, wall, lambda at: oa_text("帮助", openid="oSelf", at=at))
    own = await _member_of("oSelf")
    await _subscribe(client, settings, wall, "oSelf", f"qrscene_ref_{own.code}")
    # an unknown code: just the welcome
    welcome = await _subscribe(client, settings, wall, "oLost", "qrscene_ref_NOSUCH99")
    assert "欢迎加入会员" in welcome
    assert "好友的邀请" not in welcome
    # the referrer re-follows through their own code
    await _send(client, settings, wall, lambda at: _event("oReferrer", "unsubscribe", at))
    await _subscribe(client, settings, wall, "oReferrer", f"qrscene_ref_{referrer.code}")
    assert await PointsEntry.filter(source="referral").count() == 0
    assert await Member.filter(referred_by_id__not_isnull=True).count() == 0
    await _services(client).background.idle()


async def test_a_member_who_wrote_before_following_counts_as_new(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    referrer = await _referrer(client, settings, wall)
    await _send(client, settings, wall, lambda at: oa_text("帮助", openid="oEarly", at=at))
    await _subscribe(client, settings, wall, "oEarly", f"qrscene_ref_{referrer.code}")
    await referrer.refresh_from_db()
    assert referrer.points_balance == settings.referral.points
    await _services(client).background.idle()


async def test_retried_subscribes_reward_once(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database), business={"rate_limit_per_minute": 1000})
    client = await make_client(settings)
    referrer = await _referrer(client, settings, wall)
    wall.advance(1)
    at = int(wall.now)
    xml = _event("oRetry", "subscribe", at, f"qrscene_ref_{referrer.code}")
    # WeChat retries the same delivery three times; then three instances that share only
    # the database (their dedupe caches are their own) each receive it again.
    replies = [await (await post_oa(client, settings, xml, timestamp=at)).text() for _ in range(3)]
    assert len({reply_fields(oa_crypto(settings), r)["Content"] for r in replies}) == 1
    others = [await make_client(settings, cache=MemoryCache()) for _ in range(3)]
    posts = [post_oa(c, settings, xml, timestamp=at) for c in others]
    assert all(r.status == 200 for r in await asyncio.gather(*posts))
    await referrer.refresh_from_db()
    assert referrer.points_balance == settings.referral.points
    assert len(await _rewards(referrer)) == 1
    for c in (client, *others):
        await _services(c).background.idle()


async def test_disabled_referrals_reward_nobody(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database), referral={"enabled": False})
    client = await make_client(settings)
    referrer = await _referrer(client, settings, wall)
    await _subscribe(client, settings, wall, "oNew", f"qrscene_ref_{referrer.code}")
    assert (await _member_of("oNew")).referred_by_id is None
    assert await PointsEntry.filter(source="referral").count() == 0
    await _services(client).background.idle()
