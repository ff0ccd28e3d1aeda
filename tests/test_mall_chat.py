"""积分商城 / 兑换 <code> / 我的券 in chat, and the help text naming them."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp.test_utils import TestClient

from bot.config import Settings
from bot.services import points
from storage.models import Coupon, Identity, Member, Reward
from tests.conftest import AppMaker, base_config, make_settings
from tests.fakes import FakeWall
from tests.helpers import oa_crypto, oa_text, post_oa, reply_fields

SH = ZoneInfo("Asia/Shanghai")
FAR = datetime(2030, 1, 1, tzinfo=SH)
# The pinned wall clock (1_700_000_000) is 2023-11-15 06:13:20 in Shanghai.
REWARDS = [
    {
        "code": "C10",
        "name": "10元无门槛券",
        "cost_points": 1000,
        "stock": 5,
        "per_member_limit": 2,
        "coupon_value_fen": 1000,
        "coupon_valid_days": 30,
    },
    {
        "code": "D85",
        "name": "全场85折券",
        "cost_points": 3000,
        "per_member_limit": 0,
        "coupon_discount": 0.85,
        "coupon_valid_days": 14,
    },
]


def _settings(database: str, **chat: Any) -> Settings:
    raw = base_config(database)
    raw["rewards"] = REWARDS
    if chat:
        raw["chat"] = chat
    return make_settings(raw)


async def _say(client: TestClient[Any, Any], settings: Settings, xml: str, wall: FakeWall) -> str:
    wall.advance(1)
    resp = await post_oa(client, settings, xml, timestamp=int(wall.now))
    return str(reply_fields(oa_crypto(settings), await resp.text())["Content"])


async def _give(openid: str, amount: int) -> int:
    member_id = int((await Identity.get(value=openid)).member_id)  # type: ignore[attr-defined]
    now = datetime(2023, 11, 1, tzinfo=SH)
    await points.earn(member_id, amount, f"g:{openid}:{amount}", now=now, expires_at=FAR,
                      reason="t", source="t")  # fmt: skip
    return member_id


async def test_mall_lists_rewards_stock_limit_and_balance(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = _settings(database)
    client = await make_client(settings)
    text = await _say(client, settings, oa_text("积分商城"), wall)
    await _give("oMember1", 1280)
    text = await _say(client, settings, oa_text("积分商城"), wall)
    assert text.splitlines() == [
        "积分商城（您的积分：1280）",
        "· C10 10元无门槛券（10元）— 1000 积分，剩余 5 份，每人限兑 2 次",
        "· D85 全场85折券（8.5折）— 3000 积分，库存充足",
        "回复“兑换 代码”兑换，例如“兑换 C10”。",
    ]


async def test_redeem_replies_with_the_coupon_and_my_coupons_lists_it(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = _settings(database)
    client = await make_client(settings)
    assert "还没有可用的优惠券" in await _say(client, settings, oa_text("我的券"), wall)
    member_id = await _give("oMember1", 1500)
    text = await _say(client, settings, oa_text("兑换 c10"), wall)
    coupon = await Coupon.get(member_id=member_id)
    assert text.splitlines() == [
        "兑换成功：10元无门槛券",
        f"券码：{coupon.code}（10元）",
        "有效期至 2023-12-15，结账时出示券码即可使用。",
        "消耗 1000 积分，剩余 500 积分。回复“我的券”查看您的优惠券。",
    ]
    assert (await Reward.get(code="C10")).stock == 4
    mine = await _say(client, settings, oa_text("我的券"), wall)
    assert mine.splitlines() == [
        "您未使用的优惠券：",
        f"· {coupon.code} 10元无门槛券（10元），有效期至 2023-12-15",
        "结账时出示券码即可使用。",
    ]


async def test_a_retried_callback_redeems_once(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = _settings(database)
    client = await make_client(settings)
    await _say(client, settings, oa_text("积分"), wall)
    await _give("oMember1", 5000)
    message = oa_text("兑换 C10", msg_id=42)
    first = await _say(client, settings, message, wall)
    again = await _say(client, settings, message, wall)
    assert "兑换成功" in first
    assert again in (first, "")  # answered from the first (or deduplicated)
    assert await Coupon.all().count() == 1
    assert (await Member.get()).points_balance == 4000


async def test_refusals_explain_and_change_nothing(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = _settings(database)
    client = await make_client(settings)
    await _say(client, settings, oa_text("积分"), wall)
    await _give("oMember1", 2500)
    assert "请回复“兑换 奖励代码”" in await _say(client, settings, oa_text("兑换"), wall)
    assert "没有代码为 XYZ 的奖励" in await _say(client, settings, oa_text("兑换 xyz"), wall)
    poor = await _say(client, settings, oa_text("兑换 D85"), wall)
    assert poor == "积分不足：兑换 D85 需要 3000 积分，您现有 2500 积分。"
    for _ in range(2):
        assert "兑换成功" in await _say(client, settings, oa_text("兑换 C10"), wall)
    limit = await _say(client, settings, oa_text("兑换 C10"), wall)
    assert limit == "C10 每人限兑 2 次，您已兑满。"
    assert (await Member.get()).points_balance == 500
    assert await Coupon.all().count() == 2
    assert (await Reward.get(code="C10")).stock == 3


async def test_keywords_are_configurable_and_help_lists_them(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = _settings(database, keywords={"mall": ["商店"], "redeem": ["换"]})
    client = await make_client(settings)
    help_text = await _say(client, settings, oa_text("帮助"), wall)
    assert "· 商店 — 查看可兑换的奖励和您的积分" in help_text
    assert "· 换 C10 — 用积分兑换奖励" in help_text
    assert "· 我的券 — 查看未使用的优惠券" in help_text
    listing = await _say(client, settings, oa_text("商店"), wall)
    assert listing.startswith("积分商城（您的积分：0）")
    assert "回复“换 代码”兑换" in listing
    assert "积分不足" in await _say(client, settings, oa_text("换 C10"), wall)


def _click(openid: str, key: str, at: int) -> str:
    return (
        f"<xml><ToUserName><![CDATA[gh_brand]]></ToUserName><FromUserName><![CDATA[{openid}]]>"
        f"</FromUserName><CreateTime>{at}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[{key}]]></EventKey></xml>"
    )


async def test_menu_buttons_open_the_mall_and_the_coupons(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = _settings(database)
    client = await make_client(settings)
    mall = await _say(client, settings, _click("oMember1", "MALL", int(wall.now)), wall)
    assert mall.startswith("积分商城（您的积分：0）")
    mine = await _say(client, settings, _click("oMember1", "COUPONS", int(wall.now)), wall)
    assert "还没有可用的优惠券" in mine
