"""Chat features, one router each. ``ROUTERS`` is the dispatch order; fallback last."""

from __future__ import annotations

from bot.routing import Router
from handlers import birthday, dev, fallback, follow, help, invite, points, tier

ROUTERS: tuple[Router, ...] = (
    follow.router,
    help.router,
    invite.router,
    tier.router,
    points.router,
    birthday.router,
    dev.router,
    fallback.router,
)
