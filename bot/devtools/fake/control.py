"""The control API under ``/_control/`` (JSON): what tests and the simulator drive.

Every endpoint is a thin view over a :class:`FakePlatform` method. Bad input answers 400,
an unknown account, corp, job or task 404, both as ``{"error", "message"}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from bot.devtools.fake.common import Body, FakeError, Json
from bot.devtools.fake.platform import FakePlatform
from bot.devtools.fake.wecom_state import CorpState

PLATFORM = web.AppKey("fake_platform", FakePlatform)
PLATFORMS = frozenset({"oa", "wecom", "mp"})
Query = Mapping[str, str]
Control = Callable[[FakePlatform, Body, Query], Json]
View = Callable[[web.Request], Awaitable[web.StreamResponse]]
OK: Json = {"ok": True}


def _number(body: Body, key: str, default: float = 0.0) -> float:
    value = body.data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{key} must be a number")
    return float(value)


def fail(p: FakePlatform, body: Body, _: Query) -> Json:
    """``{"platform", "api", "errcode", "times", "delay"}``: fail or slow the next calls."""
    platform, times = body.need("platform"), body.num("times", 1)
    if platform not in PLATFORMS or times < 1:
        raise ValueError("platform must be oa, wecom or mp, and times at least 1")
    delay = _number(body, "delay")
    if not 0 <= delay <= 60:
        raise ValueError("delay must be 0..60 seconds")
    errmsg = body.text("errmsg") or "injected failure"
    p.fail(platform, body.text("api") or "*", body.num("errcode"), times, delay, errmsg)
    return OK


def rate_limit(p: FakePlatform, body: Body, _: Query) -> Json:
    """``{"platform", "api", "per_second"}``: a global rate limit (0 lifts it)."""
    platform = body.need("platform")
    if platform not in PLATFORMS:
        raise ValueError("platform must be oa, wecom or mp")
    per_second = _number(body, "per_second")
    if per_second < 0:
        raise ValueError("per_second must not be negative")
    p.rate_limit(platform, body.text("api") or "*", per_second)
    return OK


def expire_tokens(p: FakePlatform, _: Body, __: Query) -> Json:
    """Every token expires now."""
    p.expire_tokens()
    return OK


def tokens(p: FakePlatform, _: Body, __: Query) -> Json:
    """How many tokens each app (and WeCom secret kind) was issued."""
    rows = []
    for (platform, app_id, secret), issued in sorted(p.tokens.issued.items()):
        corp = p.world.corps.get(app_id) if platform == "wecom" else None
        kinds = [] if corp is None else [k for k, s in _secrets(corp) if s == secret]
        rows.append({"platform": platform, "app_id": app_id, "kinds": kinds, "issued": issued})
    return {"tokens": rows}


def _secrets(corp: CorpState) -> tuple[tuple[str, str], ...]:
    return (("agent", corp.agent_secret), ("contact", corp.contact_secret))


def calls(p: FakePlatform, _: Body, query: Query) -> Json:
    """Recorded API calls (``platform``, ``api``, ``since`` filters)."""
    found = p.calls(query.get("platform", ""), query.get("api", ""), _since(query))
    return {"calls": [c.as_json() for c in found]}


def messages(p: FakePlatform, _: Body, query: Query) -> Json:
    """Deliveries to ``openid``, ``external_userid``, or to/via ``userid``, after ``since``."""
    who = {k: query.get(k, "") for k in ("openid", "userid", "external_userid")}
    if not any(who.values()):
        raise ValueError("give openid, userid or external_userid")
    found = p.messages(**who, since=_since(query))
    return {"messages": [d.as_json() for d in found]}


def _since(query: Query) -> int:
    return int(query.get("since", "0") or 0)


def interaction(p: FakePlatform, body: Body, _: Query) -> Json:
    """``{"appid", "openid", "kind", "scene"?}``: opens customer-service windows."""
    p.interaction(body.need("appid"), body.need("openid"), body.need("kind"), body.text("scene"))
    return OK


def users(p: FakePlatform, body: Body, _: Query) -> Json:
    """``{"appid", "openid", "unionid", "nickname", "subscribe"?}``: add or update a follower."""
    appid, openid = body.need("appid"), body.need("openid")
    if appid not in p.world.accounts:
        raise KeyError(appid)
    unionid, nickname = body.text("unionid"), body.text("nickname")
    user = p.add_user(appid, openid, unionid, nickname, body.num("subscribe", 1))
    return {"openid": user.openid, "unionid": user.unionid, "subscribe": user.subscribe}


def customers(p: FakePlatform, body: Body, _: Query) -> Json:
    """``{"external_userid", "name", "unionid", "follow_user": [...]}``: add or replace."""
    ext = body.need("external_userid")
    follows = [Body(f, 400).data for f in body.seq("follow_user")]
    p.add_customer(ext, body.text("name") or ext, body.text("unionid"), follows)
    return OK


def welcome_code(p: FakePlatform, body: Body, _: Query) -> Json:
    """``{"userid", "external_userid"}`` → ``{"welcome_code"}`` (valid 20 s, once)."""
    code = p.mint_welcome_code(body.need("userid"), body.need("external_userid"))
    return {"welcome_code": code}


def groupmsg_confirm(p: FakePlatform, body: Body, _: Query) -> Json:
    """``{"msgid", "userid"}``: the staff member sends their part of a group-message task."""
    return {"sent": p.confirm_groupmsg(body.need("msgid"), body.need("userid"))}


def mass_finish(p: FakePlatform, body: Body, _: Query) -> Json:
    """``{"msg_id"}`` → ``{"xml"}``: the MASSSENDJOBFINISH event for that job."""
    return {"xml": p.mass_finish_xml(body.num("msg_id"))}


def template_quota(p: FakePlatform, body: Body, _: Query) -> Json:
    """``{"appid", "quota"}``: an account's daily template-message quota."""
    p.set_template_quota(body.need("appid"), body.num("quota"))
    return OK


def time_now(p: FakePlatform, _: Body, __: Query) -> Json:
    """The fake's time and offset."""
    return {"now": p.now(), "offset": p.offset}


def time_move(p: FakePlatform, body: Body, query: Query) -> Json:
    """``{"advance": seconds}`` moves the fake's clock."""
    p.advance(_number(body, "advance"))
    return time_now(p, body, query)


def reset(p: FakePlatform, _: Body, __: Query) -> Json:
    """Back to the registered accounts, corp and fixtures."""
    p.reset()
    return OK


def _view(control: Control) -> View:
    async def view(request: web.Request) -> web.StreamResponse:
        """Run the control with the JSON body and query; errors as 400/404 JSON."""
        try:
            data = await request.json() if request.can_read_body else {}
            if not isinstance(data, dict):
                raise ValueError("the body must be a JSON object")
            return web.json_response(control(request.app[PLATFORM], Body(data, 400), request.query))
        except KeyError as exc:
            return _error(404, "not_found", f"unknown {exc}")
        except (ValueError, FakeError) as exc:
            return _error(400, "bad_request", str(exc))

    return view


def _error(status: int, error: str, message: str) -> web.Response:
    return web.json_response({"error": error, "message": message}, status=status)


POSTS: dict[str, Control] = {
    "fail": fail,
    "rate_limit": rate_limit,
    "expire_tokens": expire_tokens,
    "interaction": interaction,
    "users": users,
    "customers": customers,
    "welcome_code": welcome_code,
    "groupmsg/confirm": groupmsg_confirm,
    "mass/finish": mass_finish,
    "template_quota": template_quota,
    "time": time_move,
    "reset": reset,
}
GETS: dict[str, Control] = {
    "calls": calls,
    "messages": messages,
    "tokens": tokens,
    "time": time_now,
}


def setup_control(app: web.Application) -> None:
    """Add the ``/_control/…`` routes."""
    for name, control in POSTS.items():
        app.router.add_post(f"/_control/{name}", _view(control))
    for name, control in GETS.items():
        app.router.add_get(f"/_control/{name}", _view(control))
