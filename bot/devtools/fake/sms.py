"""The fake SMS gateway: ``POST /sms/send`` records a message, ``GET /sms/outbox`` lists.

It stands in for a real SMS provider in development and tests (``[sms] provider =
"fake"``); the simulator reads the outbox to show the one-time codes a member asked for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.devtools.fake.control import PLATFORM

if TYPE_CHECKING:
    from bot.devtools.fake.platform import FakePlatform


@dataclass
class SmsMessage:
    """One text message the fake gateway accepted."""

    seq: int
    mobile: str
    text: str
    at: float

    def as_json(self) -> dict[str, Any]:
        """The outbox's view."""
        return {"seq": self.seq, "mobile": self.mobile, "text": self.text, "at": self.at}


def send(p: FakePlatform, mobile: str, text: str) -> SmsMessage:
    """Record a message (the fake delivers nothing)."""
    if not (mobile.isdigit() and len(mobile) == 11) or not text:
        raise ValueError("mobile must be 11 digits and text non-empty")
    message = SmsMessage(p.next_seq(), mobile, text, p.now())
    p.world.sms.append(message)
    return message


def outbox(p: FakePlatform, mobile: str = "", since: int = 0) -> list[SmsMessage]:
    """Messages (to ``mobile`` if given) after sequence number ``since``."""
    return [m for m in p.world.sms if m.seq > since and (not mobile or m.mobile == mobile)]


async def _send_view(request: web.Request) -> web.Response:
    try:
        data = json.loads(await request.text() or "{}")
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        mobile, text = str(data.get("mobile", "")), str(data.get("text", ""))
        message = send(request.app[PLATFORM], mobile, text)
    except ValueError as exc:
        return web.json_response({"error": "bad_request", "message": str(exc)}, status=400)
    return web.json_response({"ok": True, "seq": message.seq})


async def _outbox_view(request: web.Request) -> web.Response:
    try:
        since = int(request.query.get("since", "0") or 0)
    except ValueError:
        return web.json_response({"error": "bad_request", "message": "since: a number"}, status=400)
    found = outbox(request.app[PLATFORM], request.query.get("mobile", ""), since)
    return web.json_response({"messages": [m.as_json() for m in found]})


def setup_sms(app: web.Application) -> None:
    """Add ``/sms/send`` and ``/sms/outbox``."""
    app.router.add_post("/sms/send", _send_view)
    app.router.add_get("/sms/outbox", _outbox_view)
