"""Chat features, one router each. ``ROUTERS`` is the dispatch order; fallback last."""

from __future__ import annotations

from bot.routing import Router
from handlers import dev, fallback, help

ROUTERS: tuple[Router, ...] = (
    help.router,
    dev.router,
    fallback.router,
)
