"""Phone verifications and merge requests: locks, counts and conditional updates.

A code request takes the member row first (an UPDATE: a row lock on PostgreSQL, the
write lock on SQLite), so the hourly count under that lock is exact even when one
member's messages race. Tries are counted by a conditional UPDATE (``tries < max``), so
two concurrent guesses never get a sixth try. A merge request's ``pending_key`` is a
unique key: the second pending request for the same pair fails to insert.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from storage.models import AuditLog, Identity, Member, MergeRequest, PhoneVerification
from storage.models.members import MOBILE_HASH
from storage.timeutil import utc

PENDING, VERIFIED, FAILED, EXPIRED, SUPERSEDED = (
    "pending",
    "verified",
    "failed",
    "expired",
    "superseded",
)
_LOCK_MEMBER = "UPDATE member SET points_balance = points_balance WHERE id = {} RETURNING id"
_TAKE_TRY = (
    "UPDATE phone_verification SET tries = tries + 1"
    " WHERE id = {} AND status = 'pending' AND tries < {} RETURNING tries"
)

Digest = Callable[[int], str]


class UnknownMember(LookupError):
    """No member with this id."""


@dataclass(frozen=True, slots=True)
class Audit:
    """The audit row a change writes in its own transaction."""

    actor: str
    target: str
    detail: dict[str, Any]


async def _lock_member(tx: BaseDBAsyncClient, member_id: int) -> None:
    sql = _LOCK_MEMBER.format("$1" if tx.capabilities.dialect == "postgres" else "?")
    if not await tx.execute_query_dict(sql, [member_id]):
        raise UnknownMember(member_id)


async def _audit(audit: Audit, action: str, at: datetime, **extra: Any) -> None:
    await AuditLog.create(
        actor=audit.actor,
        action=action,
        target=audit.target,
        detail={**audit.detail, **extra},
        at=utc(at),
    )


async def issue(
    member_id: int,
    cipher: str,
    mobile_hash: str,
    code_digest: Digest,
    *,
    now: datetime,
    ttl: timedelta,
    per_hour: int,
    audit: Audit,
) -> int | None:
    """A new pending code for the member (earlier pending ones superseded); its id.

    None (and nothing created) when the member already asked for ``per_hour`` codes in
    the last hour. ``code_digest(id)`` hashes the code under the new row's id.
    """
    async with in_transaction() as tx:
        await _lock_member(tx, member_id)
        recent = await PhoneVerification.filter(
            member_id=member_id, created_at__gt=utc(now - timedelta(hours=1))
        ).count()
        if recent >= per_hour:
            await _audit(audit, "phone.code_refused", now, reason="rate_limited")
            return None
        await PhoneVerification.filter(member_id=member_id, status=PENDING).update(
            status=SUPERSEDED
        )
        row = await PhoneVerification.create(
            member_id=member_id,
            mobile_cipher=cipher,
            mobile_hash=mobile_hash,
            code_hash="",
            expires_at=utc(now + ttl),
            created_at=utc(now),
        )
        verification_id = int(row.id)
        await PhoneVerification.filter(id=verification_id).update(
            code_hash=code_digest(verification_id)
        )
        await _audit(audit, "phone.code_sent", now, verification=verification_id)
    return verification_id


async def latest(member_id: int) -> PhoneVerification | None:
    """The member's newest verification, whatever its state."""
    return await PhoneVerification.filter(member_id=member_id).order_by("-id").first()


async def close(verification_id: int, status: str, now: datetime, audit: Audit) -> bool:
    """Move a pending verification to ``status`` (audited); False if it was not pending."""
    values: dict[str, Any] = {"status": status}
    if status == VERIFIED:
        values["verified_at"] = utc(now)
    async with in_transaction():
        changed = await PhoneVerification.filter(id=verification_id, status=PENDING).update(
            **values
        )
        if changed:
            await _audit(audit, f"phone.code_{status}", now, verification=verification_id)
    return bool(changed)


async def take_try(verification_id: int, max_tries: int) -> int | None:
    """Count one try if any is left; this try's number, or None when none was left.

    One ``UPDATE … RETURNING``, so racing guesses each learn their own number.
    """
    conn = connections.get("default")
    mark = ("$1", "$2") if conn.capabilities.dialect == "postgres" else ("?", "?")
    rows = await conn.execute_query_dict(_TAKE_TRY.format(*mark), [verification_id, max_tries])
    return int(rows[0]["tries"]) if rows else None


async def record(action: str, now: datetime, audit: Audit, **extra: Any) -> None:
    """An audit row on its own (outcomes that change nothing else)."""
    await _audit(audit, action, now, **extra)


async def holder_of(mobile_hash: str) -> int | None:
    """The member holding this number: by its ``mobile_hash`` identity, else the column."""
    found = await Identity.filter(kind=MOBILE_HASH, app="", value=mobile_hash).values("member_id")
    if found:
        return int(found[0]["member_id"])
    ids = await Member.filter(mobile_hash=mobile_hash).values("id")
    return int(ids[0]["id"]) if ids else None


async def identity_kinds(member_id: int) -> set[str]:
    """The kinds of identity a member has."""
    rows = await Identity.filter(member_id=member_id).values("kind")
    return {str(r["kind"]) for r in rows}


async def member_codes(*member_ids: int) -> dict[int, str]:
    """Member codes by id."""
    rows = await Member.filter(id__in=member_ids).values("id", "code")
    return {int(r["id"]): str(r["code"]) for r in rows}


@dataclass(frozen=True, slots=True)
class Requested:
    """A merge request: its id, and whether one was already pending for the pair."""

    id: int
    duplicate: bool


def pending_key(member_id: int, holder_id: int) -> str:
    """The unique key of a pair's pending request."""
    return f"{member_id}:{holder_id}"


async def request_merge(
    member_id: int, holder_id: int, mobile_hash: str, reason: str, now: datetime, audit: Audit
) -> Requested:
    """A pending request for staff (the unique ``pending_key`` decides duplicates)."""
    key = pending_key(member_id, holder_id)
    try:
        async with in_transaction():
            row = await MergeRequest.create(
                member_id=member_id,
                holder_id=holder_id,
                mobile_hash=mobile_hash,
                pending_key=key,
                reason=reason[:255],
                created_at=utc(now),
            )
            await _audit(audit, "phone.merge_requested", now, request=int(row.id))
        return Requested(int(row.id), duplicate=False)
    except IntegrityError:
        pass
    existing = await MergeRequest.get(pending_key=key)
    await _audit(audit, "phone.merge_requested", now, request=int(existing.id), duplicate=True)
    return Requested(int(existing.id), duplicate=True)


async def list_requests(status: str | None) -> list[dict[str, Any]]:
    """Merge requests (oldest first), with both members' codes and the holder's cipher."""
    query = MergeRequest.all() if status is None else MergeRequest.filter(status=status)
    return await query.order_by("id").values(
        "id",
        "status",
        "reason",
        "created_at",
        "decided_at",
        "decided_by",
        "member_id",
        "holder_id",
        "mobile_hash",
        member_code="member__code",
        holder_code="holder__code",
        holder_cipher="holder__mobile_cipher",
    )


async def decide(
    request_id: int,
    status: str,
    *,
    actor: str,
    reason: str,
    now: datetime,
    merge_id: int | None = None,
) -> bool:
    """Approve or reject a pending request (pending_key cleared, audited); False if not pending."""
    values: dict[str, Any] = {
        "status": status,
        "pending_key": None,
        "decided_by": actor[:64],
        "decided_at": utc(now),
        "merge_id": merge_id,
    }
    if reason:
        values["reason"] = reason[:255]
    async with in_transaction():
        changed = await MergeRequest.filter(id=request_id, status="pending").update(**values)
        if changed:
            await AuditLog.create(
                actor=actor,
                action=f"merge_request.{status}",
                target=f"merge_request:{request_id}",
                detail={"reason": reason, "merge_id": merge_id},
                at=utc(now),
            )
    return bool(changed)
