"""OA parameter QR codes (and the mp image), temporary media, and the custom menu.

QR codes: https://developers.weixin.qq.com/doc/offiaccount/Account_Management/Generating_a_Parametric_QR_Code.html
Media: https://developers.weixin.qq.com/doc/offiaccount/Asset_Management/New_temporary_materials.html
Menu: https://developers.weixin.qq.com/doc/offiaccount/Custom_Menus/Creating_Custom-Defined_Menu.html
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from bot.devtools.fake.common import OK, Body, FakeError, Json, Route, bad_args
from bot.devtools.fake.png import qr_png
from bot.devtools.fake.state import Call, Media, QrTicket

if TYPE_CHECKING:
    from bot.devtools.fake.common import ApiRequest
    from bot.devtools.fake.platform import FakePlatform

QR_MAX_EXPIRE, QR_DEFAULT_EXPIRE = 2_592_000, 60  # 30 days max; 60 s when not given
QR_LIMIT_SCENE_MAX = 100_000
TEMPORARY = frozenset({"QR_SCENE", "QR_STR_SCENE"})
MEDIA_LIMITS = {  # bytes, and the errcode for a file too large
    "image": (10 * 1024 * 1024, 40009),
    "voice": (2 * 1024 * 1024, 40010),
    "video": (10 * 1024 * 1024, 40011),
    "thumb": (64 * 1024, 40012),
}


def qrcode_create(p: FakePlatform, req: ApiRequest) -> Json:
    """POST cgi-bin/qrcode/create → {ticket, expire_seconds (temporary), url}."""
    account, body = p.account_of(req), req.body
    action = body.need("action_name")
    scene = _scene(action, body.child("action_info").child("scene"))
    ticket = "gQ" + secrets.token_urlsafe(30)
    answer: Json = {"ticket": ticket, "url": "http://weixin.qq.com/q/" + secrets.token_urlsafe(16)}
    expires_at: float | None = None
    if action in TEMPORARY:
        seconds = body.num("expire_seconds", QR_DEFAULT_EXPIRE)
        if seconds <= 0:
            raise bad_args("oa", "expire_seconds must be positive")
        answer["expire_seconds"] = seconds = min(seconds, QR_MAX_EXPIRE)
        expires_at = p.now() + seconds
    p.world.qr_tickets[ticket] = QrTicket(ticket, account.appid, scene, expires_at)
    return answer


def _scene(action: str, scene: Body) -> str:
    if action in ("QR_SCENE", "QR_LIMIT_SCENE"):
        top = QR_LIMIT_SCENE_MAX if action == "QR_LIMIT_SCENE" else 2**32 - 1
        value = scene.num("scene_id")
        if not 0 < value <= top:
            raise bad_args("oa", f"scene_id must be 1..{top}")
        return str(value)
    if action in ("QR_STR_SCENE", "QR_LIMIT_STR_SCENE"):
        text = scene.text("scene_str")
        if not 0 < len(text) <= 64:
            raise bad_args("oa", "scene_str must be 1..64 characters")
        return text
    raise bad_args("oa", f"unknown action_name {action!r}")


def show_qrcode(p: FakePlatform, ticket: str) -> bytes | None:
    """GET mp cgi-bin/showqrcode: the image while the ticket is valid, else None (404)."""
    found = p.world.qr_tickets.get(ticket)
    valid = found is not None and (found.expires_at is None or p.now() < found.expires_at)
    call = Call(p.next_seq(), "mp", "cgi-bin/showqrcode", {"ticket": ticket}, None, p.now())
    call.errcode = 0 if valid else 404
    p.world.calls.append(call)
    return qr_png(ticket) if valid else None


def media_upload(p: FakePlatform, req: ApiRequest) -> Json:
    """POST cgi-bin/media/upload?type=… (multipart field ``media``); media live 3 days."""
    account = p.account_of(req)
    kind = req.query.get("type", "")
    if kind not in MEDIA_LIMITS:
        raise FakeError(40004, "invalid media type")
    upload = req.files.get("media")
    if upload is None or not upload.data:
        raise FakeError(41005, "media data missing")
    limit, errcode = MEDIA_LIMITS[kind]
    if len(upload.data) > limit:
        raise FakeError(errcode, f"invalid {kind} size")
    media = Media(secrets.token_urlsafe(32), kind, len(upload.data), p.now())
    account.media[media.media_id] = media
    return {"type": kind, "media_id": media.media_id, "created_at": int(media.created_at)}


KEY_TYPES = frozenset(
    {
        "click",
        "scancode_push",
        "scancode_waitmsg",
        "pic_sysphoto",
        "pic_photo_or_album",
        "pic_weixin",
        "location_select",
    }
)
URL_TYPES = frozenset({"view", "miniprogram"})
OTHER_TYPES = frozenset({"media_id", "view_limited", "article_id", "article_view_limited"})
# Error codes for (top-level, sub) buttons: count, type, name, key, url.
MENU_CODES = {
    True: {"type": 40017, "name": 40018, "key": 40019, "url": 40020},
    False: {"type": 40024, "name": 40025, "key": 40026, "url": 40027},
}


def menu_create(p: FakePlatform, req: ApiRequest) -> Json:
    """POST cgi-bin/menu/create: 1–3 buttons, each with at most 5 sub-buttons."""
    buttons = req.body.seq("button")
    if not 1 <= len(buttons) <= 3:
        raise FakeError(40016, "invalid button size")
    for button in buttons:
        _check_button(Body(button, 40097), top=True)
    p.account_of(req).menu = buttons
    return dict(OK)


def _check_button(button: Body, top: bool) -> None:
    codes = MENU_CODES[top]
    if not 0 < len(button.text("name").encode()) <= (16 if top else 60):
        raise FakeError(codes["name"], "invalid button name size")
    subs = button.seq("sub_button")
    if subs and not top:
        raise FakeError(40022, "invalid sub menu level")
    if subs:
        if len(subs) > 5:
            raise FakeError(40023, "invalid sub button size")
        for sub in subs:
            _check_button(Body(sub, 40097), top=False)
        return
    _check_action(button, codes)


def _check_action(button: Body, codes: dict[str, int]) -> None:
    kind = button.text("type")
    if kind not in KEY_TYPES | URL_TYPES | OTHER_TYPES:
        raise FakeError(codes["type"], "invalid button type")
    if kind in KEY_TYPES and not 0 < len(button.text("key").encode()) <= 128:
        raise FakeError(codes["key"], "invalid button key size")
    if kind in URL_TYPES and not 0 < len(button.text("url").encode()) <= 1024:
        raise FakeError(codes["url"], "invalid button url size")


ROUTES = {
    ("oa", "cgi-bin/qrcode/create"): Route(qrcode_create),
    ("oa", "cgi-bin/media/upload"): Route(media_upload, multipart=True),
    ("oa", "cgi-bin/menu/create"): Route(menu_create),
}
