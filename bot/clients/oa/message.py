"""Customer-service, template and mass messages.

Customer service: https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Service_Center_messages.html
Template: https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Template_Message_Interface.html
Mass send: https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Batch_Sends_and_Originality_Checks.html
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.clients.caller import ApiCaller
from bot.clients.errors import ApiError


class MessageApi:
    """Messages to one member."""

    def __init__(self, caller: ApiCaller) -> None:
        self.caller = caller

    async def send_text(self, openid: str, content: str) -> dict[str, Any]:
        """A customer-service text (inside the member's 48 h / 60 s windows)."""
        body = {"touser": openid, "msgtype": "text", "text": {"content": content}}
        return await self.caller.call("POST", "cgi-bin/message/custom/send", json=body)

    async def send_image(self, openid: str, media_id: str) -> dict[str, Any]:
        """A customer-service image (a media_id from the temporary media upload)."""
        body = {"touser": openid, "msgtype": "image", "image": {"media_id": media_id}}
        return await self.caller.call("POST", "cgi-bin/message/custom/send", json=body)

    async def send_news(
        self, openid: str, title: str, description: str, url: str, picurl: str = ""
    ) -> dict[str, Any]:
        """A customer-service news message (one article)."""
        article = {"title": title, "description": description, "url": url, "picurl": picurl}
        body = {"touser": openid, "msgtype": "news", "news": {"articles": [article]}}
        return await self.caller.call("POST", "cgi-bin/message/custom/send", json=body)

    async def send_template(
        self,
        openid: str,
        template_id: str,
        data: Mapping[str, Mapping[str, str]],
        url: str = "",
    ) -> dict[str, Any]:
        """A template message (service notices only; verified service accounts)."""
        body = {"touser": openid, "template_id": template_id, "url": url, "data": dict(data)}
        return await self.caller.call("POST", "cgi-bin/message/template/send", json=body)


# The same clientmsgid within 24 h: the job already exists; the answer names its msg_id.
CLIENTMSGID_EXISTS = 45065


class MassApi:
    """Mass send by tag or by openid list; ``clientmsgid`` makes retries idempotent.

    A retry that WeChat answers 45065 (clientmsgid exists) returns the first job's
    ``msg_id`` with ``"duplicate": True`` instead of failing: nothing was sent twice.
    """

    def __init__(self, caller: ApiCaller) -> None:
        self.caller = caller

    async def _send(self, api: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self.caller.call("POST", api, json=body, idempotent=True)
        except ApiError as exc:
            if exc.errcode != CLIENTMSGID_EXISTS or "msg_id" not in exc.body:
                raise
            return {"msg_id": exc.body["msg_id"], "duplicate": True}

    async def send_text_to_tag(self, tag_id: int, content: str, clientmsgid: str) -> dict[str, Any]:
        """POST cgi-bin/message/mass/sendall (filter by tag)."""
        body = {
            "filter": {"is_to_all": False, "tag_id": tag_id},
            "msgtype": "text",
            "text": {"content": content},
            "clientmsgid": clientmsgid,
        }
        return await self._send("cgi-bin/message/mass/sendall", body)

    async def send_text_to_openids(
        self, openids: Sequence[str], content: str, clientmsgid: str
    ) -> dict[str, Any]:
        """POST cgi-bin/message/mass/send (2–10,000 openids)."""
        body = {
            "touser": list(openids),
            "msgtype": "text",
            "text": {"content": content},
            "clientmsgid": clientmsgid,
        }
        return await self._send("cgi-bin/message/mass/send", body)

    async def send_to_openids(
        self, openids: Sequence[str], msgtype: str, content: Mapping[str, Any], clientmsgid: str
    ) -> dict[str, Any]:
        """POST cgi-bin/message/mass/send with any message type (``text``, ``mpnews``, …).

        ``content`` is the type's object (``{"content": …}``, ``{"media_id": …}``).
        """
        body: dict[str, Any] = {
            "touser": list(openids),
            "msgtype": msgtype,
            msgtype: dict(content),
            "clientmsgid": clientmsgid,
        }
        if msgtype == "mpnews":
            body["send_ignore_reprint"] = 0
        return await self._send("cgi-bin/message/mass/send", body)
