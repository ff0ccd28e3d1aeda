"""Route filters: keywords with synonyms, regex data, menu keys, event kinds, ChangeType."""

from __future__ import annotations

from typing import Any

from wechatpy.events import ClickEvent
from wechatpy.messages import TextMessage

from bot.context import Ctx, Trace
from bot.filters import ChangeType, EventIs, Keyword, MenuKey, Platform, Regex
from bot.wechat.oa_parse import parse_oa
from bot.wechat.wecom_parse import parse_wecom
from tests.conftest import read_payload
from tests.helpers import oa_text


def _ctx(inbound: Any) -> Ctx:
    return Ctx(inbound=inbound, services=None, now=None, trace=Trace())  # type: ignore[arg-type]


def test_keyword_matches_synonyms_whole_and_case_insensitively() -> None:
    flt = Keyword("签到", "打卡", "Check-in")
    for text, expected in (("签到", True), (" 打卡 ", True), ("check-IN", True), ("签到吧", False)):
        inbound = parse_oa("a", oa_text(text))
        assert flt(inbound.event, _ctx(inbound)) is expected


def test_regex_hands_named_groups_to_the_handler() -> None:
    flt = Regex(r"生日\s*(?P<date>\d{4}-\d{2}-\d{2})")
    inbound = parse_oa("a", oa_text("生日 1990-05-20"))
    result = flt(inbound.event, _ctx(inbound))
    assert isinstance(result, dict)
    assert result["date"] == "1990-05-20"
    other = parse_oa("a", oa_text("生日快乐"))
    assert flt(other.event, _ctx(other)) is False


def test_menu_key_event_kind_platform_and_change_type() -> None:
    click = parse_oa("a", read_payload("oa_event_click.xml"))
    assert isinstance(click.event, ClickEvent)
    assert MenuKey("EVENTKEY")(click.event, _ctx(click)) is True
    assert MenuKey("OTHER")(click.event, _ctx(click)) is False
    assert EventIs("event:CLICK")(click.event, _ctx(click)) is True
    assert Platform("oa")(click.event, _ctx(click)) is True
    added = parse_wecom(
        "corp", "wx5823bf96d3bd56c7", read_payload("wecom_event_add_external_contact.xml")
    )
    assert ChangeType("add_external_contact", "add_half_external_contact")(added.event, _ctx(added))
    assert ChangeType("del_follow_user")(added.event, _ctx(added)) is False
    assert Platform("oa")(added.event, _ctx(added)) is False
    text = parse_oa("a", oa_text("x"))
    assert isinstance(text.event, TextMessage)
    assert EventIs("text")(text.event, _ctx(text)) is True
