"""``/_dev/time``: move the running server's business clock (``[dev] time_travel``)."""

from __future__ import annotations

import re
from datetime import timedelta

from aiohttp import web

from bot.appkeys import SERVICES

_SHIFT = re.compile(r"^([+-]?)(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_shift(text: str) -> timedelta:
    """``+1d``, ``-3h``, ``90m`` → a timedelta; ValueError otherwise."""
    found = _SHIFT.match(text.strip())
    if found is None:
        raise ValueError(f"not a time shift: {text!r} (use e.g. +1d, -2h, 30m)")
    sign = -1 if found.group(1) == "-" else 1
    return sign * timedelta(**{_UNITS[found.group(3)]: int(found.group(2))})


async def get_time(request: web.Request) -> web.Response:
    """The business clock's time and offset."""
    clock = request.app[SERVICES].clock
    return web.json_response(
        {"now": clock.now().isoformat(), "offset_seconds": clock.offset.total_seconds()}
    )


async def post_time(request: web.Request) -> web.Response:
    """``{"shift": "+1d"}`` or ``{"reset": true}``."""
    clock = request.app[SERVICES].clock
    try:
        body = await request.json()
        if body.get("reset"):
            clock.reset()
        else:
            clock.shift(parse_shift(str(body.get("shift", ""))))
    except (ValueError, AttributeError) as exc:
        return web.json_response({"error": "bad_request", "message": str(exc)}, status=400)
    return await get_time(request)


def setup_time_travel(app: web.Application) -> None:
    """Mount the dev clock endpoints."""
    app.router.add_get("/_dev/time", get_time)
    app.router.add_post("/_dev/time", post_time)
