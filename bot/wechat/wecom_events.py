"""Typed WeCom callbacks: 客户联系 events (wechatpy 1.8.18 has none) and agent messages.

Official pages: 客户联系 callbacks https://developer.work.weixin.qq.com/document/path/92130,
客户群 https://developer.work.weixin.qq.com/document/path/92130#客户群变更事件, 企业客户标签
https://developer.work.weixin.qq.com/document/path/92130#企业客户标签变更事件, and the
self-built app's messages https://developer.work.weixin.qq.com/document/path/90239.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.wechat.inbound import clamp_key
from bot.wechat.xml import BadPayload, require_text, text_of


@dataclass(frozen=True, slots=True)
class WeComEvent:
    """Fields every WeCom callback carries."""

    to_user: str
    from_user: str
    create_time: int
    msg_type: str
    event: str
    change_type: str
    raw: Mapping[str, Any] = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class WeComUnknown(WeComEvent):
    """A callback we do not model; routed like any event, never an error."""


# --- change_external_contact ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExternalContactEvent(WeComEvent):
    """A change to a staff–customer relation (Event ``change_external_contact``)."""

    user_id: str
    external_user_id: str


@dataclass(frozen=True, slots=True)
class AddExternalContact(ExternalContactEvent):
    """添加企业客户事件: a staff member added a customer (doc 92130)."""

    state: str
    welcome_code: str


@dataclass(frozen=True, slots=True)
class AddHalfExternalContact(ExternalContactEvent):
    """外部联系人免验证添加成员事件: the customer added staff without verification (doc 92130)."""

    state: str
    welcome_code: str


@dataclass(frozen=True, slots=True)
class EditExternalContact(ExternalContactEvent):
    """编辑企业客户事件: remark, tags or description changed (doc 92130)."""

    state: str


@dataclass(frozen=True, slots=True)
class DelExternalContact(ExternalContactEvent):
    """删除企业客户事件: staff removed the customer; Source e.g. DELETE_BY_TRANSFER (doc 92130)."""

    source: str


@dataclass(frozen=True, slots=True)
class DelFollowUser(ExternalContactEvent):
    """删除跟进成员事件: the customer removed the staff member (doc 92130)."""


@dataclass(frozen=True, slots=True)
class TransferFail(ExternalContactEvent):
    """客户接替失败事件: FailReason customer_refused | customer_limit_exceed (doc 92130)."""

    fail_reason: str


# --- change_external_chat -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExternalChatEvent(WeComEvent):
    """A change to a customer group (Event ``change_external_chat``)."""

    chat_id: str


@dataclass(frozen=True, slots=True)
class ExternalChatCreate(ExternalChatEvent):
    """客户群创建事件 (doc 92130)."""


@dataclass(frozen=True, slots=True)
class ExternalChatUpdate(ExternalChatEvent):
    """客户群变更事件: members joined/left, owner, name or notice changed (doc 92130)."""

    update_detail: str
    join_scene: int | None
    quit_scene: int | None
    mem_change_cnt: int | None
    mem_change_list: tuple[str, ...]
    last_mem_ver: str
    cur_mem_ver: str


@dataclass(frozen=True, slots=True)
class ExternalChatDismiss(ExternalChatEvent):
    """客户群解散事件 (doc 92130)."""


# --- change_external_tag --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExternalTagEvent(WeComEvent):
    """A change to the corp tag library (Event ``change_external_tag``)."""

    id: str
    strategy_id: str


@dataclass(frozen=True, slots=True)
class ExternalTagCreate(ExternalTagEvent):
    """企业客户标签创建事件; TagType tag | tag_group (doc 92130)."""

    tag_type: str


@dataclass(frozen=True, slots=True)
class ExternalTagUpdate(ExternalTagEvent):
    """企业客户标签变更事件 (doc 92130)."""

    tag_type: str


@dataclass(frozen=True, slots=True)
class ExternalTagDelete(ExternalTagEvent):
    """企业客户标签删除事件 (doc 92130)."""

    tag_type: str


@dataclass(frozen=True, slots=True)
class ExternalTagShuffle(ExternalTagEvent):
    """企业客户标签重排事件: Id is the tag group whose tags were reordered (doc 92130)."""


# --- the self-built app (agent) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentText(WeComEvent):
    """A staff member's text to the app (doc 90239); ``from_user`` is the staff userid."""

    content: str
    msg_id: str
    agent_id: str


@dataclass(frozen=True, slots=True)
class AgentClick(WeComEvent):
    """A menu click in the app (doc 90240); ``event_key`` is the menu key."""

    event_key: str
    agent_id: str


# --- parsing --------------------------------------------------------------------------


def _int_or_none(data: Mapping[str, Any], key: str) -> int | None:
    text = text_of(data, key).strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise BadPayload(f"element <{key}> must be an integer") from None


def _items(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    # One <Item> parses as a scalar, two or more as a list.
    container = data.get(key)
    if not isinstance(container, Mapping):
        return ()
    items = container.get("Item")
    if items is None:
        return ()
    if not isinstance(items, list):
        items = [items]
    return tuple(str(i) for i in items if isinstance(i, str) and i)


def _base(data: Mapping[str, Any]) -> dict[str, Any]:
    create_time = _int_or_none(data, "CreateTime")
    if create_time is None:
        raise BadPayload("missing required element <CreateTime>")
    return {
        "to_user": text_of(data, "ToUserName"),
        "from_user": text_of(data, "FromUserName"),
        "create_time": create_time,
        "msg_type": text_of(data, "MsgType"),
        "event": text_of(data, "Event"),
        "change_type": text_of(data, "ChangeType"),
        "raw": data,
    }


def _contact(data: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **_base(data),
        "user_id": text_of(data, "UserID"),
        "external_user_id": text_of(data, "ExternalUserID"),
    }


def _add(cls: type[AddExternalContact] | type[AddHalfExternalContact]) -> Callable[..., WeComEvent]:
    def build(data: Mapping[str, Any]) -> WeComEvent:
        return cls(
            **_contact(data),
            state=text_of(data, "State"),
            welcome_code=text_of(data, "WelcomeCode"),
        )

    return build


_CONTACT: dict[str, Callable[[Mapping[str, Any]], WeComEvent]] = {
    "add_external_contact": _add(AddExternalContact),
    "add_half_external_contact": _add(AddHalfExternalContact),
    "edit_external_contact": lambda d: EditExternalContact(
        **_contact(d), state=text_of(d, "State")
    ),
    "del_external_contact": lambda d: DelExternalContact(
        **_contact(d), source=text_of(d, "Source")
    ),
    "del_follow_user": lambda d: DelFollowUser(**_contact(d)),
    "transfer_fail": lambda d: TransferFail(**_contact(d), fail_reason=text_of(d, "FailReason")),
}


def _chat_update(data: Mapping[str, Any]) -> WeComEvent:
    return ExternalChatUpdate(
        **_base(data),
        chat_id=text_of(data, "ChatId"),
        update_detail=text_of(data, "UpdateDetail"),
        join_scene=_int_or_none(data, "JoinScene"),
        quit_scene=_int_or_none(data, "QuitScene"),
        mem_change_cnt=_int_or_none(data, "MemChangeCnt"),
        mem_change_list=_items(data, "MemChangeList"),
        last_mem_ver=text_of(data, "LastMemVer"),
        cur_mem_ver=text_of(data, "CurMemVer"),
    )


_CHAT: dict[str, Callable[[Mapping[str, Any]], WeComEvent]] = {
    "create": lambda d: ExternalChatCreate(**_base(d), chat_id=text_of(d, "ChatId")),
    "update": _chat_update,
    "dismiss": lambda d: ExternalChatDismiss(**_base(d), chat_id=text_of(d, "ChatId")),
}


def _tag(data: Mapping[str, Any]) -> dict[str, Any]:
    return {**_base(data), "id": text_of(data, "Id"), "strategy_id": text_of(data, "StrategyId")}


_TAG: dict[str, Callable[[Mapping[str, Any]], WeComEvent]] = {
    "create": lambda d: ExternalTagCreate(**_tag(d), tag_type=text_of(d, "TagType")),
    "update": lambda d: ExternalTagUpdate(**_tag(d), tag_type=text_of(d, "TagType")),
    "delete": lambda d: ExternalTagDelete(**_tag(d), tag_type=text_of(d, "TagType")),
    "shuffle": lambda d: ExternalTagShuffle(**_tag(d)),
}

_FAMILIES = {
    "change_external_contact": _CONTACT,
    "change_external_chat": _CHAT,
    "change_external_tag": _TAG,
}


def parse_wecom_event(data: Mapping[str, Any]) -> WeComEvent:
    """Build the typed event for a decrypted WeCom callback (unknown kinds → WeComUnknown)."""
    msg_type = require_text(data, "MsgType").lower()
    if msg_type == "text":
        return AgentText(
            **_base(data),
            content=text_of(data, "Content"),
            msg_id=text_of(data, "MsgId"),
            agent_id=text_of(data, "AgentID"),
        )
    if msg_type != "event":
        return WeComUnknown(**_base(data))
    event = require_text(data, "Event").lower()
    if event == "click":
        return AgentClick(
            **_base(data), event_key=text_of(data, "EventKey"), agent_id=text_of(data, "AgentID")
        )
    builder = _FAMILIES.get(event, {}).get(text_of(data, "ChangeType").lower())
    return builder(data) if builder else WeComUnknown(**_base(data))


# Tag events carry no user ids, and two customers joining one group can share a second:
# the key therefore includes Id, TagType, UpdateDetail and CurMemVer (the group's member
# version changes with every join), so distinct events never collapse into one.
_KEY_FIELDS = (
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
    "FromUserName",
    "EventKey",
)


def wecom_dedupe_key(corp_id: str, data: Mapping[str, Any]) -> str:
    """The key WeCom's retries of one callback share."""
    msg_id = text_of(data, "MsgId")
    if text_of(data, "MsgType").lower() != "event" and msg_id:
        return f"wecom:{corp_id}:msg:{msg_id}"
    return clamp_key(f"wecom:{corp_id}:evt:" + "|".join(text_of(data, f) for f in _KEY_FIELDS))
