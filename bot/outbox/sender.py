"""The outbound sender: claims due OutboxMessage rows and sends each exactly once.

At most once: a row is marked ``sending`` (committed) before its call; an error answer
proves nothing was sent (failed, or pending again for quota/not-sent), a timeout does not
(``unknown``, never retried here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from datetime import datetime, timedelta
from typing import Any

from bot.clients.errors import ApiError, NotSent, OutcomeUnknown, QuotaExhausted
from bot.clients.registry import Clients
from bot.clock import BusinessClock
from storage.models import OutboxMessage
from storage.repos import outbox

log = logging.getLogger("bot.outbox")
LEASE = timedelta(seconds=90)


class UnknownChannel(ValueError):
    """A row names a channel this sender cannot send on."""


class Sender:
    """Claims batches and sends them; one per process (one per database on SQLite)."""

    def __init__(
        self, clients: Clients, clock: BusinessClock, batch: int = 50, idle: float = 1.0
    ) -> None:
        self.clients = clients
        self.clock = clock
        self.batch = batch
        self.idle = idle
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        """New work was enqueued in this process."""
        self._wakeup.set()

    async def run(self) -> None:
        """Send until cancelled."""
        while True:
            try:
                sent = await self.run_once()
            except Exception:
                log.exception("outbox pass failed")
                sent = 0
            if not sent:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.idle):
                        await self._wakeup.wait()
                self._wakeup.clear()

    async def run_once(self) -> int:
        """One pass: recover abandoned rows, claim a batch, send it; returns rows handled."""
        now = self.clock.now()
        abandoned = await outbox.mark_abandoned(now)
        if abandoned:
            log.warning("outbox rows left sending by a dead sender", extra={"count": abandoned})
        rows = await outbox.claim(self.worker, now, LEASE, self.batch)
        for row in rows:
            await self.send_one(row)
        return len(rows)

    async def drain(self, max_passes: int = 100) -> None:
        """Send everything that is due now (CLI commands and tests)."""
        for _ in range(max_passes):
            if not await self.run_once():
                return

    async def send_one(self, row: OutboxMessage) -> None:
        """Send one claimed row and record the outcome."""
        if not await outbox.start_sending(row, self.worker, self.clock.now(), LEASE):
            return
        status, reason, retry_at = await self._attempt(row)
        if retry_at is not None:
            await outbox.retry_later(row.id, retry_at, reason)
        else:
            sent_at = self.clock.now() if status == "sent" else None
            await outbox.settle(row.id, status, reason, sent_at)
        log.info(
            "outbox row settled",
            extra={"outbox_id": row.id, "channel": row.channel, "status": status, "reason": reason},
        )

    async def _attempt(self, row: OutboxMessage) -> tuple[str, str, datetime | None]:
        try:
            await self._deliver(row)
        except QuotaExhausted as exc:
            return "pending", f"quota: {exc.errcode}", self._next_midnight()
        except NotSent as exc:
            return "pending", str(exc), self.clock.now() + timedelta(seconds=30)
        except ApiError as exc:
            return "failed", f"{exc.errcode} {exc.errmsg}", None
        except OutcomeUnknown as exc:
            return "unknown", str(exc), None
        except Exception as exc:
            log.exception("outbox send failed", extra={"outbox_id": row.id})
            return "failed", f"internal: {type(exc).__name__}", None
        return "sent", "", None

    def _next_midnight(self) -> datetime:
        now = self.clock.now()
        return datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo)

    async def _deliver(self, row: OutboxMessage) -> None:
        payload: dict[str, Any] = row.payload
        if row.channel == "oa_cs":
            await _send_oa_cs(self.clients, row.account, row.recipient, payload)
        elif row.channel == "oa_template":
            await _send_oa_template(self.clients, row.account, row.recipient, payload)
        elif row.channel == "wecom_agent":
            await self.clients.wecom().message.send_text(row.recipient, str(payload["text"]))
        else:
            raise UnknownChannel(row.channel)


async def _send_oa_cs(clients: Clients, account: str, openid: str, payload: dict[str, Any]) -> None:
    message = clients.oa(account).message
    if "news" in payload:
        news = payload["news"]
        await message.send_news(
            openid, news["title"], news["description"], news["url"], news["picurl"]
        )
    elif "image" in payload:
        await message.send_image(openid, str(payload["image"]["media_id"]))
    else:
        await message.send_text(openid, str(payload["text"]))


async def _send_oa_template(
    clients: Clients, account: str, openid: str, payload: dict[str, Any]
) -> None:
    message = clients.oa(account).message
    data = payload["data"]
    url = str(payload.get("url", ""))
    await message.send_template(openid, str(payload["template_id"]), data, url)
