"""The daily jobs the scheduling leader runs, each fire time a ``SopRun`` (``job:<name>``).

Points and coupon expiry, the points reconciliation (recorded in the AuditLog, which the
``scrm_points_breaks`` gauge reads), the yearly tier evaluation on its evaluation day, and
the nightly WeCom sync (tags, customers, groups) when ``[wecom]`` is configured. Crons come
from ``[sop.jobs]``; every job is idempotent, and each returns small counts that the
scheduler stores in ``SopRun.counts``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from bot.config_program import MembershipSettings
from bot.services import points_report, wecom_groups, wecom_sync, wecom_tags
from storage.repos import coupons

if TYPE_CHECKING:
    from bot.context import Services

JOB_PREFIX = "job:"
ACTOR = "scheduler"
Counts = dict[str, int]
JobFn = Callable[["Services", datetime, datetime], Awaitable[Counts]]


@dataclass(frozen=True, slots=True)
class DailyJob:
    """A named job on a cron (business time); ``run(services, fire_time, now)``."""

    name: str
    cron: str
    run: JobFn

    @property
    def sop_id(self) -> str:
        """The SopRun id of its fire times."""
        return f"{JOB_PREFIX}{self.name}"


async def expire_points(services: Services, fire_time: datetime, now: datetime) -> Counts:
    """Expire every points lot due by now (AuditLog ``points.expire``)."""
    run = await points_report.expire(now, actor=ACTOR, now=now)
    return {"entries": run.entries, "points": run.points}


async def expire_coupons(services: Services, fire_time: datetime, now: datetime) -> Counts:
    """Mark issued coupons past their validity expired."""
    return {"expired": await coupons.expire_due(now)}


async def reconcile_points(services: Services, fire_time: datetime, now: datetime) -> Counts:
    """Check every member against the ledger and record it (AuditLog ``points.reconcile``)."""
    report = await points_report.reconcile(now, services.settings.tz, ACTOR)
    return {
        "breaks": len(report.breaks),
        "outstanding": report.outstanding,
        "next_month_expiry": report.next_month_expiry,
    }


async def evaluate_tiers(services: Services, fire_time: datetime, now: datetime) -> Counts:
    """The yearly evaluation of the evaluation day on or before the fire time (once)."""
    summary = await services.tiers.evaluate(fire_time)
    return {
        "kept": summary.kept,
        "dropped": summary.dropped,
        "already_done": int(summary.already_done),
    }


async def sync_wecom(services: Services, fire_time: datetime, now: datetime) -> Counts:
    """The nightly WeCom sync: the tag library, then customers, then customer groups."""
    tags = await wecom_tags.sync_tags(services.clients.wecom().tags)
    customers = await wecom_sync.sync_customers(services)
    groups = await wecom_groups.sync_groups(services)
    counts = {"tag_groups": tags.groups, "tags": tags.tags, "tags_deleted": tags.deleted}
    counts.update({f"customers_{k}": v for k, v in dataclasses.asdict(customers).items()})
    counts.update({f"groups_{k}": v for k, v in dataclasses.asdict(groups).items()})
    return counts


async def reconcile_wecom_tasks(services: Services, fire_time: datetime, now: datetime) -> Counts:
    """Read the send results of WeCom group-message tasks still awaiting their staff."""
    from bot.outbox.wecom_tasks import reconcile_awaiting

    return {"settled": await reconcile_awaiting(services.clients, now)}


_JOBS: dict[str, JobFn] = {
    "points_expire": expire_points,
    "coupons_expire": expire_coupons,
    "tiers_evaluate": evaluate_tiers,
    "points_reconcile": reconcile_points,
    "wecom_sync": sync_wecom,
    "wecom_tasks": reconcile_wecom_tasks,
}
_NEEDS_WECOM = ("wecom_sync", "wecom_tasks")


def evaluation_cron(membership: MembershipSettings) -> str:
    """00:20 on the yearly evaluation day (``auto``)."""
    month, day = (int(x) for x in membership.evaluation_day.split("-"))
    return f"20 0 {day} {month} *"


def daily_jobs(services: Services) -> list[DailyJob]:
    """The enabled jobs with their crons from ``[sop.jobs]``."""
    settings = services.settings
    made = []
    for name, cron in settings.sop.jobs.items():
        if not cron or (name in _NEEDS_WECOM and settings.wecom is None):
            continue
        if cron == "auto":
            cron = evaluation_cron(settings.membership)
        made.append(DailyJob(name, cron, _JOBS[name]))
    return made
