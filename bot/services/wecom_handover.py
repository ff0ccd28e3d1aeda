"""Contact ways (联系我), customer handover (在职/离职继承) and the staff report.

``transfer_customers`` asks WeCom to move a staff member's active customers (100 per
call), records a CustomerTransfer per customer, then polls transfer_result until none is
waiting; a success ends the old relation (``ended_by`` transfer) and records the
takeover's; a failure keeps the customer where it is, with the reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from storage.repos import wecom_handover as repo

if TYPE_CHECKING:
    from bot.context import Services

MAX_PER_CALL = 100
WAITING = 2
Sleep = Callable[[float], Awaitable[None]]


def _corp(services: Services) -> str:
    if services.settings.wecom is None:
        raise LookupError("no [wecom] section in the settings")
    return services.settings.wecom.corp_id


async def create_contact_way(
    services: Services, state: str, staff: list[str], actor: str
) -> tuple[str, str]:
    """add_contact_way (single for one staff member, multi for several): (config_id, QR)."""
    answer = await services.clients.wecom().contact_way.add(state, staff, single=len(staff) == 1)
    config_id, qr = str(answer.get("config_id", "")), str(answer.get("qr_code", ""))
    await repo.save_contact_way(config_id, state, staff, qr, actor, services.clock.now())
    return config_id, qr


@dataclass(slots=True)
class TransferCounts:
    """How a handover went."""

    requested: int = 0
    rejected: int = 0
    success: int = 0
    failed: int = 0
    polls: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


async def transfer_customers(
    services: Services,
    handover: str,
    takeover: str,
    *,
    resigned: bool = False,
    actor: str = "cli",
    sleep: Sleep,
    interval: float = 60.0,
    max_polls: int = 10_000,
    progress: TextIO | None = None,
) -> TransferCounts:
    """Hand the customers over and poll until WeCom settled every one."""
    corp, api = _corp(services), services.clients.wecom().transfer
    counts = TransferCounts()
    relations = await repo.active_customers(corp, handover)
    for start in range(0, len(relations), MAX_PER_CALL):
        chunk = relations[start : start + MAX_PER_CALL]
        by_ext = {r["external_userid"]: r for r in chunk}
        answers = await api.transfer(handover, takeover, list(by_ext), resigned=resigned)
        codes = {str(a.get("external_userid")): int(a.get("errcode", 0)) for a in answers}
        results = [(r, codes.get(ext, -1)) for ext, r in by_ext.items()]
        await repo.record_requests(
            handover, takeover, resigned, results, actor, services.clock.now()
        )
        counts.requested += sum(1 for _, code in results if code == 0)
        counts.rejected += sum(1 for _, code in results if code != 0)
    while await repo.waiting(handover, takeover) and counts.polls < max_polls:
        await sleep(interval)
        counts.polls += 1
        await _poll(services, corp, handover, takeover, counts)
        _progress(progress, counts)
    return counts


async def _poll(
    services: Services, corp: str, handover: str, takeover: str, counts: TransferCounts
) -> None:
    api = services.clients.wecom().transfer
    pending = await repo.waiting(handover, takeover)
    cursor = ""
    while True:
        rows, cursor = await api.result(handover, takeover, cursor)
        for row in rows:
            item = pending.get(str(row.get("external_userid")))
            status = int(row.get("status", WAITING))
            if item is None or status == WAITING:
                continue
            taken = int(row.get("takeover_time", 0) or 0)
            at = datetime.fromtimestamp(taken, UTC) if taken else None
            outcome = await repo.settle(corp, item, status, at, services.clock.now())
            if outcome == "success":
                counts.success += 1
            elif outcome == "failed":
                counts.failed += 1
                reason = repo.FAIL_REASONS.get(status, f"status {status}")
                counts.reasons[reason] = counts.reasons.get(reason, 0) + 1
        if not cursor:
            return


def _progress(stream: TextIO | None, counts: TransferCounts) -> None:
    if stream is None:
        return
    settled = counts.success + counts.failed
    print(
        f"  poll {counts.polls}: {settled:,}/{counts.requested:,} settled "
        f"({counts.success:,} taken over, {counts.failed:,} failed)",
        file=stream,
        flush=True,
    )


@dataclass(frozen=True, slots=True)
class StaffDay:
    """One staff member's day in the report."""

    day: date
    staff: str
    customers: int
    adds: int
    removed_by_staff: int
    removed_by_customer: int
    failed_transfers: int


async def staff_report(services: Services, days: int = 7) -> list[StaffDay]:
    """Per business day (the last ``days``, today included) per staff member."""
    corp, tz = _corp(services), services.clock.tz
    today = services.clock.today()
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, time.min, tz)
    end = datetime.combine(today + timedelta(days=1), time.min, tz)
    relations, failed = await repo.report_rows(corp, start, end)
    staff = sorted(
        {str(r["staff_userid"]) for r in relations} | {str(f["handover_userid"]) for f in failed}
    )
    out: list[StaffDay] = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        lo = datetime.combine(day, time.min, tz)
        hi = datetime.combine(day + timedelta(days=1), time.min, tz)
        for userid in staff:
            mine = [r for r in relations if r["staff_userid"] == userid]
            out.append(
                StaffDay(
                    day,
                    userid,
                    customers=sum(1 for r in mine if _active_at(r, hi)),
                    adds=sum(1 for r in mine if _within(r["added_at"], lo, hi)),
                    removed_by_staff=_ended(mine, "staff", lo, hi),
                    removed_by_customer=_ended(mine, "customer", lo, hi),
                    failed_transfers=sum(
                        1
                        for f in failed
                        if f["handover_userid"] == userid and _within(f["updated_at"], lo, hi)
                    ),
                )
            )
    return out


def _within(moment: Any, lo: datetime, hi: datetime) -> bool:
    return moment is not None and lo <= moment < hi


def _active_at(row: dict[str, Any], moment: datetime) -> bool:
    added, ended = row["added_at"], row["ended_at"]
    return added is not None and added < moment and (ended is None or ended >= moment)


def _ended(rows: list[dict[str, Any]], by: str, lo: datetime, hi: datetime) -> int:
    return sum(1 for r in rows if r["ended_by"] == by and _within(r["ended_at"], lo, hi))
