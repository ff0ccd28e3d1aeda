"""Chat features, one router each. ``ROUTERS`` is the dispatch order; fallback last."""

from __future__ import annotations

from bot.routing import Router
from handlers import birthday, dev, fallback, follow, help, points

ROUTERS: tuple[Router, ...] = (
    follow.router,
    help.router,
    points.router,
    birthday.router,
    dev.router,
    fallback.router,
)
