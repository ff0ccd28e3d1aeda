"""The typed WeCom event layer: official and built fixtures, edge cases, dedupe keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.wechat.wecom_events import (
    AddExternalContact,
    AddHalfExternalContact,
    AgentClick,
    AgentText,
    DelExternalContact,
    DelFollowUser,
    EditExternalContact,
    ExternalChatCreate,
    ExternalChatDismiss,
    ExternalChatEvent,
    ExternalChatUpdate,
    ExternalContactEvent,
    ExternalTagCreate,
    ExternalTagDelete,
    ExternalTagEvent,
    ExternalTagShuffle,
    ExternalTagUpdate,
    TransferFail,
    WeComEvent,
    WeComUnknown,
    parse_wecom_event,
    wecom_dedupe_key,
)
from bot.wechat.xml import BadPayload, parse_xml

PAYLOADS = Path(__file__).parent / "payloads"
CORP = "wx5823bf96d3bd56c7"
T = 1403610513


def _data(name: str) -> dict[str, Any]:
    return parse_xml((PAYLOADS / name).read_text(encoding="utf-8"))


def _parse(name: str) -> WeComEvent:
    return parse_wecom_event(_data(name))


def _sys(event: str, change: str, to_user: str = "toUser") -> dict[str, Any]:
    """The envelope fields of a 客户联系 event, as constructor keywords."""
    return {
        "to_user": to_user,
        "from_user": "sys",
        "create_time": T,
        "msg_type": "event",
        "event": event,
        "change_type": change,
        "raw": {},
    }


CONTACT = "change_external_contact"
CHAT = "change_external_chat"
TAG = "change_external_tag"

EXPECTED: dict[str, WeComEvent] = {
    "wecom_text.xml": AgentText(
        to_user="toUser",
        from_user="fromUser",
        create_time=1348831860,
        msg_type="text",
        event="",
        change_type="",
        raw={},
        content="this is a test",
        msg_id="1234567890123456",
        agent_id="1",
    ),
    "wecom_event_add_external_contact.xml": AddExternalContact(
        **_sys(CONTACT, "add_external_contact"),
        user_id="zhangsan",
        external_user_id="woAJ2GCAAAXtWyujaWJHDDGi0mAAAA",
        state="teststate",
        welcome_code="WELCOMECODE",
    ),
    "wecom_event_edit_external_contact.xml": EditExternalContact(
        **_sys(CONTACT, "edit_external_contact"),
        user_id="zhangsan",
        external_user_id="woAJ2GCAAAXtWyujaWJHDDGi0mAAAA",
        state="teststate",
    ),
    "wecom_event_del_external_contact.xml": DelExternalContact(
        **_sys(CONTACT, "del_external_contact"),
        user_id="zhangsan",
        external_user_id="woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA",
        source="DELETE_BY_TRANSFER",
    ),
    "wecom_event_del_follow_user.xml": DelFollowUser(
        **_sys(CONTACT, "del_follow_user"),
        user_id="zhangsan",
        external_user_id="woAJ2GCAAAXtWyujaWJHDDGi0mACHAAA",
    ),
    "wecom_event_change_external_chat_create.xml": ExternalChatCreate(
        **_sys(CHAT, "create"), chat_id="CHAT_ID"
    ),
    "wecom_event_change_external_tag_create.xml": ExternalTagCreate(
        **_sys(TAG, "create", to_user="CORPID"), id="TAG_ID", strategy_id="1", tag_type="tag"
    ),
    "built/wecom_event_add_half_external_contact.xml": AddHalfExternalContact(
        **_sys(CONTACT, "add_half_external_contact"),
        user_id="zhangsan",
        external_user_id="woAJ2GCAAAXtWyujaWJHDDGi0mACBAAA",
        state="teststate",
        welcome_code="WELCOMECODE",
    ),
    "built/wecom_event_transfer_fail.xml": TransferFail(
        **_sys(CONTACT, "transfer_fail"),
        user_id="zhangsan",
        external_user_id="woAJ2GCAAAXtWyujaWJHDDGi0mACHAAA",
        fail_reason="customer_refused",
    ),
    "built/wecom_event_change_external_chat_update_add_member.xml": ExternalChatUpdate(
        **_sys(CHAT, "update"),
        chat_id="CHAT_ID",
        update_detail="add_member",
        join_scene=1,
        quit_scene=None,
        mem_change_cnt=1,
        mem_change_list=("wmAJ2GCAAAXtWyujaWJHDDGi0mACAAAA",),
        last_mem_ver="9c3f97c2ada667dfb5f6d03308d963e1",
        cur_mem_ver="71217227bbd112ecfe3a49c482195cb4",
    ),
    "built/wecom_event_change_external_chat_update_del_member.xml": ExternalChatUpdate(
        **{**_sys(CHAT, "update"), "create_time": T + 1},
        chat_id="CHAT_ID",
        update_detail="del_member",
        join_scene=None,
        quit_scene=1,
        mem_change_cnt=3,
        mem_change_list=(
            "wmAJ2GCAAAXtWyujaWJHDDGi0mACAAAA",
            "wmAJ2GCAAAXtWyujaWJHDDGi0mACBBBB",
            "lisi",
        ),
        last_mem_ver="71217227bbd112ecfe3a49c482195cb4",
        cur_mem_ver="a6f3b6c0d2e14f1b8e7d9c5a4b3f2e10",
    ),
    "built/wecom_event_change_external_chat_dismiss.xml": ExternalChatDismiss(
        **_sys(CHAT, "dismiss"), chat_id="CHAT_ID"
    ),
    "built/wecom_event_change_external_tag_update.xml": ExternalTagUpdate(
        **_sys(TAG, "update"), id="TAG_ID", strategy_id="1", tag_type="tag"
    ),
    "built/wecom_event_change_external_tag_delete.xml": ExternalTagDelete(
        **_sys(TAG, "delete"), id="TAG_GROUP_ID", strategy_id="1", tag_type="tag_group"
    ),
    "built/wecom_event_change_external_tag_shuffle.xml": ExternalTagShuffle(
        **_sys(TAG, "shuffle"), id="TAG_GROUP_ID", strategy_id="1"
    ),
    "built/wecom_event_click.xml": AgentClick(
        to_user="toUser",
        from_user="FromUser",
        create_time=123456789,
        msg_type="event",
        event="click",
        change_type="",
        raw={},
        event_key="EVENTKEY",
        agent_id="1",
    ),
}


def _fixture_names() -> list[str]:
    official = [p.name for p in PAYLOADS.glob("wecom_*.xml") if "encrypted" not in p.name]
    built = [f"built/{p.name}" for p in (PAYLOADS / "built").glob("*.xml")]
    return sorted(official + built)


def test_every_wecom_fixture_has_an_expectation() -> None:
    assert sorted(EXPECTED) == _fixture_names()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_parses_to_the_expected_event(name: str) -> None:
    event = _parse(name)
    assert type(event) is type(EXPECTED[name])
    assert event == EXPECTED[name]
    assert event.raw == _data(name)


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("wecom_event_del_follow_user.xml", ExternalContactEvent),
        ("built/wecom_event_transfer_fail.xml", ExternalContactEvent),
        ("built/wecom_event_change_external_chat_dismiss.xml", ExternalChatEvent),
        ("built/wecom_event_change_external_tag_shuffle.xml", ExternalTagEvent),
    ],
)
def test_events_belong_to_their_family(name: str, family: type[WeComEvent]) -> None:
    assert isinstance(_parse(name), family)


def test_add_external_contact_fields() -> None:
    event = _parse("wecom_event_add_external_contact.xml")
    assert isinstance(event, AddExternalContact)
    assert event.user_id == "zhangsan"
    assert event.external_user_id == "woAJ2GCAAAXtWyujaWJHDDGi0mAAAA"
    assert event.welcome_code == "WELCOMECODE"
    assert event.create_time == 1403610513


def _chat_update(items: str) -> str:
    return (
        "<xml><ToUserName>toUser</ToUserName><FromUserName>sys</FromUserName>"
        f"<CreateTime>{T}</CreateTime><MsgType>event</MsgType>"
        "<Event>change_external_chat</Event><ChatId>CHAT_ID</ChatId>"
        f"<ChangeType>update</ChangeType><MemChangeList>{items}</MemChangeList></xml>"
    )


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ("<Item>wmOne</Item>", ("wmOne",)),
        ("<Item>wmOne</Item><Item>wmTwo</Item>", ("wmOne", "wmTwo")),
        (
            "<Item><![CDATA[wmOne]]></Item><Item>wmTwo</Item><Item>lisi</Item>",
            ("wmOne", "wmTwo", "lisi"),
        ),
        ("", ()),
        ("<Item/>", ()),
    ],
)
def test_mem_change_list_is_always_a_tuple(items: str, expected: tuple[str, ...]) -> None:
    event = parse_wecom_event(parse_xml(_chat_update(items)))
    assert isinstance(event, ExternalChatUpdate)
    assert event.mem_change_list == expected


def test_missing_optional_fields_are_empty() -> None:
    event = parse_wecom_event(
        parse_xml(_chat_update("").replace("<MemChangeList></MemChangeList>", ""))
    )
    assert isinstance(event, ExternalChatUpdate)
    assert (event.update_detail, event.last_mem_ver, event.cur_mem_ver) == ("", "", "")
    assert (event.join_scene, event.quit_scene, event.mem_change_cnt) == (None, None, None)
    assert event.mem_change_list == ()
    assert event.to_user == "toUser"


def test_missing_contact_fields_are_empty_strings() -> None:
    data = _data("wecom_event_add_external_contact.xml")
    for key in ("State", "WelcomeCode", "ExternalUserID"):
        del data[key]
    event = parse_wecom_event(data)
    assert isinstance(event, AddExternalContact)
    assert (event.state, event.welcome_code, event.external_user_id) == ("", "", "")


def test_dispatch_is_case_insensitive_and_keeps_the_original_strings() -> None:
    data = _data("wecom_event_del_follow_user.xml")
    data["Event"], data["ChangeType"] = "Change_External_Contact", "DEL_FOLLOW_USER"
    event = parse_wecom_event(data)
    assert isinstance(event, DelFollowUser)
    assert (event.event, event.change_type) == ("Change_External_Contact", "DEL_FOLLOW_USER")


def test_missing_msg_type_is_bad_payload() -> None:
    data = _data("wecom_event_add_external_contact.xml")
    del data["MsgType"]
    with pytest.raises(BadPayload, match="MsgType"):
        parse_wecom_event(data)


def test_event_without_event_element_is_bad_payload() -> None:
    data = _data("wecom_event_add_external_contact.xml")
    del data["Event"]
    with pytest.raises(BadPayload, match="Event"):
        parse_wecom_event(data)


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("wecom_event_add_external_contact.xml", "CreateTime", "soon"),
        ("wecom_event_add_external_contact.xml", "CreateTime", ""),
        ("built/wecom_event_change_external_chat_update_add_member.xml", "JoinScene", "x1"),
        ("built/wecom_event_change_external_chat_update_add_member.xml", "MemChangeCnt", "1_0"),
        ("built/wecom_event_change_external_chat_update_del_member.xml", "QuitScene", "1.0"),
    ],
)
def test_bad_integer_is_bad_payload_naming_the_element(name: str, key: str, value: str) -> None:
    data = _data(name)
    data[key] = value
    with pytest.raises(BadPayload, match=key):
        parse_wecom_event(data)


@pytest.mark.parametrize(
    ("event", "change"),
    [
        ("change_external_contact", "some_future_change"),
        ("change_external_chat", "archive"),
        ("change_external_tag", ""),
        ("enter_agent", ""),
    ],
)
def test_unknown_kinds_are_wecom_unknown(event: str, change: str) -> None:
    data = _data("wecom_event_del_follow_user.xml")
    data["Event"], data["ChangeType"] = event, change
    parsed = parse_wecom_event(data)
    assert type(parsed) is WeComUnknown
    assert (parsed.event, parsed.change_type, parsed.create_time) == (event, change, T)


def test_unknown_msg_type_is_wecom_unknown() -> None:
    data = _data("wecom_text.xml")
    data["MsgType"] = "image"
    parsed = parse_wecom_event(data)
    assert type(parsed) is WeComUnknown
    assert parsed.msg_type == "image"


# --- dedupe keys --------------------------------------------------------------------------


def test_agent_message_key_uses_msg_id() -> None:
    assert wecom_dedupe_key(CORP, _data("wecom_text.xml")) == f"wecom:{CORP}:msg:1234567890123456"


def test_event_key_joins_the_documented_fields() -> None:
    key = wecom_dedupe_key(CORP, _data("wecom_event_add_external_contact.xml"))
    assert key == (
        f"wecom:{CORP}|change_external_contact|add_external_contact|zhangsan"
        f"|woAJ2GCAAAXtWyujaWJHDDGi0mAAAA||||||{T}"
    )


def test_same_event_twice_gives_the_same_key() -> None:
    name = "built/wecom_event_change_external_chat_update_del_member.xml"
    assert wecom_dedupe_key(CORP, _data(name)) == wecom_dedupe_key(CORP, _data(name))


def test_tag_events_in_the_same_second_differ_by_id() -> None:
    first = _data("wecom_event_change_external_tag_create.xml")
    second = {**first, "Id": "TAG_ID_2"}
    assert first["CreateTime"] == second["CreateTime"]
    assert wecom_dedupe_key(CORP, first) != wecom_dedupe_key(CORP, second)


def test_group_updates_in_the_same_second_differ_by_cur_mem_ver() -> None:
    first = _data("built/wecom_event_change_external_chat_update_add_member.xml")
    second = {**first, "CurMemVer": "ffffffffffffffffffffffffffffffff"}
    assert wecom_dedupe_key(CORP, first) != wecom_dedupe_key(CORP, second)


def test_group_update_kinds_in_the_same_second_differ_by_update_detail() -> None:
    first = _data("built/wecom_event_change_external_chat_update_add_member.xml")
    second = {**first, "UpdateDetail": "change_name"}
    assert wecom_dedupe_key(CORP, first) != wecom_dedupe_key(CORP, second)


def test_agent_clicks_differ_by_sender_and_menu_key() -> None:
    click = _data("built/wecom_event_click.xml")
    keys = {
        wecom_dedupe_key(CORP, click),
        wecom_dedupe_key(CORP, {**click, "FromUserName": "lisi"}),
        wecom_dedupe_key(CORP, {**click, "EventKey": "OTHER"}),
    }
    assert len(keys) == 3


def test_separator_in_a_value_cannot_forge_another_key() -> None:
    data = _data("wecom_event_del_follow_user.xml")
    first = {**data, "UserID": "a|b", "ExternalUserID": "c"}
    second = {**data, "UserID": "a", "ExternalUserID": "b|c"}
    assert wecom_dedupe_key(CORP, first) != wecom_dedupe_key(CORP, second)


def test_long_keys_are_clamped_with_a_digest() -> None:
    data = _data("wecom_event_del_follow_user.xml")
    long_one = wecom_dedupe_key(CORP, {**data, "UserID": "u" * 300})
    other = wecom_dedupe_key(CORP, {**data, "UserID": "u" * 299 + "v"})
    assert len(long_one) <= 200
    assert long_one.startswith(f"wecom:{CORP}|change_external_contact|del_follow_user|")
    assert long_one != other
