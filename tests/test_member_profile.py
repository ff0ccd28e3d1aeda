"""A member's whole story: ``GET /api/members`` search (masked mobiles), the profile at
``GET /api/members/{code}``, and the orders/refunds/redemptions/coupons of ``members show``."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient

from bot.cli import main
from bot.services import mobile, points
from bot.services.pii import MobileVault
from storage.models import (
    Consent,
    Coupon,
    Identity,
    Member,
    MemberTag,
    Order,
    OrderRefund,
    Redemption,
    Reward,
    Tag,
    TagGroup,
)
from tests.cli_support import HMAC_KEY, KEYS, MOBILE_KEY, with_db, write_config
from tests.conftest import AppMaker, api_headers, base_config, make_settings

Client = TestClient[Any, Any]
SH = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 5, 20, 9, 30, tzinfo=SH)
RAW = "13800138000"
SECURITY = {"mobile_key": MOBILE_KEY, "mobile_hmac_key": HMAC_KEY}


async def _seed() -> Member:
    member = await Member.create(code="STORY001", created_at=AT, tier="silver", channel="pos")
    for kind, app, value in (
        ("oa_openid", "wx2c2769f8efd9abc2", "oStory1"),
        ("unionid", "", "uStory1"),
        ("wecom_external_userid", "wwcorp", "wmStory1"),
        ("legacy_code", "", "VIP-7"),
    ):
        await Identity.create(kind=kind, app=app, value=value, member=member, created_at=AT)
    vault = MobileVault(MOBILE_KEY, HMAC_KEY)
    await mobile.set_mobile(vault, member.id, RAW, now=AT)
    await points.earn(
        member.id,
        5000,
        "o:1",
        now=AT,
        expires_at=AT + timedelta(days=400),
        reason="order",
        source="order",
    )
    order = await Order.create(
        external_id="POS-1001",
        member=member,
        amount_fen=50000,
        refunded_fen=25000,
        channel="pos",
        store="SH001",
        paid_at=AT,
        points=5000,
        points_reversed=2500,
        growth=500,
        growth_reversed=250,
        created_at=AT,
    )
    await OrderRefund.create(
        order=order,
        refund_id="R-1",
        amount_fen=25000,
        points_reversed=2500,
        growth_reversed=250,
        created_at=AT + timedelta(hours=2),
    )
    reward = await Reward.create(
        code="C10",
        name="10元无门槛券",
        cost_points=1000,
        coupon_value_fen=1000,
        created_at=AT,
        updated_at=AT,
    )
    redemption = await Redemption.create(
        idempotency_key="redeem:1",
        reward=reward,
        member=member,
        points=1000,
        entry_id=1,
        channel="oa",
        created_at=AT,
    )
    await Coupon.create(
        code="K7Q2M9XW",
        member=member,
        reward=reward,
        redemption=redemption,
        name="10元无门槛券",
        value_fen=1000,
        valid_from=AT,
        valid_to=AT + timedelta(days=30),
        state="used",
        used_at=AT + timedelta(hours=1),
        used_order_id="POS-1001",
        created_at=AT,
    )
    await Coupon.create(
        code="D85ABCDE",
        member=member,
        name="全场85折券",
        discount=850,
        valid_from=AT,
        valid_to=AT + timedelta(days=14),
        source="grant",
        created_at=AT,
    )
    group = await TagGroup.create(name="兴趣")
    tag = await Tag.create(group=group, name="咖啡")
    await MemberTag.create(member=member, tag=tag, source="staff", set_by="zhangsan", created_at=AT)
    await Consent.create(member=member, purpose="marketing", granted=True, channel="oa", at=AT)
    return await Member.get(id=member.id)


@pytest.fixture
async def api(make_client: AppMaker, database: str) -> Client:
    return await make_client(make_settings(base_config(database), security=SECURITY))


@pytest.mark.parametrize(
    ("q", "matched"),
    [
        ("story001", ["code"]),
        ("+86 138-0013-8000", ["mobile"]),
        ("oStory1", ["oa_openid"]),
        ("uStory1", ["unionid"]),
        ("wmStory1", ["wecom_external_userid"]),
        ("VIP-7", ["legacy_code"]),
    ],
)
async def test_search_is_exact_on_every_key_and_masks_the_mobile(
    api: Client, q: str, matched: list[str]
) -> None:
    member = await _seed()
    response = await api.get("/api/members", params={"q": q}, headers=api_headers("staff"))
    assert response.status == 200
    text = await response.text()
    body = await response.json()
    assert [item["code"] for item in body["items"]] == ["STORY001"]
    assert body["matched_by"] == matched
    assert body["items"][0]["mobile"] == "138****8000"
    assert body["items"][0]["id"] == member.id
    assert RAW not in text
    assert member.mobile_hash not in text


async def test_search_misses_and_pages(api: Client) -> None:
    await _seed()
    for i in range(3):
        await Member.create(code=f"PAGE000{i}", created_at=AT)
    miss = await api.get(
        "/api/members", params={"q": "13900139000"}, headers=api_headers("manager")
    )
    assert (await miss.json())["items"] == []
    first = await (await api.get("/api/members?limit=3", headers=api_headers("manager"))).json()
    assert [i["code"] for i in first["items"]] == ["PAGE0002", "PAGE0001", "PAGE0000"]
    after = first["next_before_id"]
    rest = await (
        await api.get(f"/api/members?limit=3&before_id={after}", headers=api_headers("manager"))
    ).json()
    assert [i["code"] for i in rest["items"]] == ["STORY001"]
    assert rest["next_before_id"] is None
    silver = await (await api.get("/api/members?tier=silver", headers=api_headers("staff"))).json()
    assert [i["code"] for i in silver["items"]] == ["STORY001"]


async def test_integrations_may_not_search_members(api: Client) -> None:
    response = await api.get("/api/members?q=STORY001", headers=api_headers("integration"))
    assert response.status == 403
    assert (await response.json())["error"] == "forbidden"


async def test_mobile_search_without_keys_says_so(make_client: AppMaker) -> None:
    api = await make_client()
    response = await api.get("/api/members?q=13800138000", headers=api_headers("staff"))
    assert response.status == 409
    assert (await response.json())["error"] == "mobile_search_unavailable"


async def test_profile_tells_the_whole_story_without_the_mobile(api: Client) -> None:
    member = await _seed()
    response = await api.get("/api/members/story001", headers=api_headers("staff"))
    assert response.status == 200
    text = await response.text()
    body = await response.json()
    assert RAW not in text
    assert member.mobile_hash not in text
    assert body["mobile"] == "138****8000"
    assert (body["tier"], body["points_balance"], body["points_debt"]) == ("silver", 5000, 0)
    kinds = {i["kind"]: i["value"] for i in body["identities"]}
    assert kinds["mobile_hash"] == "138****8000"
    assert kinds["legacy_code"] == "VIP-7"
    assert body["ledger"][0]["amount"] == 5000
    assert body["open_lots"][0]["remaining"] == 5000
    assert body["order_totals"] == {"orders": 1, "paid_fen": 50000, "refunded_fen": 25000}
    assert body["orders"][0]["external_id"] == "POS-1001"
    assert body["orders"][0]["points_reversed"] == 2500
    assert body["refunds"][0] == {
        "order_external_id": "POS-1001",
        "refund_id": "R-1",
        "amount_fen": 25000,
        "points_reversed": 2500,
        "growth_reversed": 250,
        "created_at": body["refunds"][0]["created_at"],
    }
    assert body["redemptions"][0]["reward_code"] == "C10"
    coupons = {c["code"]: c for c in body["coupons"]}
    assert coupons["K7Q2M9XW"]["state"] == "used"
    assert coupons["K7Q2M9XW"]["used_order_id"] == "POS-1001"
    assert coupons["D85ABCDE"]["discount"] == 850
    assert body["tags"][0]["name"] == "咖啡"
    assert body["consents"][0]["purpose"] == "marketing"


async def test_profile_of_an_unknown_member_is_404(api: Client) -> None:
    for code in ("NOBODY99", "X" * 40):
        response = await api.get(f"/api/members/{code}", headers=api_headers("manager"))
        assert response.status == 404
        assert (await response.json())["error"] == "not_found"


def test_members_show_prints_orders_refunds_redemptions_and_coupons(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url, KEYS)
    with_db(db_url, _seed, fresh=True)
    capsys.readouterr()
    assert main(["--config", config, "members", "show", "VIP-7"]) == 0
    out = capsys.readouterr().out
    assert RAW not in out
    assert "orders (1; paid ¥500.00, refunded ¥250.00):" in out
    assert "POS-1001             2026-05-20 09:30:00      ¥500.00  refunded ¥250.00" in out
    assert "points +5000 reversed -2500  growth +500 reversed -250  (pos/SH001)" in out
    assert (
        "refunds:\n  R-1                  2026-05-20 11:30:00      ¥250.00  of order POS-1001"
        in out
    )
    assert "redemptions:\n" in out
    assert "C10 10元无门槛券  -1000 points  (oa)" in out
    assert "K7Q2M9XW         used     10元无门槛券 (¥10.00 off)" in out
    assert "used 2026-05-20 10:30:00 on order POS-1001" in out
    assert "D85ABCDE         issued   全场85折券 (85% of the price)" in out
    assert "valid 2026-05-20 09:30:00 to 2026-06-03 09:30:00" in out


def test_members_show_finds_a_full_length_openid(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url, KEYS)
    openid = "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"  # 28 characters, longer than any member code

    async def follower() -> None:
        member = await Member.create(code="LONG0001", created_at=AT)
        await Identity.create(
            kind="oa_openid", app="wx", value=openid, member=member, created_at=AT
        )

    with_db(db_url, follower, fresh=True)
    assert main(["--config", config, "members", "show", openid]) == 0
    assert "code LONG0001" in capsys.readouterr().out


def test_members_show_without_commerce_rows_says_none(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url, KEYS)

    async def bare() -> None:
        await Member.create(code="BARE0001", created_at=AT)

    with_db(db_url, bare, fresh=True)
    assert main(["--config", config, "members", "show", "BARE0001"]) == 0
    out = capsys.readouterr().out
    for section in ("orders", "refunds", "redemptions", "coupons"):
        assert f"\n{section}: none\n" in out
