"""Read-only member queries for replies and the operator CLI (one query each)."""

from __future__ import annotations

from typing import Any

from storage.models import Consent, Identity, Member, MemberTag, PointsEntry, PointsLot

_LOOKUP_KINDS = ("oa_openid", "unionid", "wecom_external_userid")


async def member_by_code(code: str) -> Member | None:
    """The member with this public code (codes are upper case)."""
    return await Member.get_or_none(code=code.strip().upper())


async def member_by_identity(value: str, kinds: tuple[str, ...] = _LOOKUP_KINDS) -> Member | None:
    """The member holding an identity value of one of the kinds (any app)."""
    ids = await Identity.filter(kind__in=kinds, value=value).values_list("member_id", flat=True)
    return await Member.get_or_none(id=ids[0]) if ids else None


async def member_by_mobile_hash(digest: str) -> Member | None:
    """The member whose mobile has this lookup hash."""
    return await Member.get_or_none(mobile_hash=digest)


async def identities(member_id: int) -> list[dict[str, Any]]:
    """The member's identities with their follow state."""
    return await (
        Identity.filter(member_id=member_id)
        .order_by("id")
        .values("kind", "app", "value", "followed", "followed_at", "unfollowed_at", "created_at")
    )


async def recent_entries(member_id: int, limit: int) -> list[dict[str, Any]]:
    """The member's latest ledger entries, newest first."""
    return await (
        PointsEntry.filter(member_id=member_id)
        .order_by("-id")
        .limit(limit)
        .values("id", "kind", "amount", "reason", "source", "ref", "created_at")
    )


async def open_lots(member_id: int) -> list[dict[str, Any]]:
    """The member's open lots, soonest expiry first."""
    return await (
        PointsLot.filter(member_id=member_id, closed_at__isnull=True)
        .order_by("expires_at", "id")
        .values("id", "amount", "remaining", "expires_at")
    )


async def tags(member_id: int) -> list[dict[str, Any]]:
    """The member's tags with their group and who set them."""
    return await (
        MemberTag.filter(member_id=member_id)
        .order_by("id")
        .values("tag__name", "tag__group__name", "source", "set_by", "created_at")
    )


async def consents(member_id: int) -> list[dict[str, Any]]:
    """The member's consent records, oldest first."""
    return await (
        Consent.filter(member_id=member_id)
        .order_by("at", "id")
        .values("purpose", "granted", "channel", "text_version", "at")
    )


async def last_entry_id() -> int:
    """The highest ledger entry id (0 when empty): a watermark for what a run wrote."""
    rows = await PointsEntry.all().order_by("-id").limit(1).values("id")
    return int(rows[0]["id"]) if rows else 0


async def expired_since(after_id: int) -> tuple[int, int]:
    """(entries, points) of expiry entries written after the watermark."""
    rows = await PointsEntry.filter(id__gt=after_id, kind="expire").values("amount")
    return len(rows), -sum(int(row["amount"]) for row in rows)
