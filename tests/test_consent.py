"""退订 / TD / 订阅 through the callback, Consent rows, and the audience building block."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from tortoise import connections

from bot.services import consent
from storage import audience
from storage.models import Consent, Member
from tests.conftest import AppMaker, base_config, make_settings
from tests.fakes import FakeWall
from tests.privacy_support import say

SH = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 12, 1, 9, 0, tzinfo=SH)


async def test_opt_out_and_in_by_chat_record_consent(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database), privacy={"marketing_text_version": "v7"})
    client = await make_client(settings)
    assert "已退订营销消息" in await say(client, settings, wall, "退订", "oConsent1")
    member = await Member.get()
    assert member.marketing_opt_out is True
    assert "您已处于退订状态" in await say(client, settings, wall, "td", "oConsent1")
    assert "您已处于退订状态" in await say(client, settings, wall, " TD ", "oConsent1")
    back = await say(client, settings, wall, "订阅", "oConsent1")
    assert "已重新订阅营销消息" in back
    assert "TD 退订" in back
    await member.refresh_from_db()
    assert member.marketing_opt_out is False
    rows = (
        await Consent.filter(member_id=member.id)
        .order_by("id")
        .values("purpose", "granted", "channel", "text_version")
    )
    assert rows == [
        {"purpose": "marketing", "granted": g, "channel": "oa_chat", "text_version": "v7"}
        for g in (False, False, False, True)
    ]


async def test_keywords_are_configurable(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(
        base_config(database), chat={"keywords": {"opt_out": ["不要推送"], "opt_in": ["要推送"]}}
    )
    client = await make_client(settings)
    assert "已退订" in await say(client, settings, wall, "不要推送", "oConsent2")
    assert "已退订" not in await say(client, settings, wall, "TD", "oConsent2")
    assert "已重新订阅" in await say(client, settings, wall, "要推送", "oConsent2")


async def _member(code: str, **values: object) -> int:
    row = await Member.create(code=code, created_at=AT, **values)
    return int(row.id)


async def test_audience_excludes_opted_out_for_marketing_only(database: str) -> None:
    active = await _member("AUD00001")
    opted_in_again = await _member("AUD00002")
    opted_out = await _member("AUD00003")
    await consent.opt_out(opted_in_again, "oa_chat", "v1", now=AT)
    await consent.opt_in(opted_in_again, "oa_chat", "v1", now=AT)
    await consent.opt_out(opted_out, "oa_chat", "v1", now=AT)
    merged = await _member("AUD00004", status="merged", merged_into_id=active)
    deleted = await _member("AUD00005", status="deleted", deleted_at=AT)
    erased_flag_only = await _member("AUD00006", deleted_at=AT)  # a half-written erasure

    marketing = set(await Member.filter(audience.marketing_q()).values_list("id", flat=True))
    service = set(await Member.filter(audience.service_q()).values_list("id", flat=True))
    assert marketing == {active, opted_in_again}
    assert service == {active, opted_in_again, opted_out}
    assert not {merged, deleted, erased_flag_only} & (marketing | service)

    conn = connections.get("default")
    for condition, expected in (
        (audience.marketing_sql("m"), marketing),
        (audience.service_sql("m"), service),
    ):
        _, rows = await conn.execute_query(f"SELECT m.id FROM member m WHERE {condition}")  # noqa: S608
        assert {int(r["id"]) for r in rows} == expected
    _, rows = await conn.execute_query(f"SELECT id FROM member WHERE {audience.marketing_sql()}")  # noqa: S608
    assert {int(r["id"]) for r in rows} == marketing
