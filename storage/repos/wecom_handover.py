"""Contact ways, customer transfers and the staff report's reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tortoise.transactions import in_transaction

from storage.models.wecom import ContactWay, CustomerTag, CustomerTransfer, StaffCustomer
from storage.repos import audit_log
from storage.timeutil import utc

FAIL_REASONS = {3: "customer refused", 4: "takeover staff member at the customer limit"}


async def save_contact_way(
    config_id: str, state: str, staff: list[str], qr_code: str, actor: str, now: datetime
) -> int:
    """Store a created contact way and its audit row in one transaction; its id."""
    async with in_transaction():
        row = await ContactWay.create(
            config_id=config_id, state=state, staff=staff, qr_code=qr_code,
            created_by=actor, created_at=utc(now),
        )  # fmt: skip
        detail = {"config_id": config_id, "state": state, "staff": staff}
        await audit_log.record(
            actor, "wecom.contact_way.create", f"contact_way:{row.id}", detail, now
        )
    return int(row.id)


_KEEP = ("id", "external_userid", "member_id", "remark", "description", "add_way", "state")


async def active_customers(corp: str, staff: str) -> list[dict[str, Any]]:
    """The staff member's active relations not already waiting on a transfer, oldest first."""
    return list(
        await StaffCustomer.filter(corp=corp, staff_userid=staff, status="active")
        .exclude(transfer_status="waiting")
        .order_by("id")
        .values(*_KEEP)
    )


async def record_requests(
    handover: str,
    takeover: str,
    resigned: bool,
    results: list[tuple[dict[str, Any], int]],
    actor: str,
    now: datetime,
) -> None:
    """One CustomerTransfer per customer (waiting when accepted, else failed), audited."""
    now = utc(now)
    async with in_transaction():
        for relation, errcode in results:
            status = "waiting" if errcode == 0 else "failed"
            reason = "" if errcode == 0 else f"errcode {errcode}"
            await CustomerTransfer.create(
                handover_userid=handover, takeover_userid=takeover,
                external_userid=relation["external_userid"], member_id=relation["member_id"],
                resigned=resigned, status=status, errcode=errcode, reason=reason,
                created_at=now, updated_at=now,
            )  # fmt: skip
            await StaffCustomer.filter(id=relation["id"]).update(
                transfer_status=status, transfer_note=reason, updated_at=now
            )
        detail = {"takeover": takeover, "resigned": resigned, "customers": len(results)}
        await audit_log.record(actor, "wecom.transfer", f"staff:{handover}", detail, now)


async def waiting(handover: str, takeover: str) -> dict[str, CustomerTransfer]:
    """Waiting transfers by external userid."""
    rows = await CustomerTransfer.filter(
        handover_userid=handover, takeover_userid=takeover, status="waiting"
    )
    return {r.external_userid: r for r in rows}


async def settle(
    corp: str, transfer: CustomerTransfer, status: int, taken_at: datetime | None, now: datetime
) -> str:
    """Apply a transfer_result status: success moves the relation, 3/4 fail it."""
    now = utc(now)
    outcome = "success" if status == 1 else "failed"
    reason = "" if status == 1 else FAIL_REASONS.get(status, f"status {status}")
    async with in_transaction():
        moved = await CustomerTransfer.filter(id=transfer.id, status="waiting").update(
            status=outcome, reason=reason, errcode=0 if status == 1 else status, updated_at=now
        )
        if not moved:
            return "already"
        found = await StaffCustomer.filter(
            corp=corp, staff_userid=transfer.handover_userid,
            external_userid=transfer.external_userid,
        ).values(*_KEEP)  # fmt: skip
        if not found:
            return outcome
        old = found[0]
        if outcome == "failed":
            await StaffCustomer.filter(id=old["id"]).update(
                transfer_status="failed", transfer_note=reason, updated_at=now
            )
            return outcome
        at = utc(taken_at) if taken_at is not None else now
        await StaffCustomer.filter(id=old["id"]).update(
            status="ended", ended_by="transfer", ended_at=at, transfer_status="success",
            transfer_note=f"to {transfer.takeover_userid}", updated_at=now,
        )  # fmt: skip
        new, _ = await StaffCustomer.get_or_create(
            corp=corp, staff_userid=transfer.takeover_userid,
            external_userid=transfer.external_userid,
            defaults=_takeover_fields(old, at, now),
        )  # fmt: skip
        await StaffCustomer.filter(id=new.id).update(status="active", ended_by="", ended_at=None)
        for tag_id in await CustomerTag.filter(relation_id=old["id"]).values_list(
            "tag_id", flat=True
        ):
            await CustomerTag.get_or_create(
                relation_id=new.id, tag_id=tag_id,
                defaults={"source": "sync", "set_by": "transfer", "created_at": now},
            )  # fmt: skip
    return outcome


def _takeover_fields(old: dict[str, Any], at: datetime, now: datetime) -> dict[str, Any]:
    kept = {k: v for k, v in old.items() if k not in ("id", "external_userid")}
    return {**kept, "status": "active", "added_at": at, "created_at": now, "updated_at": now}


async def report_rows(
    corp: str, start: datetime, end: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Relations that overlap [start, end) and transfers failed within it."""
    relations = (
        await StaffCustomer.filter(corp=corp, added_at__lt=utc(end))
        .exclude(status="pending")
        .values("staff_userid", "added_at", "ended_at", "ended_by")
    )
    failed = await CustomerTransfer.filter(
        status="failed", updated_at__gte=utc(start), updated_at__lt=utc(end)
    ).values("handover_userid", "updated_at")
    return relations, failed
