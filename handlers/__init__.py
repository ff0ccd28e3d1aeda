"""Chat features, one router each. ``ROUTERS`` is the dispatch order; fallback last."""

from __future__ import annotations

from bot.routing import Router
from handlers import dev, fallback, follow, help, invite, tier

ROUTERS: tuple[Router, ...] = (
    follow.router,
    help.router,
    invite.router,
    tier.router,
    dev.router,
    fallback.router,
)
