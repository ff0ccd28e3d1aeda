"""Fake Official Account APIs, enforcing the rules they fake.

Customer-service windows: https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Service_Center_messages.html
Mass send limits and clientmsgid: https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Batch_Sends_and_Originality_Checks.html
"""

from __future__ import annotations

import secrets
from typing import Any

from bot.devtools.fakeplatform.platform import FakePlatform
from bot.devtools.fakeplatform.state import FakeError, OAAccount, OAUser
from bot.devtools.fakeplatform.types import ApiRequest, Route

MESSAGE_WINDOW = 48 * 3600
MESSAGE_WINDOW_SENDS = 5
EVENT_WINDOW = 60
EVENT_WINDOW_SENDS = 3
MASS_PER_MONTH = 4


def token(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """GET cgi-bin/token."""
    appid, secret = req.query.get("appid", ""), req.query.get("secret", "")
    account = fake.accounts.get(appid)
    if account is None:
        raise FakeError(40013, "invalid appid")
    if secret != account.secret:
        raise FakeError(40125, "invalid appsecret")
    issued = fake.issue_token(("oa", appid, secret))
    return {"access_token": issued.value, "expires_in": 7200}


def _account(fake: FakePlatform, req: ApiRequest) -> OAAccount:
    assert req.token is not None
    return fake.accounts[req.token.owner[1]]


def user_info(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """GET cgi-bin/user/info."""
    account = _account(fake, req)
    user = fake.user(account.appid, req.query.get("openid", ""))
    return {
        "subscribe": user.subscribe,
        "openid": user.openid,
        "nickname": user.nickname,
        "unionid": user.unionid,
        "subscribe_time": user.subscribe_time,
        "subscribe_scene": "ADD_SCENE_QR_CODE",
        "qr_scene": 0,
        "qr_scene_str": "",
        "tagid_list": sorted(user.tags),
    }


def _use_window(fake: FakePlatform, user: OAUser) -> None:
    now, w = fake.now(), user.window
    if now - w.message_at <= MESSAGE_WINDOW and w.sent_since_message < MESSAGE_WINDOW_SENDS:
        w.sent_since_message += 1
        return
    if now - w.event_at <= EVENT_WINDOW and w.sent_since_event < EVENT_WINDOW_SENDS:
        w.sent_since_event += 1
        return
    if now - w.message_at <= MESSAGE_WINDOW or now - w.event_at <= EVENT_WINDOW:
        raise FakeError(45047, "out of response count limit")
    raise FakeError(45015, "response out of time limit or subscription is canceled")


def _content(body: dict[str, Any]) -> str:
    kind = body.get("msgtype")
    if kind == "text":
        text = str(body.get("text", {}).get("content", ""))
        if not text:
            raise FakeError(44003, "empty news data")
        return text
    if kind == "news":
        articles = body.get("news", {}).get("articles", [])
        if len(articles) != 1:
            raise FakeError(45008, "article size out of limit")
        return f"[图文] {articles[0].get('title', '')} {articles[0].get('url', '')}"
    if kind == "image":
        return f"[图片] {body.get('image', {}).get('media_id', '')}"
    raise FakeError(40008, "invalid message type")


def custom_send(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """POST cgi-bin/message/custom/send."""
    account = _account(fake, req)
    user = fake.user(account.appid, str(req.body.get("touser", "")))
    text = _content(req.body)
    _use_window(fake, user)
    fake.deliver(user.openid, "客服消息", text)
    return {}


def template_send(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """POST cgi-bin/message/template/send: verified service accounts, daily quota."""
    account = _account(fake, req)
    if account.type != "service" or not account.verified:
        raise FakeError(48001, "api unauthorized")
    user = fake.user(account.appid, str(req.body.get("touser", "")))
    if not user.subscribe:
        raise FakeError(43004, "require subscribe")
    used = account.template_used.get(fake.day(), 0)
    if used >= account.template_quota:
        raise FakeError(45009, "reach max api daily quota limit")
    account.template_used[fake.day()] = used + 1
    data = req.body.get("data", {})
    text = " ".join(f"{k}:{v.get('value', '')}" for k, v in data.items() if isinstance(v, dict))
    msgid = next(fake.seq)
    fake.deliver(user.openid, "模板消息", text, template_id=req.body.get("template_id", ""))
    return {"msgid": msgid}


def _month(fake: FakePlatform) -> str:
    return fake.day()[:7]


def _mass(fake: FakePlatform, req: ApiRequest, openids: list[str]) -> dict[str, Any]:
    account = _account(fake, req)
    jobs: dict[str, dict[str, Any]] = fake.extra.setdefault("mass_jobs", {})
    by_client: dict[str, str] = fake.extra.setdefault("mass_clientmsgid", {})
    client_id = str(req.body.get("clientmsgid", ""))
    if client_id and client_id in by_client:
        job = jobs[by_client[client_id]]
        if fake.now() - job["at"] < 86400:
            raise FakeError(45065, "clientmsgid exist", msg_id=job["msg_id"])
    text = _content(req.body)
    job = _run_mass(fake, account, openids, text)
    jobs[job["msg_id"]] = job
    if client_id:
        by_client[client_id] = job["msg_id"]
    return {"msg_id": job["msg_id"], "msg_data_id": job["msg_id"]}


def _run_mass(
    fake: FakePlatform, account: OAAccount, openids: list[str], text: str
) -> dict[str, Any]:
    sent, filtered = [], []
    for openid in openids:
        user = fake.users.get(account.appid, {}).get(openid)
        if user is None or not user.subscribe:
            filtered.append(openid)
            continue
        count = user.mass_received.get(_month(fake), 0)
        if account.type == "service" and count >= MASS_PER_MONTH:
            filtered.append(openid)
            continue
        user.mass_received[_month(fake)] = count + 1
        fake.deliver(openid, "群发", text)
        sent.append(openid)
    msg_id = str(1_000_000_000 + next(fake.seq))
    return {
        "msg_id": msg_id,
        "at": fake.now(),
        "total": len(openids),
        "sent": sent,
        "filtered": filtered,
        "appid": account.appid,
    }


def mass_send(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """POST cgi-bin/message/mass/send (2–10,000 openids)."""
    openids = [str(o) for o in req.body.get("touser", [])]
    if not 2 <= len(openids) <= 10_000:
        raise FakeError(40130, "invalid openid list size, at least two openid")
    return _mass(fake, req, openids)


def mass_sendall(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """POST cgi-bin/message/mass/sendall (by tag or to all)."""
    account = _account(fake, req)
    flt = req.body.get("filter", {})
    users = fake.users.get(account.appid, {}).values()
    if flt.get("is_to_all"):
        openids = [u.openid for u in users]
    else:
        tag_id = int(flt.get("tag_id", 0))
        openids = [u.openid for u in users if tag_id in u.tags]
    return _mass(fake, req, openids)


def _tags(fake: FakePlatform, appid: str) -> dict[int, str]:
    tags: dict[str, dict[int, str]] = fake.extra.setdefault("oa_tags", {})
    return tags.setdefault(appid, {2: "星标组"})


def tags_get(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """GET cgi-bin/tags/get."""
    account = _account(fake, req)
    users = fake.users.get(account.appid, {}).values()
    tags = _tags(fake, account.appid)
    return {
        "tags": [
            {"id": i, "name": n, "count": sum(i in u.tags for u in users)} for i, n in tags.items()
        ]
    }


def tags_create(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """POST cgi-bin/tags/create."""
    tags = _tags(fake, _account(fake, req).appid)
    name = str(req.body.get("tag", {}).get("name", ""))
    if not name or len(name) > 30:
        raise FakeError(45158, "tag name too long")
    if name in tags.values():
        raise FakeError(45157, "invalid tag name")
    tag_id = max(tags, default=99) + 1
    tags[tag_id] = name
    return {"tag": {"id": tag_id, "name": name}}


def _batch_tag(fake: FakePlatform, req: ApiRequest, add: bool) -> dict[str, Any]:
    account = _account(fake, req)
    tag_id = int(req.body.get("tagid", 0))
    if tag_id not in _tags(fake, account.appid):
        raise FakeError(45159, "invalid tag id")
    for openid in req.body.get("openid_list", []):
        user = fake.user(account.appid, str(openid))
        (user.tags.add if add else user.tags.discard)(tag_id)
    return {}


def tags_members_tag(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """POST cgi-bin/tags/members/batchtagging."""
    return _batch_tag(fake, req, True)


def tags_members_untag(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """POST cgi-bin/tags/members/batchuntagging."""
    return _batch_tag(fake, req, False)


def tags_of_user(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """POST cgi-bin/tags/getidlist."""
    user = fake.user(_account(fake, req).appid, str(req.body.get("openid", "")))
    return {"tagid_list": sorted(user.tags)}


def qrcode_create(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """POST cgi-bin/qrcode/create (temporary ≤ 30 days, or permanent)."""
    action = str(req.body.get("action_name", ""))
    if action not in ("QR_SCENE", "QR_STR_SCENE", "QR_LIMIT_SCENE", "QR_LIMIT_STR_SCENE"):
        raise FakeError(40097, "invalid args")
    permanent = action.startswith("QR_LIMIT")
    seconds = 0 if permanent else min(int(req.body.get("expire_seconds", 60)), 2_592_000)
    ticket = secrets.token_urlsafe(18)
    tickets: dict[str, float | None] = fake.extra.setdefault("qr_tickets", {})
    tickets[ticket] = None if permanent else fake.now() + seconds
    answer: dict[str, Any] = {"ticket": ticket, "url": f"http://weixin.qq.com/q/{ticket[:12]}"}
    if not permanent:
        answer["expire_seconds"] = seconds
    return answer


def media_upload(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """POST cgi-bin/media/upload (multipart ``media``), valid 3 days."""
    if not req.files.get("media"):
        raise FakeError(41005, "media data missing")
    media_id = secrets.token_urlsafe(24)
    fake.extra.setdefault("media", {})[media_id] = len(req.files["media"])
    return {
        "type": req.query.get("type", "image"),
        "media_id": media_id,
        "created_at": int(fake.now()),
    }


def menu_create(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """POST cgi-bin/menu/create: ≤ 3 buttons, ≤ 5 sub-buttons each."""
    buttons = req.body.get("button", [])
    if not 1 <= len(buttons) <= 3:
        raise FakeError(40016, "invalid button size")
    if any(len(b.get("sub_button", [])) > 5 for b in buttons):
        raise FakeError(40017, "invalid sub button size")
    fake.extra.setdefault("menus", {})[_account(fake, req).appid] = buttons
    return {}


ROUTES = (
    Route("GET", "cgi-bin/token", token, auth="none"),
    Route("GET", "cgi-bin/user/info", user_info),
    Route("POST", "cgi-bin/message/custom/send", custom_send),
    Route("POST", "cgi-bin/message/template/send", template_send),
    Route("POST", "cgi-bin/message/mass/send", mass_send),
    Route("POST", "cgi-bin/message/mass/sendall", mass_sendall),
    Route("GET", "cgi-bin/tags/get", tags_get),
    Route("POST", "cgi-bin/tags/create", tags_create),
    Route("POST", "cgi-bin/tags/members/batchtagging", tags_members_tag),
    Route("POST", "cgi-bin/tags/members/batchuntagging", tags_members_untag),
    Route("POST", "cgi-bin/tags/getidlist", tags_of_user),
    Route("POST", "cgi-bin/qrcode/create", qrcode_create),
    Route("POST", "cgi-bin/media/upload", media_upload),
    Route("POST", "cgi-bin/menu/create", menu_create),
)
