"""Callback bodies as WeChat and WeCom send them, for the chat simulator."""

from __future__ import annotations

import itertools
import random

from bot.replies import cdata

_msg_ids = itertools.count(random.randrange(10**15, 9 * 10**15))


def _xml(*fields: tuple[str, str | int]) -> str:
    inner = "".join(
        f"<{name}>{value}</{name}>"
        if isinstance(value, int)
        else f"<{name}>{cdata(value)}</{name}>"
        for name, value in fields
    )
    return f"<xml>{inner}</xml>"


def oa_text(to: str, openid: str, content: str, at: int) -> str:
    """A member's text message."""
    return _xml(
        ("ToUserName", to),
        ("FromUserName", openid),
        ("CreateTime", at),
        ("MsgType", "text"),
        ("Content", content),
        ("MsgId", next(_msg_ids)),
    )


def oa_event(to: str, openid: str, at: int, event: str, *extra: tuple[str, str | int]) -> str:
    """A member's event (subscribe, SCAN, CLICK, LOCATION …)."""
    base = (("ToUserName", to), ("FromUserName", openid), ("CreateTime", at), ("MsgType", "event"))
    return _xml(*base, ("Event", event), *extra)


def oa_subscribe(to: str, openid: str, at: int, scene: str = "") -> str:
    """Follow, optionally by scanning a scene QR code (EventKey qrscene_…)."""
    if not scene:
        return oa_event(to, openid, at, "subscribe", ("EventKey", ""))
    return oa_event(
        to, openid, at, "subscribe", ("EventKey", f"qrscene_{scene}"), ("Ticket", f"T{scene}")
    )


def wecom_text(corp_id: str, staff: str, content: str, at: int, agent_id: int) -> str:
    """A staff member's text to the self-built app."""
    return _xml(
        ("ToUserName", corp_id),
        ("FromUserName", staff),
        ("CreateTime", at),
        ("MsgType", "text"),
        ("Content", content),
        ("MsgId", next(_msg_ids)),
        ("AgentID", agent_id),
    )


def wecom_contact_event(
    corp_id: str, change_type: str, staff: str, external: str, at: int, *extra: tuple[str, str]
) -> str:
    """A 客户联系 change_external_contact event from ``sys``."""
    return _xml(
        ("ToUserName", corp_id),
        ("FromUserName", "sys"),
        ("CreateTime", at),
        ("MsgType", "event"),
        ("Event", "change_external_contact"),
        ("ChangeType", change_type),
        ("UserID", staff),
        ("ExternalUserID", external),
        *extra,
    )
