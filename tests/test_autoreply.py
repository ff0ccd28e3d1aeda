"""Auto-replies: configured keywords (exact or contains) before the help hint."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from bot.config import Settings
from bot.config_program import AutoReply
from bot.services import autoreply
from tests.conftest import AppMaker, base_config, make_settings
from tests.fakes import FakeWall
from tests.helpers import oa_crypto, oa_text, post_oa, reply_fields

RULES = [
    {"keywords": ["营业时间", "几点开门"], "match": "exact", "reply": "门店营业时间 10:00–22:00"},
    {"keywords": ["Coupon", "优惠"], "match": "contains", "reply": "优惠活动请看菜单“会员中心”"},
    {"keywords": ["优惠券"], "match": "contains", "reply": "never: the rule above matches first"},
]


def test_find_matches_exact_and_contains_casefolded_first_rule_wins() -> None:
    rules = [AutoReply.model_validate(r) for r in RULES]
    assert autoreply.find(rules, " 营业时间 ") is rules[0]
    assert autoreply.find(rules, "请问营业时间") is None  # exact means the whole message
    assert autoreply.find(rules, "有 COUPON 吗") is rules[1]
    assert autoreply.find(rules, "我的优惠券呢") is rules[1]
    assert autoreply.find(rules, "你好") is None
    assert autoreply.find(rules, "   ") is None


async def _say(client: TestClient[Any, Any], settings: Settings, text: str, wall: FakeWall) -> str:
    wall.advance(1)
    resp = await post_oa(client, settings, oa_text(text), timestamp=int(wall.now))
    return str(reply_fields(oa_crypto(settings), await resp.text())["Content"])


async def test_auto_replies_answer_before_the_help_hint(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    raw = base_config(database)
    raw["chat"] = {"auto_replies": RULES, "keywords": {"help": ["帮助", "救命"]}}
    settings = make_settings(raw)
    client = await make_client(settings)
    assert await _say(client, settings, "几点开门", wall) == "门店营业时间 10:00–22:00"
    assert await _say(client, settings, "有什么优惠吗", wall) == "优惠活动请看菜单“会员中心”"
    assert "没太明白" in await _say(client, settings, "你好", wall)
    # commands come before auto-replies, and help follows the configured keywords
    assert "您的积分" in await _say(client, settings, "积分", wall)
    assert "可用指令" in await _say(client, settings, "救命", wall)
    assert "没太明白" in await _say(client, settings, "menu", wall)


async def test_without_rules_unknown_text_gets_the_hint(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    assert "没太明白“营业时间”" in await _say(client, settings, "营业时间", wall)
