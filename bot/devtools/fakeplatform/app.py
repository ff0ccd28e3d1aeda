"""The fake platform as an aiohttp app: ``/oa``, ``/wecom``, ``/mp`` and ``/_control``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from bot.devtools.fakeplatform import oa_api, wecom_api, wecom_tasks
from bot.devtools.fakeplatform.control import setup_control
from bot.devtools.fakeplatform.platform import FakePlatform
from bot.devtools.fakeplatform.png import tiny_png
from bot.devtools.fakeplatform.state import FakeError, IssuedToken
from bot.devtools.fakeplatform.types import ApiRequest, Route

FAKE = web.AppKey("fake_platform", FakePlatform)


def create_fake_app(platform: FakePlatform) -> web.Application:
    """The fake WeChat/WeCom HTTP APIs plus the control API."""
    app = web.Application()
    app[FAKE] = platform
    for route in oa_api.ROUTES:
        app.router.add_route(route.method, f"/oa/{route.api}", _serve("oa", route))
    for route in wecom_api.ROUTES + wecom_tasks.ROUTES:
        app.router.add_route(route.method, f"/wecom/{route.api}", _serve("wecom", route))
    app.router.add_get("/mp/cgi-bin/showqrcode", show_qrcode)
    setup_control(app, platform)
    return app


def mount_fake_platform(app: web.Application, platform: FakePlatform) -> None:
    """Serve the fake under ``/_fake/`` on an existing app (``make run``)."""
    app.add_subapp("/_fake/", create_fake_app(platform))


def _serve(platform_name: str, route: Route) -> Any:
    async def handler(request: web.Request) -> web.Response:
        fake = request.app[FAKE]
        query = dict(request.query)
        body, files = await _body(request)
        call = fake.record(platform_name, route.api, query, body)
        try:
            if body is None:
                raise FakeError(47001, "data format error")
            await _injected(fake, platform_name, route.api)
            token = _auth(fake, platform_name, route, query)
            result = route.handler(fake, ApiRequest(query, body, token, files))
        except FakeError as exc:
            call.errcode = exc.errcode
            return web.json_response({"errcode": exc.errcode, "errmsg": exc.errmsg, **exc.extra})
        return web.json_response({"errcode": 0, "errmsg": "ok", **result})

    return handler


async def _body(request: web.Request) -> tuple[Any, dict[str, bytes]]:
    """The JSON body (None when unparsable) and any multipart files."""
    if request.content_type.startswith("multipart/"):
        form = await request.post()
        files = {k: v.file.read() for k, v in form.items() if isinstance(v, web.FileField)}
        return {}, files
    if request.method != "POST":
        return {}, {}
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        return None, {}
    return (body if isinstance(body, dict) else None), {}


async def _injected(fake: FakePlatform, platform: str, api: str) -> None:
    failure = fake.take_failure(platform, api)
    if failure is None:
        return
    if failure.delay:
        await asyncio.sleep(failure.delay)
    if failure.errcode:
        raise FakeError(failure.errcode, "injected failure")


def _auth(
    fake: FakePlatform, platform: str, route: Route, query: dict[str, str]
) -> IssuedToken | None:
    if route.auth == "none":
        return None
    invalid = 40001 if platform == "oa" else 40014
    token = fake.check_token(query.get("access_token", ""), invalid)
    if platform == "wecom" and token.owner[2] != route.auth:
        raise FakeError(48002, "api forbidden")
    if platform == "oa" and token.owner[0] != "oa":
        raise FakeError(40001, "invalid credential")
    return token


async def show_qrcode(request: web.Request) -> web.Response:
    """GET mp/cgi-bin/showqrcode: a PNG while the ticket is valid, else 404."""
    fake = request.app[FAKE]
    tickets: dict[str, float | None] = fake.extra.get("qr_tickets", {})
    ticket = request.query.get("ticket", "")
    if ticket not in tickets:
        raise web.HTTPNotFound(text="unknown ticket")
    expires = tickets[ticket]
    if expires is not None and expires <= fake.now():
        raise web.HTTPNotFound(text="ticket expired")
    return web.Response(body=tiny_png(), content_type="image/png")
