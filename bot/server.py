"""Running the HTTP server."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable

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
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
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
            "loop": type(loop).__module__.split(".")[0],
        },
    )
    web.run_app(
        app,
        host=settings.server.host,
        port=settings.server.port,
        access_log=None,
        print=None,
        handle_signals=True,
        loop=loop,
    )


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop when it is installed (the default install), else asyncio's.

    uvloop (libuv) runs the server's sockets, timers and callbacks in C: on the callback
    hot path that is less Python per request (see bench/README.md for the figures).
    """
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:  # optional: a platform without wheels runs on asyncio's loop
        pass
    else:
        factory = uvloop.new_event_loop
    return factory()
