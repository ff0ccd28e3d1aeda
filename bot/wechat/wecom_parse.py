"""WeCom callbacks: decrypted plaintext → typed event in an :class:`Inbound`."""

from __future__ import annotations

from bot.wechat.inbound import Inbound
from bot.wechat.oa_parse import int_of
from bot.wechat.wecom_events import parse_wecom_event, wecom_dedupe_key
from bot.wechat.xml import parse_xml, require_text, text_of


def parse_wecom(corp: str, corp_id: str, plaintext: str) -> Inbound:
    """Parse a decrypted WeCom callback body."""
    data = parse_xml(plaintext)
    msg_type = require_text(data, "MsgType").lower()
    create_time = int_of(data, "CreateTime", required=True)
    event = parse_wecom_event(data)
    kind = f"wecom:{msg_type}"
    if msg_type == "event":
        change = text_of(data, "ChangeType").lower()
        kind = f"wecom:{text_of(data, 'Event').lower()}" + (f":{change}" if change else "")
    return Inbound(
        platform="wecom",
        account=corp,
        event=event,
        kind=kind,
        sender=text_of(data, "FromUserName"),
        recipient=text_of(data, "ToUserName"),
        create_time=create_time,
        dedupe_key=wecom_dedupe_key(corp_id, data),
        plaintext=plaintext,
    )
