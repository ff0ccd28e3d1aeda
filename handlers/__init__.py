"""Chat features, one router each. ``ROUTERS`` is the dispatch order; fallback last."""

from __future__ import annotations

from bot.routing import Router
from handlers import dev, fallback, follow, help, signin

ROUTERS: tuple[Router, ...] = (
    follow.router,
    help.router,
    signin.router,
    dev.router,
    fallback.router,
)
