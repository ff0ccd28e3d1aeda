"""Progress of chat broadcasts, told to the staff member who confirmed them.

Agent messages (``wecom_agent`` outbox rows, the channel group-message tasks tell staff
through) go out when the broadcast starts, when half its rows to send have settled, and
with the final report when it is done or cancelled; a start that fails says why. Each
has the idempotency key ``bcchat:<broadcast id>:<stage>``, so a stage is sent once even
when two ticks or processes see it. :meth:`ChatProgress.__call__` is a watcher of
``BroadcastService.start_due`` (the scheduling leader's tick, every 30 s): it walks the
used codes whose broadcast has not been reported yet, and starts a confirmed broadcast
still a draft after ``RESTART_AFTER`` (the process that took the code died before it
started it; the state change is conditional, so a start racing it happens once).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from bot.services import broadcast_labels as labels
from bot.services.broadcast_content import BroadcastError
from bot.services.broadcast_sql import OA_CHANNELS
from bot.services.broadcasts import BroadcastService, BroadcastStateError
from bot.services.marketing import MARKETING, MarketingPolicy
from storage.models import Broadcast, BroadcastConfirmation
from storage.repos import broadcast_confirmations as codes
from storage.repos import outbox

log = logging.getLogger("bot.broadcasts")
TEMPLATE = "staff_broadcast_progress"
RESTART_AFTER = timedelta(minutes=2)
HALF = 50  # percent of the rows to send settled
ENDED = ("done", "cancelled")


class ChatProgress:
    """Starts confirmed chat broadcasts and sends their progress to the staff member."""

    def __init__(self, broadcasts: BroadcastService) -> None:
        self.broadcasts = broadcasts

    async def start(self, broadcast_id: int, staff: str) -> None:
        """Start the broadcast as ``staff:<userid>``; tell them it started or why not."""
        try:
            await self.broadcasts.start(broadcast_id, actor=f"staff:{staff}")
        except BroadcastStateError:
            return  # started or cancelled elsewhere: the watcher reports what follows
        except BroadcastError as exc:
            log.warning("chat broadcast not started: %s", exc, extra={"broadcast": broadcast_id})
            await self._say(broadcast_id, staff, "failed", error=str(exc))
            await _mark_all(broadcast_id, codes.FINAL)
            return
        await self.check_one(broadcast_id)

    async def __call__(self, now: datetime) -> None:
        """The tick's watcher: each watched broadcast's next progress message, if due."""
        for row in await codes.watching():
            try:
                await self._check(row, now)
            except Exception:
                log.exception("chat broadcast progress failed", extra={"broadcast": row.id})

    async def check_one(self, broadcast_id: int) -> None:
        """The next progress message of one broadcast (after its start, or on demand)."""
        row = await BroadcastConfirmation.filter(
            broadcast_id=broadcast_id, status=codes.USED
        ).first()
        if row is not None:
            await self._check(row, self.broadcasts.clock.now())

    async def _check(self, row: BroadcastConfirmation, now: datetime) -> None:
        b = await self.broadcasts.get(int(row.broadcast_id))
        if b.state == "draft":
            if row.used_at is not None and row.used_at <= now - RESTART_AFTER:
                await self.start(int(b.id), row.staff_userid)
            return
        if b.state in ENDED:
            await self._final(row, b)
            return
        if b.state not in ("sending", "paused") or not b.reach.get("enqueued"):
            return  # still enqueueing: the start tells its reach when it is done
        status = await self.broadcasts.status(int(b.id))
        if status["state"] in ENDED:  # the last row settled just now
            await self._final(row, await self.broadcasts.get(int(b.id)))
            return
        if row.progress == "":
            quiet = quiet_until(self.broadcasts, b)
            await self._stage(row, "started", b, reach=b.reach, status=status, quiet_until=quiet)
        elif row.progress == "started" and labels.percent(status["rows"]) >= HALF:
            await self._stage(row, "half", b, status=status)

    async def _final(self, row: BroadcastConfirmation, b: Broadcast) -> None:
        report = await self.broadcasts.report(int(b.id))
        await self._stage(row, codes.FINAL, b, report=report, status=report)

    async def _stage(
        self, row: BroadcastConfirmation, stage: str, b: Broadcast, **values: Any
    ) -> None:
        await self._say(int(b.id), row.staff_userid, stage, name=b.name, **values)
        await codes.mark(int(row.id), row.progress, stage)

    async def _say(self, broadcast_id: int, staff: str, stage: str, **values: Any) -> None:
        text = render(self.broadcasts, broadcast_id, stage, **values)
        wecom = self.broadcasts.settings.wecom
        message = outbox.NewMessage(
            idempotency_key=f"bcchat:{broadcast_id}:{stage}",
            channel="wecom_agent",
            account=wecom.name if wecom is not None else "",
            recipient=staff,
            payload={"text": text},
            source="broadcast_chat",
        )
        await outbox.enqueue(message, self.broadcasts.clock.now())
        if self.broadcasts.wake is not None:
            self.broadcasts.wake()


def render(broadcasts: BroadcastService, broadcast_id: int, stage: str, **values: Any) -> str:
    """The progress text of one stage (started, half, final, failed or status)."""
    status: dict[str, Any] = values.pop("status", {}) or {}
    report: dict[str, Any] = values.pop("report", {}) or {}
    reach: dict[str, Any] = values.pop("reach", {}) or {}
    rows = status.get("rows", {})
    settled, total = labels.progress(rows)
    return broadcasts.renderer.render(
        TEMPLATE,
        stage=stage,
        id=broadcast_id,
        title=values.pop("name", ""),
        error=values.pop("error", ""),
        state=labels.label(labels.STATES, str(status.get("state", ""))),
        percent=labels.percent(rows),
        settled=settled,
        total=total,
        rows=labels.status_lines(rows),
        reached=int(reach.get("reached", 0)),
        excluded=labels.reasons(reach.get("excluded", {})),
        channels=labels.channel_view(report),
        staff=labels.staff_view(report),
        quiet_until=values.pop("quiet_until", ""),
    )


def quiet_until(broadcasts: BroadcastService, b: Broadcast) -> str:
    """``HH:MM`` when the broadcast's marketing OA rows wait out the quiet hours now, else
    empty (service messages and WeCom tasks, which staff send, never wait)."""
    if b.kind != MARKETING or b.channel not in OA_CHANNELS:
        return ""
    settings = broadcasts.settings
    until = MarketingPolicy(settings.sop, settings.tz).quiet_until(broadcasts.clock.now())
    return until.strftime("%H:%M") if until is not None else ""


async def _mark_all(broadcast_id: int, stage: str) -> None:
    await BroadcastConfirmation.filter(broadcast_id=broadcast_id).update(progress=stage)
