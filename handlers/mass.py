"""MASSSENDJOBFINISH: WeChat reports a mass job's totals; they are stored on its MassJob.

The event names the job by MsgID (the msg_id the send answered). Totals are stored once
(WeChat retries an event it thinks unanswered); an unknown MsgID is logged and answered
``success`` all the same, so WeChat stops retrying.
"""

from __future__ import annotations

import logging

from wechatpy.events import MassSendJobFinishEvent

from bot.context import Ctx
from bot.replies import NO_REPLY, Reply
from bot.routing import Router
from storage.repos import mass_jobs

router = Router("mass")
log = logging.getLogger(__name__)


@router.on(MassSendJobFinishEvent)
async def mass_job_finished(event: MassSendJobFinishEvent, ctx: Ctx) -> Reply:
    """Store the job's totals (first report wins)."""
    totals = mass_jobs.Totals(
        status=str(event.status or ""),
        total=int(event.total_count),
        filtered=int(event.filter_count),
        sent=int(event.sent_count),
        errors=int(event.error_count),
    )
    msg_id = str(event.id)
    result = await mass_jobs.record_finish(msg_id, totals, ctx.now)
    extra = {"mass_msg_id": msg_id, "result": result, "sent": totals.sent, "errors": totals.errors}
    if result == "unknown":
        log.warning("mass job finish for an unknown job", extra=extra)
    else:
        log.info("mass job finished", extra=extra)
    return NO_REPLY
