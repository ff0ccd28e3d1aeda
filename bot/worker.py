"""``python -m bot worker``: the outbound sender without the HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from bot.app import build_services
from bot.config import Settings
from bot.logs import setup_logging
from bot.outbox.lock import SenderLock
from bot.outbox.sender import Sender
from storage import db

log = logging.getLogger("bot.worker")


class SenderBusy(RuntimeError):
    """On SQLite another process (a server with an embedded sender) already sends."""


def run_worker(settings: Settings) -> None:
    """Run the sender until SIGINT/SIGTERM."""
    setup_logging(settings.log.level, settings.log.format)
    lock = SenderLock(settings.database.url)
    if not lock.acquire():
        raise SenderBusy(
            "a server with an embedded sender already uses this SQLite database; "
            "set [worker] embedded = false there, or run no separate worker"
        )
    try:
        asyncio.run(_main(settings))
    finally:
        lock.release()


async def _main(settings: Settings) -> None:
    if db.is_sqlite(settings.database.url):
        await db.migrate(settings.database.url)
    await db.open_db(settings.database.url)
    services = build_services(settings)
    await services.clients.start()
    sender = Sender.for_services(services)
    task = asyncio.create_task(sender.run(), name="outbox-sender")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker sending", extra={"worker": sender.worker})
    await stop.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await services.clients.close()
    await services.cache.close()
    await db.close_db()
