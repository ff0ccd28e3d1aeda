"""Typed WeCom callbacks: 客户联系 events (wechatpy 1.8.18 has none) and agent messages.

Parsing lives in :mod:`bot.wechat.wecom_events`, which re-exports every class here.
Official pages: 客户联系 change callbacks (customers, customer groups, corp tags)
https://developer.work.weixin.qq.com/document/path/92130; the self-built app's messages
https://developer.work.weixin.qq.com/document/path/90239 and events
https://developer.work.weixin.qq.com/document/path/90240.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class WeComEvent:
    """Fields every WeCom callback carries; ``raw`` is the parsed plaintext."""

    to_user: str
    from_user: str
    create_time: int
    msg_type: str
    event: str
    change_type: str
    raw: Mapping[str, Any] = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class WeComUnknown(WeComEvent):
    """A callback we do not model (MsgType, Event or ChangeType); routed, never an error."""


# --- change_external_contact ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExternalContactEvent(WeComEvent):
    """Event ``change_external_contact``: a staff–customer relation changed (doc 92130)."""

    user_id: str
    external_user_id: str


@dataclass(frozen=True, slots=True)
class AddExternalContact(ExternalContactEvent):
    """添加企业客户事件 https://developer.work.weixin.qq.com/document/path/92130 (20 s code)."""

    state: str
    welcome_code: str


@dataclass(frozen=True, slots=True)
class AddHalfExternalContact(ExternalContactEvent):
    """外部联系人免验证添加成员事件 https://developer.work.weixin.qq.com/document/path/92130."""

    state: str
    welcome_code: str


@dataclass(frozen=True, slots=True)
class EditExternalContact(ExternalContactEvent):
    """编辑企业客户事件 https://developer.work.weixin.qq.com/document/path/92130."""

    state: str


@dataclass(frozen=True, slots=True)
class DelExternalContact(ExternalContactEvent):
    """删除企业客户事件 https://developer.work.weixin.qq.com/document/path/92130 (Source)."""

    source: str


@dataclass(frozen=True, slots=True)
class DelFollowUser(ExternalContactEvent):
    """删除跟进成员事件 https://developer.work.weixin.qq.com/document/path/92130."""


@dataclass(frozen=True, slots=True)
class TransferFail(ExternalContactEvent):
    """客户接替失败事件 https://developer.work.weixin.qq.com/document/path/92130."""

    fail_reason: str


# --- change_external_chat -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExternalChatEvent(WeComEvent):
    """Event ``change_external_chat``: a customer group changed (doc 92130)."""

    chat_id: str


@dataclass(frozen=True, slots=True)
class ExternalChatCreate(ExternalChatEvent):
    """客户群创建事件 https://developer.work.weixin.qq.com/document/path/92130."""


@dataclass(frozen=True, slots=True)
class ExternalChatUpdate(ExternalChatEvent):
    """客户群变更事件 https://developer.work.weixin.qq.com/document/path/92130."""

    update_detail: str
    join_scene: int | None
    quit_scene: int | None
    mem_change_cnt: int | None
    mem_change_list: tuple[str, ...]
    last_mem_ver: str
    cur_mem_ver: str


@dataclass(frozen=True, slots=True)
class ExternalChatDismiss(ExternalChatEvent):
    """客户群解散事件 https://developer.work.weixin.qq.com/document/path/92130."""


# --- change_external_tag --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExternalTagEvent(WeComEvent):
    """Event ``change_external_tag``: the corp tag library changed (doc 92130)."""

    id: str
    strategy_id: str


@dataclass(frozen=True, slots=True)
class ExternalTagCreate(ExternalTagEvent):
    """企业客户标签创建事件 https://developer.work.weixin.qq.com/document/path/92130."""

    tag_type: str


@dataclass(frozen=True, slots=True)
class ExternalTagUpdate(ExternalTagEvent):
    """企业客户标签变更事件 https://developer.work.weixin.qq.com/document/path/92130."""

    tag_type: str


@dataclass(frozen=True, slots=True)
class ExternalTagDelete(ExternalTagEvent):
    """企业客户标签删除事件 https://developer.work.weixin.qq.com/document/path/92130."""

    tag_type: str


@dataclass(frozen=True, slots=True)
class ExternalTagShuffle(ExternalTagEvent):
    """企业客户标签重排事件 https://developer.work.weixin.qq.com/document/path/92130 (Id: group)."""


# --- the self-built app (agent) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentText(WeComEvent):
    """文本消息 to the app https://developer.work.weixin.qq.com/document/path/90239 (from staff)."""

    content: str
    msg_id: str
    agent_id: str


@dataclass(frozen=True, slots=True)
class AgentClick(WeComEvent):
    """菜单事件 click https://developer.work.weixin.qq.com/document/path/90240 (EventKey)."""

    event_key: str
    agent_id: str
