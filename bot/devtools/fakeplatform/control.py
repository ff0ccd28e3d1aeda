"""The control API (``/_control/…``): failure injection, fixtures, inspection, time."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.devtools.fakeplatform.state import Customer, Failure, FakeError, Follow

if TYPE_CHECKING:
    from bot.devtools.fakeplatform.platform import FakePlatform


def setup_control(app: web.Application, fake: FakePlatform) -> None:
    """Add the control routes, bound to this platform."""
    posts = {
        "fail": fail,
        "expire_tokens": expire_tokens,
        "interaction": interaction,
        "users": add_user,
        "customers": add_customer,
        "welcome_code": welcome_code,
        "groupmsg/confirm": groupmsg_confirm,
        "mass/finish": mass_finish,
        "time": move_time,
        "reset": reset,
    }
    for name, func in posts.items():
        app.router.add_post(f"/_control/{name}", _json(fake, func))
    app.router.add_get("/_control/calls", _json(fake, calls))
    app.router.add_get("/_control/messages", _json(fake, messages))


def _json(fake: FakePlatform, func: Any) -> Any:
    async def handler(request: web.Request) -> web.Response:
        data: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            body = await request.json()
            data.update(body if isinstance(body, dict) else {})
        try:
            return web.json_response(func(fake, data))
        except (FakeError, KeyError, ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)

    return handler


def fail(fake: FakePlatform, data: dict[str, Any]) -> dict[str, Any]:
    """Make the next N matching calls fail (errcode) or answer slowly (delay)."""
    failure = Failure(
        str(data["platform"]),
        str(data.get("api", "*")),
        int(data.get("times", 1)),
        int(data.get("errcode", 0)),
        float(data.get("delay", 0)),
    )
    fake.failures.append(failure)
    return {"ok": True}


def expire_tokens(fake: FakePlatform, data: dict[str, Any]) -> dict[str, Any]:
    """Every token expires now."""
    fake.expire_tokens()
    return {"ok": True}


def interaction(fake: FakePlatform, data: dict[str, Any]) -> dict[str, Any]:
    """The member sent a message (48 h window) or subscribed/scanned/clicked (60 s window)."""
    user = fake.user(str(data["appid"]), str(data["openid"]), create=True)
    kind = str(data.get("kind", "message"))
    if kind == "message":
        user.window.message_at, user.window.sent_since_message = fake.now(), 0
    elif kind in ("subscribe", "scan", "click"):
        user.window.event_at, user.window.sent_since_event = fake.now(), 0
        user.subscribe = 1
    else:
        raise ValueError(f"unknown interaction kind {kind!r}")
    return {"ok": True}


def add_user(fake: FakePlatform, data: dict[str, Any]) -> dict[str, Any]:
    """Add or update a follower."""
    user = fake.user(str(data["appid"]), str(data["openid"]), create=True)
    user.unionid = str(data.get("unionid", user.unionid))
    user.nickname = str(data.get("nickname", user.nickname))
    return {"ok": True}


def add_customer(fake: FakePlatform, data: dict[str, Any]) -> dict[str, Any]:
    """Add or replace a WeCom customer with follow info."""
    customer = Customer(
        str(data["external_userid"]), str(data.get("name", "")), str(data.get("unionid", ""))
    )
    for f in data.get("follow_user", []):
        customer.follow[f["userid"]] = Follow(
            f["userid"],
            f.get("remark", ""),
            f.get("state", ""),
            int(f.get("add_way", 1)),
            list(f.get("tags", [])),
            int(fake.now()),
        )
    fake.customers[customer.external_userid] = customer
    return {"ok": True}


def welcome_code(fake: FakePlatform, data: dict[str, Any]) -> dict[str, Any]:
    """Mint the WelcomeCode an add_external_contact event carries (valid 20 s, once)."""
    from bot.devtools.fakeplatform.wecom_api import mint_welcome_code

    ext, userid = str(data["external_userid"]), str(data["userid"])
    if ext not in fake.customers:
        add_customer(
            fake,
            {
                "external_userid": ext,
                "name": ext,
                "unionid": f"u{ext}",
                "follow_user": [{"userid": userid, "state": data.get("state", "")}],
            },
        )
    fake.customers[ext].follow.setdefault(userid, Follow(userid, createtime=int(fake.now())))
    return {"welcome_code": mint_welcome_code(fake, userid, ext)}


def groupmsg_confirm(fake: FakePlatform, data: dict[str, Any]) -> dict[str, Any]:
    """The staff member confirms a group-send task."""
    from bot.devtools.fakeplatform.wecom_tasks import confirm_group_msg

    return {"sent": confirm_group_msg(fake, str(data["msgid"]), str(data["userid"]))}


def mass_finish(fake: FakePlatform, data: dict[str, Any]) -> dict[str, Any]:
    """The MASSSENDJOBFINISH event XML for a mass-send job (plaintext)."""
    job = fake.extra.get("mass_jobs", {})[str(data["msg_id"])]
    xml = (
        "<xml><ToUserName><![CDATA[gh_fake]]></ToUserName>"
        f"<FromUserName><![CDATA[{job['appid']}]]></FromUserName>"
        f"<CreateTime>{int(fake.now())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[MASSSENDJOBFINISH]]></Event>"
        f"<MsgID>{job['msg_id']}</MsgID><Status><![CDATA[send success]]></Status>"
        f"<TotalCount>{job['total']}</TotalCount><FilterCount>{len(job['sent'])}</FilterCount>"
        f"<SentCount>{len(job['sent'])}</SentCount><ErrorCount>0</ErrorCount></xml>"
    )
    return {"xml": xml}


def move_time(fake: FakePlatform, data: dict[str, Any]) -> dict[str, Any]:
    """Advance the fake's clock."""
    fake.offset += float(data.get("advance", 0))
    return {"now": fake.now()}


def reset(fake: FakePlatform, data: dict[str, Any]) -> dict[str, Any]:
    """Forget calls, deliveries and injected failures."""
    fake.calls.clear()
    fake.deliveries.clear()
    fake.failures.clear()
    return {"ok": True}


def calls(fake: FakePlatform, data: dict[str, Any]) -> dict[str, Any]:
    """Recorded calls, filtered by platform/api, after ``since``."""
    since = int(data.get("since", 0))
    found = [
        dataclasses.asdict(c)
        for c in fake.calls
        if c.seq > since
        and data.get("platform", c.platform) == c.platform
        and data.get("api", c.api) == c.api
    ]
    return {"calls": found}


def messages(fake: FakePlatform, data: dict[str, Any]) -> dict[str, Any]:
    """What was delivered to ``openid`` or ``userid`` (or an external_userid) after ``since``."""
    to = str(data.get("openid") or data.get("userid") or data.get("external_userid") or "")
    items = fake.delivered_to(to, int(data.get("since", 0)))
    return {"messages": [dataclasses.asdict(d) for d in items]}
