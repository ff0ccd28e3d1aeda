"""OA mass send (群发) from the outbox: one message/mass/send per ≤ 10,000 openids.

The sender turns the pending ``oa_mass`` rows of one (account, group_key ``bc:<id>``) with
one content ``sending`` in one update, up to ``[outbound] mass_max``, after creating their
:class:`MassJob` with a stable ``clientmsgid`` (``bc<id>-<first row id>``), and makes ONE
call. Accepted: the rows are ``submitted`` (external_ref = the job's msg_id) and
MASSSENDJOBFINISH later fills the job's totals (handlers/mass.py). The API is idempotent
through ``clientmsgid``, so an unknown outcome (a timeout) is tried again as the same job
(the platform answers 45065 with the first msg_id); rate codes put the rows back
``pending`` (still the same job); any other error fails the rows.

https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Batch_Sends_and_Originality_Checks.html
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bot.clients.caller import single_attempt
from bot.clients.errors import ApiError, NotSent, OutcomeUnknown
from bot.clients.registry import Clients
from bot.clock import BusinessClock
from bot.config_outbound import OutboundSettings
from bot.outbox.policy import classify
from bot.outbox.ratelimit import RateLimiter
from storage.models import MassJob, OutboxMessage
from storage.repos import mass_jobs as repo
from storage.repos import outbox_tasks

log = logging.getLogger("bot.outbox")
CHANNEL = repo.CHANNEL
MASS_API = "cgi-bin/message/mass/send"
GROUP_PREFIX = "bc:"


def broadcast_of(group_key: str) -> int | None:
    """The broadcast id of a ``bc:<id>`` group key (None for any other key)."""
    suffix = group_key.removeprefix(GROUP_PREFIX)
    if suffix == group_key or not suffix.isdigit():
        return None
    return int(suffix)


def message_of(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(msgtype, content object) of a row's payload: ``{"text": …}`` or ``{"mpnews": …}``."""
    if "mpnews" in payload:
        return "mpnews", {"media_id": str(payload["mpnews"]["media_id"])}
    return "text", {"content": str(payload["text"])}


@dataclass(frozen=True, slots=True)
class MassSender:
    """What sending mass jobs needs (the sender's collaborators)."""

    clients: Clients
    clock: BusinessClock
    limiter: RateLimiter
    settings: OutboundSettings
    worker: str
    lease: timedelta

    async def send(self, row: OutboxMessage) -> int:
        """Send every due row of ``row``'s group, one job per ≤ ``mass_max``; rows handled."""
        broadcast_id = broadcast_of(row.group_key)
        if broadcast_id is None:
            return await self._refuse(row)
        total = 0
        while True:
            batch = await self._next_batch(row)
            if not batch:
                return total
            clientmsgid = batch[0].external_ref or f"bc{broadcast_id}-{batch[0].id}"
            job = await repo.job_for(broadcast_id, row.account, clientmsgid, self.clock.now())
            await self.limiter.acquire("oa", self._appid(row.account), MASS_API)
            ids, now = [r.id for r in batch], self.clock.now()
            rows = await repo.start_job(ids, clientmsgid, self.worker, now, self.lease)
            if not rows:
                return total
            total += len(rows)
            if not await self._one_job(job, rows):
                return total  # pending again (rate, retry): the rest waits as well

    async def _next_batch(self, row: OutboxMessage) -> list[OutboxMessage]:
        now = self.clock.now()
        retry = await repo.retry_candidates(row, self.worker, now)
        if retry:
            return retry
        fresh = await repo.fresh_candidates(row, self.worker, now, self.settings.mass_max)
        if not fresh:
            return []
        content = _content_key(fresh[0])
        return [r for r in fresh if _content_key(r) == content]  # a job has one content

    def _appid(self, account: str) -> str:
        found = self.clients.settings.accounts.get(account)
        return found.appid if found is not None else account

    async def _one_job(self, job: MassJob, rows: list[OutboxMessage]) -> bool:
        """One mass/send call for these rows; False when they are pending again."""
        ids, openids = [r.id for r in rows], [r.recipient for r in rows]
        if len(openids) == 1:  # the API takes 2–10,000 openids; a repeat counts once
            openids = openids * 2
        msgtype, content = message_of(rows[0].payload)
        await repo.mark_sending(job, len(rows))
        try:
            with single_attempt():
                api = self.clients.oa(rows[0].account).mass
                body = await api.send_to_openids(openids, msgtype, content, job.clientmsgid)
        except (ApiError, NotSent, OutcomeUnknown) as exc:
            attempts = max(r.attempts for r in rows)
            outcome = classify(exc, "oa", self.clock.now(), self.settings, True, attempts)
            if outcome.retry_at is not None:
                await outbox_tasks.retry_many(ids, outcome.retry_at, outcome.reason)
                await repo.job_ended(job, "pending")
                _log_job(job, len(rows), "pending", outcome.reason)
                return False
            await outbox_tasks.settle_many(ids, outcome.status, outcome.reason)
            await repo.job_ended(job, outcome.status)
            _log_job(job, len(rows), outcome.status, outcome.reason)
            return True
        msg_id = str(body.get("msg_id", ""))
        await repo.submitted(job, ids, msg_id)
        _log_job(job, len(rows), repo.SUBMITTED, "repeat" if body.get("duplicate") else "")
        return True

    async def _refuse(self, row: OutboxMessage) -> int:
        won = await outbox_tasks.start_group([row.id], self.worker, self.clock.now(), self.lease)
        reason = f"mass send needs a broadcast group (bc:<id>), not {row.group_key!r}"
        await outbox_tasks.settle_many([r.id for r in won], "failed", reason)
        return len(won)


def _content_key(row: OutboxMessage) -> str:
    return json.dumps(message_of(row.payload), sort_keys=True, ensure_ascii=False)


def _log_job(job: MassJob, count: int, status: str, reason: str) -> None:
    extra = {"clientmsgid": job.clientmsgid, "count": count, "status": status, "reason": reason}
    log.info("oa mass job", extra=extra)
