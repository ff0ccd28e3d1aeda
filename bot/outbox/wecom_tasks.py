"""WeCom group-message tasks (企业群发): one add_msg_template per staff member per group.

Two channels go out as tasks: ``wecom_customer`` (chat_type single, recipients external
userids) and ``wecom_group`` (chat_type group, recipients customer-group chat ids in
``chat_id_list``, the sender the groups' owner; at most 2,000 chat ids a call).

The sender turns every pending row of one (account, group_key, staff member) ``sending``
in one update, up to ``[outbound] wecom_task_max`` (the platform's 10,000), and makes ONE
call: the rows then wait ``awaiting_staff`` (external_ref = the task's msgid) until the
staff member confirms the task in WeCom, customers in the answer's fail_list are
``failed``, and the staff member gets an agent message naming the task. Quiet hours do
not apply: staff choose when to send. :func:`reconcile_awaiting` (run by the scheduling
leader) reads get_groupmsg_send_result and settles the awaiting rows.

https://developer.work.weixin.qq.com/document/path/92135 (add_msg_template)
https://developer.work.weixin.qq.com/document/path/93338 (get_groupmsg_send_result)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.clients.caller import single_attempt
from bot.clients.errors import ApiError, NotSent, OutcomeUnknown
from bot.clients.registry import Clients
from bot.clock import BusinessClock
from bot.config_outbound import OutboundSettings
from bot.outbox.channels import ADD_MSG_TEMPLATE
from bot.outbox.policy import classify
from bot.outbox.ratelimit import RateLimiter
from bot.templating import Renderer
from storage.models import OutboxMessage
from storage.repos import outbox
from storage.repos import outbox_tasks as repo

log = logging.getLogger("bot.outbox")
CHANNEL, GROUP_CHANNEL = "wecom_customer", "wecom_group"
TASK_CHANNELS = frozenset({CHANNEL, GROUP_CHANNEL})
STAFF_TEMPLATES = {CHANNEL: "staff_groupmsg_task", GROUP_CHANNEL: "staff_groupmsg_group_task"}
# add_msg_template: "chat_id_list … 最多可一次指定2000个客户群" (92135).
MAX_CHAT_IDS = 2000
FAILED_AT_CREATION = "not the staff member's customer, or over the customer's group-message limit"
# get_groupmsg_send_result status → how the row ends (0: not sent yet, still awaiting);
# a customer group's entry carries its chat_id instead of an external_userid.
RESULTS = {
    CHANNEL: {
        1: ("sent", ""),
        2: ("failed", "not a friend of the staff member any more"),
        3: ("failed", "the customer's group-message receive limit was reached"),
    },
    GROUP_CHANNEL: {
        1: ("sent", ""),
        2: ("failed", "the group could not be sent to (dismissed, or no longer the owner's)"),
        3: ("failed", "the group's group-message receive limit was reached"),
    },
}
RECIPIENT_KEY = {CHANNEL: "external_userid", GROUP_CHANNEL: "chat_id"}


@dataclass(frozen=True, slots=True)
class TaskSender:
    """What sending group tasks needs (the sender's collaborators)."""

    clients: Clients
    clock: BusinessClock
    limiter: RateLimiter
    settings: OutboundSettings
    renderer: Renderer
    worker: str
    lease: timedelta

    async def send(self, row: OutboxMessage) -> int:
        """Send every pending row of ``row``'s group, in as few tasks as allowed; rows sent."""
        total, limit = 0, self.settings.wecom_task_max
        if row.channel == GROUP_CHANNEL:
            limit = min(limit, MAX_CHAT_IDS)
        while True:
            candidates = await repo.group_candidates(row, self.worker, self.clock.now(), limit)
            if not candidates:
                return total
            text = _text(candidates[0])
            same = [r.id for r in candidates if _text(r) == text]  # a task has one content
            await self.limiter.acquire("wecom", self._corp_id(), ADD_MSG_TEMPLATE)
            rows = await repo.start_group(same, self.worker, self.clock.now(), self.lease)
            if not rows:
                return total
            total += len(rows)
            if not await self._one_task(rows, text):
                return total  # pending again (rate, quota): the rest waits as well

    def _corp_id(self) -> str:
        wecom = self.clients.settings.wecom
        return wecom.corp_id if wecom is not None else ""

    async def _one_task(self, rows: list[OutboxMessage], text: str) -> bool:
        """One add_msg_template call for these rows; False when they are pending again."""
        staff, ids = rows[0].staff_userid, [r.id for r in rows]
        chat_type = "group" if rows[0].channel == GROUP_CHANNEL else "single"
        try:
            with single_attempt():
                body = await self.clients.wecom().group_msg.add_template(
                    staff, [r.recipient for r in rows], text, chat_type
                )
        except (ApiError, NotSent, OutcomeUnknown) as exc:
            outcome = classify(exc, "wecom", self.clock.now(), self.settings)
            if outcome.retry_at is not None:
                await repo.retry_many(ids, outcome.retry_at, outcome.reason)
                return False
            await repo.settle_many(ids, outcome.status, outcome.reason)
            _log_task(staff, "", len(rows), outcome.status)
            return True
        msgid = str(body.get("msgid", ""))
        refused = {str(x) for x in body.get("fail_list", [])}
        await repo.settle_many(
            [r.id for r in rows if r.recipient in refused], "failed", FAILED_AT_CREATION
        )
        waiting = [r for r in rows if r.recipient not in refused]
        await repo.await_staff([r.id for r in waiting], msgid)
        _log_task(staff, msgid, len(waiting), repo.AWAITING)
        if waiting:
            await self._tell_staff(waiting[0], msgid, len(waiting), text)
        return True

    async def _tell_staff(self, row: OutboxMessage, msgid: str, count: int, text: str) -> None:
        template = STAFF_TEMPLATES[row.channel]
        notice = self.renderer.render(template, count=count, text=text, task=msgid[-6:])
        message = outbox.NewMessage(
            idempotency_key=f"groupmsg:{msgid}:{row.staff_userid}",
            channel="wecom_agent",
            account=row.account,
            recipient=row.staff_userid,
            payload={"text": notice},
            source="groupmsg_task",
        )
        await outbox.enqueue(message, self.clock.now())


def _text(row: OutboxMessage) -> str:
    return str(row.payload.get("text", ""))


def _log_task(staff: str, msgid: str, count: int, status: str) -> None:
    extra = {"staff_userid": staff, "msgid": msgid, "count": count, "status": status}
    log.info("wecom group task", extra=extra)


async def reconcile_awaiting(clients: Clients, now: datetime) -> int:
    """Settle awaiting rows from each task's send result; returns the rows settled."""
    settled = 0
    for channel in sorted(TASK_CHANNELS):
        for msgid, staff in await repo.awaiting_tasks(channel):
            try:
                settled += await _reconcile_task(clients, channel, msgid, staff, now)
            except (ApiError, NotSent, OutcomeUnknown) as exc:
                extra = {"msgid": msgid, "error": str(exc)}
                log.warning("group task result unavailable", extra=extra)
    return settled


async def _reconcile_task(
    clients: Clients, channel: str, msgid: str, staff: str, now: datetime
) -> int:
    waiting = await repo.awaiting_rows(channel, msgid, staff)
    results, key = RESULTS[channel], RECIPIENT_KEY[channel]
    ended: dict[tuple[str, str], list[int]] = {}
    cursor = ""
    while True:
        page, cursor = await clients.wecom().group_msg.send_result(msgid, staff, cursor)
        for entry in page:
            row_id = waiting.get(str(entry.get(key, "")))
            result = results.get(int(entry.get("status", 0)))
            if row_id is not None and result is not None:
                ended.setdefault(result, []).append(row_id)
        if not cursor:
            break
    settled = 0
    for (status, reason), ids in ended.items():
        settled += await repo.finish_awaiting(
            ids, status, reason, now if status == "sent" else None
        )
    return settled
