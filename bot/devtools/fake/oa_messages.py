"""OA customer-service and template messages, and the windows that gate them.

Customer service: https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Service_Center_messages.html
Template: https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Template_Message_Interface.html
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bot.devtools.fake.common import OK, Body, FakeError, Json, Route, china_day
from bot.devtools.fake.oa_users import known_user, put_user
from bot.devtools.fake.state import OAAccount, OAUser, Window

if TYPE_CHECKING:
    from bot.devtools.fake.common import ApiRequest
    from bot.devtools.fake.platform import FakePlatform

# A member's own message opens 48 h for 5 messages; subscribe, scan or a menu click
# opens 60 s for 3 messages (each counts messages sent since that interaction).
MESSAGE_WINDOW, MESSAGE_QUOTA = 48 * 3600, 5
EVENT_WINDOW, EVENT_QUOTA = 60, 3
MEDIA_TTL = 3 * 86_400  # temporary media live 3 days
INTERACTIONS = frozenset({"message", "subscribe", "scan", "click", "unsubscribe"})


def record_interaction(p: FakePlatform, appid: str, openid: str, kind: str, scene: str) -> OAUser:
    """The platform saw the member act (the simulator and tests tell the fake)."""
    if kind not in INTERACTIONS:
        raise ValueError(f"kind must be one of {sorted(INTERACTIONS)}")
    account = p.world.accounts[appid]
    user = account.users.get(openid) or put_user(p, appid, openid, "", "", 1)
    now = p.now()
    if kind == "message":
        user.window.message_at, user.window.sent_since_message = now, 0
    elif kind == "unsubscribe":
        user.subscribe = 0
    else:
        user.window.event_at, user.window.sent_since_event = now, 0
    if kind == "subscribe":
        _subscribe(user, int(now), scene)
    return user


def _subscribe(user: OAUser, now: int, scene: str) -> None:
    user.subscribe, user.subscribe_time = 1, now
    if scene:
        user.subscribe_scene = "ADD_SCENE_QR_CODE"
        user.qr_scene_str = scene
        user.qr_scene = int(scene) if scene.isdigit() else 0


def use_window(window: Window, now: float) -> None:
    """Count one customer-service message, or answer 45015 (no window) / 45047 (used up)."""
    by_message = now - window.message_at < MESSAGE_WINDOW
    by_event = now - window.event_at < EVENT_WINDOW
    if not (by_message or by_event):
        raise FakeError(45015, "response out of time limit or subscription is canceled")
    if not (
        (by_message and window.sent_since_message < MESSAGE_QUOTA)
        or (by_event and window.sent_since_event < EVENT_QUOTA)
    ):
        raise FakeError(45047, "out of response count limit")
    window.sent_since_message += 1
    window.sent_since_event += 1


def custom_send(p: FakePlatform, req: ApiRequest) -> Json:
    """POST cgi-bin/message/custom/send, inside the member's windows."""
    account, body = p.account_of(req), req.body
    user = known_user(account, body.need("touser"))
    if not user.subscribe:
        raise FakeError(43004, "require subscribe")
    msgtype = body.need("msgtype")
    text = describe(account, msgtype, body.child(msgtype), p.now())
    use_window(user.window, p.now())
    p.deliver(user.openid, "custom", text, msgtype=msgtype, appid=account.appid)
    return dict(OK)


def describe(account: OAAccount, msgtype: str, part: Body, now: float) -> str:
    """Validate one message's content and say it in a line (what the simulator prints)."""
    if msgtype == "text":
        if not part.text("content"):
            raise FakeError(44004, "empty content")
        return part.text("content")
    if msgtype in ("image", "voice", "video"):
        media = account.media.get(part.text("media_id"))
        if media is None or now - media.created_at >= MEDIA_TTL:
            raise FakeError(40007, "invalid media_id")
        return f"[{msgtype}] {media.media_id}"
    if msgtype == "news":
        return _news(part)
    if msgtype in ("link", "miniprogrampage", "msgmenu", "mpnews", "wxcard", "music"):
        return f"[{msgtype}] {part.text('title') or part.text('head_content')}".rstrip()
    raise FakeError(40008, "invalid message type")


def _news(part: Body) -> str:
    articles = part.seq("articles")
    if not articles:
        raise FakeError(44003, "empty news data")
    if len(articles) > 1:
        raise FakeError(45008, "article size out of limit")  # at most 1 article now
    first = Body(articles[0], 40097)
    return f"[news] {first.text('title')} {first.text('url')}".rstrip()


def template_send(p: FakePlatform, req: ApiRequest) -> Json:
    """POST cgi-bin/message/template/send: verified service accounts, daily quota."""
    account, body = p.account_of(req), req.body
    if not account.is_verified_service:
        raise FakeError(48001, "api unauthorized")
    template_id = body.text("template_id")
    if not template_id:
        raise FakeError(40037, "invalid template_id")
    user = account.users.get(body.text("touser"))
    if user is None or not user.subscribe:
        raise FakeError(43004, "require subscribe")
    _count_template(account, p.now())
    msgid = new_msg_id(p)
    data = dict(body.child("data").data)
    text = f"[模板 {template_id}] " + "; ".join(f"{k}: {_value(v)}" for k, v in data.items())
    p.deliver(user.openid, "template", text, template_id=template_id, url=body.text("url"))
    return {"errcode": 0, "errmsg": "ok", "msgid": msgid}


def _count_template(account: OAAccount, now: float) -> None:
    day = china_day(now)
    used = account.template_by_day.get(day, 0)
    if used >= account.template_quota:
        raise FakeError(45009, "reach max api daily quota limit")
    account.template_by_day[day] = used + 1


def _value(item: Any) -> str:
    return str(item.get("value", "")) if isinstance(item, Mapping) else str(item)


def new_msg_id(p: FakePlatform) -> int:
    """A fresh platform message id."""
    p.world.next_msg_id += 1
    return p.world.next_msg_id


ROUTES = {
    ("oa", "cgi-bin/message/custom/send"): Route(custom_send),
    ("oa", "cgi-bin/message/template/send"): Route(template_send),
}
