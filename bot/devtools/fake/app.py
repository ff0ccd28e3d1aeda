"""The fake platform over HTTP: ``/oa/…``, ``/wecom/…``, ``/mp/…``, ``/sms/…``, ``/_control/…``.

``mount_fake_platform`` puts it under ``/_fake/`` on the bot's own server (``make run``),
so ``[api] oa_base_url = "http://127.0.0.1:8080/_fake/oa"`` reaches it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable

from aiohttp import BodyPartReader, web

from bot.devtools.fake.common import ApiRequest, FakeError, Upload
from bot.devtools.fake.control import PLATFORM, setup_control
from bot.devtools.fake.oa_assets import show_qrcode
from bot.devtools.fake.platform import FakePlatform
from bot.devtools.fake.sms import setup_sms

MAX_BODY = 16 * 1024 * 1024  # larger than any real upload limit, so the rules decide
_dumps = functools.partial(json.dumps, ensure_ascii=False)


def create_fake_app(platform: FakePlatform) -> web.Application:
    """The fake platform's aiohttp application."""
    app = web.Application()
    app[PLATFORM] = platform
    app.router.add_get("/mp/cgi-bin/showqrcode", _showqrcode)
    app.router.add_route("*", "/oa/{api:.+}", _api_view("oa"))
    app.router.add_route("*", "/wecom/{api:.+}", _api_view("wecom"))
    setup_control(app)
    setup_sms(app)
    return app


def mount_fake_platform(app: web.Application, platform: FakePlatform) -> None:
    """Serve the fake platform under ``/_fake/`` on ``app``."""
    app.add_subapp("/_fake/", create_fake_app(platform))


def _api_view(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def view(request: web.Request) -> web.StreamResponse:
        """Parse the HTTP request and hand it to the platform."""
        req = ApiRequest(name, request.match_info["api"], request.method, dict(request.query))
        if request.method == "POST":
            await _read_payload(request, req)
        answer = await request.app[PLATFORM].handle(req)
        return web.json_response(answer.body, status=answer.status, dumps=_dumps)

    return view


async def _read_payload(request: web.Request, req: ApiRequest) -> None:
    if request.content_type.startswith("multipart/"):
        req.files = await _read_files(request)
        return
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(raw))
    if not raw.strip():
        return
    try:
        req.json = json.loads(raw)
    except ValueError:
        req.parse_error = FakeError(47001, "data format error")
        return
    if not isinstance(req.json, dict):
        req.parse_error = FakeError(47001, "data format error")


async def _read_files(request: web.Request) -> dict[str, Upload]:
    files: dict[str, Upload] = {}
    reader = await request.multipart()
    async for part in reader:
        if isinstance(part, BodyPartReader) and part.name:
            data = await part.read(decode=False)
            files[part.name] = Upload(part.filename or "", bytes(data))
    return files


async def _showqrcode(request: web.Request) -> web.StreamResponse:
    image = show_qrcode(request.app[PLATFORM], request.query.get("ticket", ""))
    if image is None:
        return web.Response(status=404, text="ticket not found or expired")
    return web.Response(body=image, content_type="image/png")
