"""What a handler returns: a passive reply, or the explicit ``NO_REPLY``.

Passive reply formats: https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Passive_user_reply_message.html
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final, Literal


class _NoReply(Enum):
    NO_REPLY = "no_reply"

    def __repr__(self) -> str:
        return "NO_REPLY"


NO_REPLY: Final = _NoReply.NO_REPLY
NoReply = Literal[_NoReply.NO_REPLY]


@dataclass(frozen=True, slots=True)
class TextReply:
    """A text message back to the sender."""

    content: str


@dataclass(frozen=True, slots=True)
class NewsReply:
    """One news article (WeChat allows at most one in a passive reply)."""

    title: str
    description: str
    url: str
    image_url: str = ""


@dataclass(frozen=True, slots=True)
class ImageReply:
    """An image back to the sender, by the media_id of an uploaded (temporary) media."""

    media_id: str


@dataclass(frozen=True, slots=True)
class TransferReply:
    """Hand the conversation to the customer-service (客服) system."""

    kf_account: str = ""


Reply = TextReply | NewsReply | ImageReply | TransferReply | NoReply


def cdata(text: str) -> str:
    """Wrap text in CDATA, splitting any ``]]>`` so it cannot close the section early."""
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def render_reply(reply: Reply, to_user: str, from_user: str, create_time: int) -> str:
    """Render a reply as WeChat's passive-reply XML; ``NO_REPLY`` renders as ``success``."""
    if reply is NO_REPLY:
        return "success"
    head = (
        f"<xml><ToUserName>{cdata(to_user)}</ToUserName>"
        f"<FromUserName>{cdata(from_user)}</FromUserName>"
        f"<CreateTime>{create_time}</CreateTime>"
    )
    if isinstance(reply, TextReply):
        content = cdata(reply.content)
        return f"{head}<MsgType><![CDATA[text]]></MsgType><Content>{content}</Content></xml>"
    if isinstance(reply, ImageReply):
        media = f"<Image><MediaId>{cdata(reply.media_id)}</MediaId></Image>"
        return f"{head}<MsgType><![CDATA[image]]></MsgType>{media}</xml>"
    if isinstance(reply, NewsReply):
        item = (
            f"<item><Title>{cdata(reply.title)}</Title>"
            f"<Description>{cdata(reply.description)}</Description>"
            f"<PicUrl>{cdata(reply.image_url)}</PicUrl><Url>{cdata(reply.url)}</Url></item>"
        )
        return (
            f"{head}<MsgType><![CDATA[news]]></MsgType><ArticleCount>1</ArticleCount>"
            f"<Articles>{item}</Articles></xml>"
        )
    trans = ""
    if reply.kf_account:
        trans = f"<TransInfo><KfAccount>{cdata(reply.kf_account)}</KfAccount></TransInfo>"
    return f"{head}<MsgType><![CDATA[transfer_customer_service]]></MsgType>{trans}</xml>"
