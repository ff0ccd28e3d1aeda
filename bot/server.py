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
    # Everything built by then (the app, and the pools, templates and caches of the start-up
    # hooks: this one runs last) lives as long as the process: out of the collector's scans.
    app.on_startup.append(_freeze_heap)
    # Young collections every 10,000 net allocations instead of 700: each callback leaves
    # tracked objects alive across a few collections (in-flight state, buffers flushed
    # every 50 ms), which a young collection scans again and again. Measured on the
    # sign-in bench (SQLite, one round of 27,000 callbacks): GC time 700 ms → 220 ms;
    # cyclic garbage waits a few hundred callbacks longer (sub-second at load).
    gc.set_threshold(10_000, 10, 10)
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


async def _freeze_heap(app: web.Application) -> None:
    gc.collect()
    gc.freeze()


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
