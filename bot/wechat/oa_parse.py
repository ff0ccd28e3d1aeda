"""Official Account callbacks: plaintext XML → wechatpy typed message or event.

We parse once with our hardened parser and hand the dict to wechatpy's message classes,
choosing the class the way ``wechatpy.parse_message`` does. Anything wechatpy does not
know becomes its ``UnknownMessage``, never an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wechatpy.events import EVENT_TYPES
from wechatpy.messages import MESSAGE_TYPES, UnknownMessage

from bot.wechat.inbound import Inbound, clamp_key
from bot.wechat.xml import BadPayload, parse_xml, require_text, text_of


def parse_oa(account: str, plaintext: str) -> Inbound:
    """Parse a decrypted OA callback body into an :class:`Inbound`."""
    data = parse_xml(plaintext)
    msg_type = require_text(data, "MsgType").lower()
    sender = require_text(data, "FromUserName")
    recipient = require_text(data, "ToUserName")
    create_time = int_of(data, "CreateTime", required=True)
    event_name = require_text(data, "Event").lower() if msg_type == "event" else ""
    key = oa_dedupe_key(account, data)
    message = _build(dict(data), msg_type, event_name)
    kind = f"event:{event_name}" if event_name else msg_type
    return Inbound("oa", account, message, kind, sender, recipient, create_time, key, plaintext)


def int_of(data: Mapping[str, Any], key: str, *, required: bool = False) -> int:
    """An integer element; ``0`` when absent unless required."""
    text = text_of(data, key).strip()
    if not text:
        if required:
            raise BadPayload(f"missing required element <{key}>")
        return 0
    try:
        return int(text)
    except ValueError:
        raise BadPayload(f"element <{key}> must be an integer") from None


def oa_dedupe_key(account: str, data: Mapping[str, Any]) -> str:
    """WeChat retries carry the same MsgId (messages) or the same event fields (events).

    Events: FromUserName + CreateTime + Event + EventKey + MsgID (job-finish events have
    one), see https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Receiving_event_pushes.html
    """
    if text_of(data, "MsgType").lower() != "event" and text_of(data, "MsgId"):
        return f"oa:{account}:msg:{text_of(data, 'MsgId')}"
    parts = (
        text_of(data, "FromUserName"),
        text_of(data, "CreateTime"),
        text_of(data, "MsgType"),
        text_of(data, "Event"),
        text_of(data, "EventKey"),
        text_of(data, "MsgID"),
    )
    return clamp_key(f"oa:{account}:evt:" + "|".join(parts))


def _build(message: dict[str, Any], msg_type: str, event_name: str) -> Any:
    if not event_name:
        return MESSAGE_TYPES.get(msg_type, UnknownMessage)(message)
    event_key = text_of(message, "EventKey")
    if event_name == "subscribe" and event_key:
        if event_key.startswith(("scanbarcode|", "scanimage|")):
            event_name = "subscribe_scan_product"
            message["Event"] = event_name
        elif event_key.startswith("qrscene_"):
            event_name = "subscribe_scan"
            message["Event"] = event_name
            message["EventKey"] = event_key.removeprefix("qrscene_")
    return EVENT_TYPES.get(event_name, UnknownMessage)(message)
