"""Running the HTTP server."""

from __future__ import annotations

import asyncio
import gc
import logging

from aiohttp import web

from bot.app import create_app
from bot.config import Settings
from bot.logs import setup_logging
from storage import db

log = logging.getLogger("bot.server")


def serve(settings: Settings) -> None:
    """Apply migrations on the embedded default, then serve until interrupted."""
    setup_logging(settings.log.level, settings.log.format)
    if db.is_sqlite(settings.database.url):
        asyncio.run(db.migrate(settings.database.url))
    app = create_app(settings)
    # Everything built so far lives as long as the process: keep it out of the cyclic
    # collector's scans (less GC work per callback on the hot path).
    gc.collect()
    gc.freeze()
    log.info(
        "serving",
        extra={
            "host": settings.server.host,
            "port": settings.server.port,
            "accounts": sorted(settings.accounts),
            "wecom": bool(settings.wecom),
        },
    )
    web.run_app(
        app,
        host=settings.server.host,
        port=settings.server.port,
        access_log=None,
        print=None,
        handle_signals=True,
    )
