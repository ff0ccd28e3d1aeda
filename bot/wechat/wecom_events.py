"""Decrypted WeCom callback → typed event, and the key WeCom's retries share.

The event classes live in :mod:`bot.wechat.wecom_models` and are re-exported here.
Official pages: 客户联系 change callbacks https://developer.work.weixin.qq.com/document/path/92130,
agent messages https://developer.work.weixin.qq.com/document/path/90239 and events
https://developer.work.weixin.qq.com/document/path/90240.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from bot.wechat.inbound import clamp_key
from bot.wechat.wecom_models import (
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
)
from bot.wechat.xml import BadPayload, require_text, text_of

__all__ = [
    "AddExternalContact",
    "AddHalfExternalContact",
    "AgentClick",
    "AgentText",
    "DelExternalContact",
    "DelFollowUser",
    "EditExternalContact",
    "ExternalChatCreate",
    "ExternalChatDismiss",
    "ExternalChatEvent",
    "ExternalChatUpdate",
    "ExternalContactEvent",
    "ExternalTagCreate",
    "ExternalTagDelete",
    "ExternalTagEvent",
    "ExternalTagShuffle",
    "ExternalTagUpdate",
    "TransferFail",
    "WeComEvent",
    "WeComUnknown",
    "parse_wecom_event",
    "wecom_dedupe_key",
]

_INTEGER = re.compile(r"-?[0-9]+")


class _Envelope(NamedTuple):
    """The base fields, in :class:`WeComEvent` order, to unpack into any event class."""

    to_user: str
    from_user: str
    create_time: int
    msg_type: str
    event: str
    change_type: str
    raw: Mapping[str, Any]


_Builder = Callable[[_Envelope, Mapping[str, Any]], WeComEvent]


def _int_or_none(data: Mapping[str, Any], key: str) -> int | None:
    """An integer element, ``None`` when absent or empty; BadPayload names the element."""
    text = text_of(data, key).strip()
    if not text:
        return None
    # int() would also take "1_000", "+1" and non-ASCII digits; WeCom sends plain decimals.
    if not _INTEGER.fullmatch(text):
        raise BadPayload(f"element <{key}> must be an integer")
    return int(text)


def _envelope(data: Mapping[str, Any]) -> _Envelope:
    create_time = _int_or_none(data, "CreateTime")
    if create_time is None:
        raise BadPayload("missing required element <CreateTime>")
    return _Envelope(
        to_user=text_of(data, "ToUserName"),
        from_user=text_of(data, "FromUserName"),
        create_time=create_time,
        msg_type=text_of(data, "MsgType"),
        event=text_of(data, "Event"),
        change_type=text_of(data, "ChangeType"),
        raw=data,
    )


def _item_text(item: Any) -> str:
    if item is None or isinstance(item, str):
        return item or ""
    if isinstance(item, Mapping) and isinstance(item.get("#text"), str):
        return str(item["#text"])
    raise BadPayload("element <MemChangeList> must hold <Item> texts")


def _items(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """The texts of ``<key><Item>…</Item>…</key>``, in document order."""
    container = data.get(key)
    if not isinstance(container, Mapping):
        return ()  # absent, or an empty element ("")
    items = container.get("Item")
    # xmltodict gives a scalar for one <Item> and a list for two or more.
    listed = items if isinstance(items, list) else [items]
    return tuple(text for text in map(_item_text, listed) if text)


# --- builders, one per (Event, ChangeType) ----------------------------------------------


def _contact_ids(data: Mapping[str, Any]) -> tuple[str, str]:
    return text_of(data, "UserID"), text_of(data, "ExternalUserID")


def _add_contact(env: _Envelope, data: Mapping[str, Any]) -> WeComEvent:
    state, code = text_of(data, "State"), text_of(data, "WelcomeCode")
    return AddExternalContact(*env, *_contact_ids(data), state=state, welcome_code=code)


def _add_half_contact(env: _Envelope, data: Mapping[str, Any]) -> WeComEvent:
    state, code = text_of(data, "State"), text_of(data, "WelcomeCode")
    return AddHalfExternalContact(*env, *_contact_ids(data), state=state, welcome_code=code)


def _edit_contact(env: _Envelope, data: Mapping[str, Any]) -> WeComEvent:
    return EditExternalContact(*env, *_contact_ids(data), state=text_of(data, "State"))


def _del_contact(env: _Envelope, data: Mapping[str, Any]) -> WeComEvent:
    return DelExternalContact(*env, *_contact_ids(data), source=text_of(data, "Source"))


def _del_follow_user(env: _Envelope, data: Mapping[str, Any]) -> WeComEvent:
    return DelFollowUser(*env, *_contact_ids(data))


def _transfer_fail(env: _Envelope, data: Mapping[str, Any]) -> WeComEvent:
    reason = text_of(data, "FailReason")
    return TransferFail(*env, *_contact_ids(data), fail_reason=reason)


def _chat_create(env: _Envelope, data: Mapping[str, Any]) -> WeComEvent:
    return ExternalChatCreate(*env, chat_id=text_of(data, "ChatId"))


def _chat_update(env: _Envelope, data: Mapping[str, Any]) -> WeComEvent:
    return ExternalChatUpdate(
        *env,
        chat_id=text_of(data, "ChatId"),
        update_detail=text_of(data, "UpdateDetail"),
        join_scene=_int_or_none(data, "JoinScene"),
        quit_scene=_int_or_none(data, "QuitScene"),
        mem_change_cnt=_int_or_none(data, "MemChangeCnt"),
        mem_change_list=_items(data, "MemChangeList"),
        last_mem_ver=text_of(data, "LastMemVer"),
        cur_mem_ver=text_of(data, "CurMemVer"),
    )


def _chat_dismiss(env: _Envelope, data: Mapping[str, Any]) -> WeComEvent:
    return ExternalChatDismiss(*env, chat_id=text_of(data, "ChatId"))


def _tag_ids(data: Mapping[str, Any]) -> tuple[str, str]:
    return text_of(data, "Id"), text_of(data, "StrategyId")


def _tag_create(env: _Envelope, data: Mapping[str, Any]) -> WeComEvent:
    return ExternalTagCreate(*env, *_tag_ids(data), tag_type=text_of(data, "TagType"))


def _tag_update(env: _Envelope, data: Mapping[str, Any]) -> WeComEvent:
    return ExternalTagUpdate(*env, *_tag_ids(data), tag_type=text_of(data, "TagType"))


def _tag_delete(env: _Envelope, data: Mapping[str, Any]) -> WeComEvent:
    return ExternalTagDelete(*env, *_tag_ids(data), tag_type=text_of(data, "TagType"))


def _tag_shuffle(env: _Envelope, data: Mapping[str, Any]) -> WeComEvent:
    return ExternalTagShuffle(*env, *_tag_ids(data))


def _agent_click(env: _Envelope, data: Mapping[str, Any]) -> WeComEvent:
    key, agent_id = text_of(data, "EventKey"), text_of(data, "AgentID")
    return AgentClick(*env, event_key=key, agent_id=agent_id)


# Keys are lower case: WeCom documents lower-case names, but we match case-insensitively.
_EVENT_BUILDERS: dict[tuple[str, str], _Builder] = {
    ("change_external_contact", "add_external_contact"): _add_contact,
    ("change_external_contact", "add_half_external_contact"): _add_half_contact,
    ("change_external_contact", "edit_external_contact"): _edit_contact,
    ("change_external_contact", "del_external_contact"): _del_contact,
    ("change_external_contact", "del_follow_user"): _del_follow_user,
    ("change_external_contact", "transfer_fail"): _transfer_fail,
    ("change_external_chat", "create"): _chat_create,
    ("change_external_chat", "update"): _chat_update,
    ("change_external_chat", "dismiss"): _chat_dismiss,
    ("change_external_tag", "create"): _tag_create,
    ("change_external_tag", "update"): _tag_update,
    ("change_external_tag", "delete"): _tag_delete,
    ("change_external_tag", "shuffle"): _tag_shuffle,
    ("click", ""): _agent_click,
}
_CUSTOMER_CONTACT_EVENTS = frozenset(event for event, _ in _EVENT_BUILDERS) - {"click"}


def _agent_text(env: _Envelope, data: Mapping[str, Any]) -> WeComEvent:
    content, msg_id = text_of(data, "Content"), text_of(data, "MsgId")
    return AgentText(*env, content=content, msg_id=msg_id, agent_id=text_of(data, "AgentID"))


def parse_wecom_event(data: Mapping[str, Any]) -> WeComEvent:
    """Type a decrypted WeCom callback (``parse_xml`` output); unknown kinds → WeComUnknown."""
    msg_type = require_text(data, "MsgType").lower()
    env = _envelope(data)
    if msg_type == "text":
        return _agent_text(env, data)
    if msg_type != "event":
        return WeComUnknown(*env)
    event = require_text(data, "Event").lower()
    # Only 客户联系 events have a ChangeType; agent events (click) dispatch on Event alone.
    change = text_of(data, "ChangeType").lower() if event in _CUSTOMER_CONTACT_EVENTS else ""
    builder = _EVENT_BUILDERS.get((event, change))
    return builder(env, data) if builder else WeComUnknown(*env)


# --- dedupe ---------------------------------------------------------------------------

# WeCom retries an unanswered callback (5 s, three times) with the same body
# (https://developer.work.weixin.qq.com/document/path/90238), so the key comes from the body.
# 客户联系 events (https://developer.work.weixin.qq.com/document/path/92130) have no MsgId and
# the obvious fields are not enough:
# - tag events (change_external_tag) carry no UserID, ExternalUserID or ChatId: two tags
#   created in one second differ only by Id, and TagType tells a tag from a tag group;
# - group updates share ChatId, ChangeType and CreateTime when two customers join in the same
#   second: UpdateDetail tells a join from a rename, and CurMemVer (the member version, new
#   after every membership change) tells the two joins apart.
_EVENT_KEY_FIELDS = (
    "Event",
    "ChangeType",
    "UserID",
    "ExternalUserID",
    "ChatId",
    "Id",
    "TagType",
    "UpdateDetail",
    "CurMemVer",
    "CreateTime",
)
# Agent events (menu click and the like) come from a staff member, not ``sys``: two staff
# clicking in one second differ by FromUserName, two menus by EventKey.
_AGENT_KEY_FIELDS = ("FromUserName", "EventKey")


def _key_part(value: str) -> str:
    """Escape the separator so no two field lists join to the same key."""
    return value.replace("\\", "\\\\").replace("|", "\\|")


def wecom_dedupe_key(corp_id: str, data: Mapping[str, Any]) -> str:
    """The key every retry of one WeCom callback shares (at most 200 characters)."""
    msg_id = text_of(data, "MsgId")
    if msg_id and text_of(data, "MsgType").lower() != "event":
        return clamp_key(f"wecom:{corp_id}:msg:{msg_id}")
    fields: tuple[str, ...] = _EVENT_KEY_FIELDS
    if text_of(data, "Event").lower() not in _CUSTOMER_CONTACT_EVENTS:
        fields += _AGENT_KEY_FIELDS
    parts = [corp_id, *(text_of(data, name) for name in fields)]
    return clamp_key("wecom:" + "|".join(map(_key_part, parts)))
