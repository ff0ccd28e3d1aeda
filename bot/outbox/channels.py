"""What each outbox channel calls: its API (for the token bucket) and how to send a row.

``idempotent`` channels may be tried again after an unknown outcome (a timeout, a 5xx):
``wecom_welcome`` (send_welcome_msg answers 41051 when the welcome already went out, which
counts as sent). Every other channel's unknown outcome is final (at most once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.clients.errors import ApiError
from bot.clients.registry import Clients
from storage.models import OutboxMessage

WELCOME_ALREADY_SENT = 41051
ADD_MSG_TEMPLATE = "cgi-bin/externalcontact/add_msg_template"


class UnknownChannel(ValueError):
    """A row names a channel this sender cannot send on."""


@dataclass(frozen=True, slots=True)
class Channel:
    """One outbox channel: the platform API it calls."""

    platform: str
    api: str
    idempotent: bool = False


CHANNELS = {
    "oa_cs": Channel("oa", "cgi-bin/message/custom/send"),
    "oa_template": Channel("oa", "cgi-bin/message/template/send"),
    "wecom_agent": Channel("wecom", "cgi-bin/message/send"),
    "wecom_welcome": Channel("wecom", "cgi-bin/externalcontact/send_welcome_msg", True),
    "wecom_customer": Channel("wecom", ADD_MSG_TEMPLATE),
    "wecom_group": Channel("wecom", ADD_MSG_TEMPLATE),  # customer groups, sent as tasks too
    "oa_mass": Channel("oa", "cgi-bin/message/mass/send", True),  # sent by bot.outbox.oa_mass
}


def channel_of(row: OutboxMessage) -> Channel:
    """The row's channel (UnknownChannel if this sender has none by that name)."""
    found = CHANNELS.get(row.channel)
    if found is None:
        raise UnknownChannel(row.channel)
    return found


def app_id(clients: Clients, row: OutboxMessage, channel: Channel) -> str:
    """The AppID (OA) or CorpID (WeCom) whose bucket paces this row."""
    if channel.platform == "oa":
        account = clients.settings.accounts.get(row.account)
        return account.appid if account is not None else row.account
    return clients.settings.wecom.corp_id if clients.settings.wecom is not None else ""


async def deliver(clients: Clients, row: OutboxMessage) -> None:
    """Make the row's one call (raises the client's errors)."""
    payload: dict[str, Any] = row.payload
    if row.channel == "oa_cs":
        await _send_oa_cs(clients, row.account, row.recipient, payload)
    elif row.channel == "oa_template":
        message = clients.oa(row.account).message
        url = str(payload.get("url", ""))
        await message.send_template(
            row.recipient, str(payload["template_id"]), payload["data"], url
        )
    elif row.channel == "wecom_agent":
        await clients.wecom().message.send_text(row.recipient, str(payload["text"]))
    elif row.channel == "wecom_welcome":
        await _send_welcome(clients, payload)
    else:
        raise UnknownChannel(row.channel)


async def _send_oa_cs(clients: Clients, account: str, openid: str, payload: dict[str, Any]) -> None:
    message = clients.oa(account).message
    if "news" in payload:
        news = payload["news"]
        await message.send_news(
            openid, news["title"], news["description"], news["url"], news["picurl"]
        )
    elif "image" in payload:
        await message.send_image(openid, str(payload["image"]["media_id"]))
    else:
        await message.send_text(openid, str(payload["text"]))


async def _send_welcome(clients: Clients, payload: dict[str, Any]) -> None:
    try:
        await clients.wecom().external_contact.send_welcome(
            str(payload["welcome_code"]), str(payload["text"])
        )
    except ApiError as exc:
        if exc.errcode != WELCOME_ALREADY_SENT:
            raise
