"""Points: earn, spend, reverse, adjust and expire, exact under any concurrency.

Money-like (100 points = 1 yuan). Every call is one transaction keyed by an idempotency
key: a repeat with the same key does nothing and returns the first entry. Duplicates are
decided by the entry's unique key, caught outside the transaction (on PostgreSQL a
failed insert aborts it) and answered by reading the winner's entry.

Invariants (DESIGN §3): balance = Σ remaining of open lots; balance − debt = Σ entries.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from tortoise.exceptions import IntegrityError

from storage.repos import points as repo
from storage.repos.points import Break, InsufficientPoints, PointsError, UnknownMember

__all__ = [
    "Break",
    "InsufficientPoints",
    "InvalidAmount",
    "InvalidExpiry",
    "KeyReused",
    "LedgerResult",
    "PointsError",
    "UnknownMember",
    "adjust",
    "award",
    "earn",
    "expire_due",
    "expiring_between",
    "lot_expiry",
    "outstanding",
    "reconcile",
    "reverse",
    "spend",
]

PER_MILLE = 1000
MAX_KEY = 191  # PointsEntry.idempotency_key
_EXPIRY_BATCH = 200


class InvalidAmount(PointsError, ValueError):
    """An amount, base or multiplier that must be positive is not."""


class InvalidExpiry(PointsError, ValueError):
    """A lot that would expire at or before the moment it is earned."""


class KeyReused(PointsError):
    """An idempotency key already names another operation (member, kind, amount, base)."""


@dataclass(frozen=True, slots=True)
class LedgerResult:
    """The entry written (or found, when ``duplicate``) and the member's totals now."""

    entry_id: int
    amount: int
    balance: int
    debt: int
    duplicate: bool = False


def award(base: int, tier_multiplier: int = PER_MILLE, day_multiplier: int = PER_MILLE) -> int:
    """Points for a base amount under per-mille multipliers, rounded down."""
    return base * tier_multiplier * day_multiplier // (PER_MILLE * PER_MILLE)


def lot_expiry(earned_at: datetime, tz: ZoneInfo) -> datetime:
    """The default expiry: the end of the calendar year after the business-local year."""
    return datetime(earned_at.astimezone(tz).year + 2, 1, 1, tzinfo=tz)


async def earn(
    member_id: int,
    base: int,
    key: str,
    *,
    now: datetime,
    expires_at: datetime,
    reason: str,
    source: str,
    tier_multiplier: int = PER_MILLE,
    day_multiplier: int = PER_MILLE,
    ref: str = "",
) -> LedgerResult:
    """Award floor(base × tier × day / 10⁶) points in a new lot; debt is settled first."""
    _positive(base=base, tier_multiplier=tier_multiplier, day_multiplier=day_multiplier)
    spec = repo.EntrySpec(
        member_id,
        key,
        "earn",
        award(base, tier_multiplier, day_multiplier),
        now,
        reason=reason,
        source=source,
        ref=ref,
        base=base,
        tier_multiplier=tier_multiplier,
        day_multiplier=day_multiplier,
    )
    return await _credit(spec, expires_at)


async def spend(
    member_id: int, amount: int, key: str, *, now: datetime, reason: str, source: str, ref: str = ""
) -> LedgerResult:
    """Spend from the oldest-expiring lots; InsufficientPoints if it would go below zero."""
    _positive(amount=amount)
    _check(key, now)
    spec = repo.EntrySpec(member_id, key, "spend", -amount, now, reason, source, ref)
    return await _once(spec, lambda: repo.debit(spec, allow_debt=False))


async def reverse(
    member_id: int, amount: int, key: str, *, now: datetime, reason: str, source: str, ref: str = ""
) -> LedgerResult:
    """Take back points (a refund): what the balance holds, the rest becomes debt."""
    _positive(amount=amount)
    _check(key, now)
    spec = repo.EntrySpec(member_id, key, "reverse", -amount, now, reason, source, ref)
    return await _once(spec, lambda: repo.debit(spec, allow_debt=True))


async def adjust(
    member_id: int,
    delta: int,
    key: str,
    *,
    now: datetime,
    expires_at: datetime,
    reason: str,
    actor: str,
) -> LedgerResult:
    """An operator's correction: positive like an earning, negative like a reversal."""
    if delta == 0:
        raise InvalidAmount("delta must not be 0")
    spec = repo.EntrySpec(
        member_id, key, "adjust", delta, now, reason, "operator", actor, base=max(delta, 0)
    )
    if delta > 0:
        return await _credit(spec, expires_at)
    _check(key, now)  # expires_at means nothing to a negative correction
    return await _once(spec, lambda: repo.debit(spec, allow_debt=True))


async def expire_due(now: datetime) -> int:
    """Expire every open lot whose time has come; the number of expiry entries written.

    One transaction per member, under the member's lock; each lot's entry is keyed by the
    lot, so two runs at once expire each lot once. One pass in member order: it ends.
    """
    _aware(now)
    written, after = 0, 0
    while members := await repo.members_with_due_lots(now, after, _EXPIRY_BATCH):
        for member_id in members:
            written += await repo.expire_member(member_id, now)
        after = members[-1]
    return written


async def reconcile() -> list[Break]:
    """Members whose balance, debt, lots or allocations disagree with the ledger."""
    return await repo.reconcile()


async def outstanding() -> int:
    """Σ balances: the brand's liability in points."""
    return await repo.outstanding()


async def expiring_between(start: datetime, end: datetime, member_id: int | None = None) -> int:
    """Points in open lots expiring in [start, end), for one member or everyone."""
    _aware(start)
    _aware(end)
    return await repo.expiring_between(start, end, member_id)


async def _once(spec: repo.EntrySpec, write: Callable[[], Awaitable[repo.Effect]]) -> LedgerResult:
    """Write once per key. An IntegrityError has rolled its transaction back: either the
    key exists (answer with its entry) or the member does not."""
    try:
        effect = await write()
    except IntegrityError as error:
        clash = error
    else:
        return LedgerResult(effect.entry_id, effect.amount, effect.balance, effect.debt)
    return await _duplicate(spec, otherwise=clash)


async def _duplicate(spec: repo.EntrySpec, otherwise: Exception) -> LedgerResult:
    """The first result under this key; ``otherwise`` (or UnknownMember) if there is none."""
    entry = await repo.find_entry(spec.key)
    if entry is None:
        if not await repo.member_exists(spec.member_id):
            raise UnknownMember(spec.member_id) from otherwise
        raise otherwise
    first = (entry.member_id, entry.kind, entry.amount, entry.base)
    if first != (spec.member_id, spec.kind, spec.amount, spec.base):
        raise KeyReused(f"{spec.key!r} is {entry.kind} {entry.amount} for {entry.member_id}")
    totals = await repo.totals(spec.member_id)
    balance, debt = totals if totals is not None else (0, 0)
    return LedgerResult(entry.id, entry.amount, balance, debt, duplicate=True)


async def _credit(spec: repo.EntrySpec, expires_at: datetime) -> LedgerResult:
    """An earning or positive correction; a late retry past the lot's expiry is still
    answered with its first result, a new key expiring already is refused."""
    _check(spec.key, spec.now)
    _aware(expires_at)
    if expires_at <= spec.now:
        refused = InvalidExpiry(f"lot would expire at {expires_at}, not after {spec.now}")
        return await _duplicate(spec, otherwise=refused)
    return await _once(spec, lambda: repo.credit(spec, expires_at))


def _positive(**values: int) -> None:
    for name, value in values.items():
        if value <= 0:
            raise InvalidAmount(f"{name} must be positive, got {value}")


def _check(key: str, now: datetime) -> None:
    if not key or len(key) > MAX_KEY:
        raise ValueError(f"idempotency key must be 1 to {MAX_KEY} characters")
    _aware(now)


def _aware(moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("datetimes must be timezone-aware")
