"""ONE-ID merge and undo: one transaction each, walking ``storage.member_data``.

A merge re-points every row of every ``merge="move"`` model from the merged member to the
survivor and records the ids per model in ``MemberMerge.moved``; an undo moves exactly
those rows back. Rows that would break a unique key holding the member (a sign-in on a day
both signed in, a tag both carry) stay with the merged member and are recorded as kept.

``moved`` holds ``rows`` (model → ids moved), ``kept`` (model → ids left behind),
``survivor`` and ``merged`` (the member fields before the merge, for the undo) and
``after`` (the survivor's fields the merge wrote; the undo restores a field only while it
still holds that value). An undo adds ``undo``: what it re-allocated.

Ledger (DESIGN §3: balance = Σ open lots remaining, balance − debt = Σ entries). A merge
moves entries and lots together and adds the cached totals. After a merge the survivor
may spend from lots that came from the merged member: its entries are its own, but their
allocations sit on the merged member's lots. The undo re-points those allocations onto
the survivor's own open lots (refused when they cannot cover them), so every entry keeps
its amount, the merged member's lots come back as they were and both members' cached
totals are recomputed from the ledger. Expiry entries of moved lots follow their lot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.functions import Sum
from tortoise.models import Model
from tortoise.transactions import in_transaction

from storage.member_data import classified
from storage.models import (
    Identity,
    Member,
    MemberMerge,
    PointsAllocation,
    PointsEntry,
    PointsLot,
)
from storage.repos import audit_log
from storage.repos.points import expiry_key
from storage.timeutil import utc

__all__ = [
    "MEMBER_FIELDS",
    "MergeOutcome",
    "MergeRefused",
    "TierRule",
    "UndoOutcome",
    "merge",
    "move_models",
    "undo",
]

# Member fields a merge may change; their values before it are recorded for the undo.
MEMBER_FIELDS = (
    "status",
    "merged_into_id",
    "tier",
    "growth",
    "points_balance",
    "points_debt",
    "birthday",
    "birth_md",
    "mobile_cipher",
    "mobile_hash",
    "marketing_opt_out",
    "referred_by_id",
    "last_active_at",
)
_LEDGER = ("points_balance", "points_debt")
_LOCK = "UPDATE member SET points_balance = points_balance WHERE id = {} RETURNING id"

# (survivor tier, merged tier, combined growth) → the survivor's tier after the merge
TierRule = Callable[[str, str, int], str]


class MergeRefused(Exception):
    """A merge or undo that cannot be done; nothing was changed. ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class MergeOutcome:
    """A committed merge: its id, rows moved and kept per model, identities moved."""

    merge_id: int
    moved: dict[str, int]
    kept: dict[str, int]
    identities: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class UndoOutcome:
    """A committed undo: rows moved back per model, points re-allocated, identities."""

    merge_id: int
    survivor_id: int
    merged_id: int
    moved: dict[str, int]
    reallocated: int
    identities: list[tuple[str, str, str]] = field(default_factory=list)


def move_models() -> list[tuple[str, type[Model], list[str]]]:
    """Every ``merge="move"`` model with the filter columns of its member links."""
    found = []
    for model, data in classified().items():
        if data.merge == "move":
            found.append((model.__name__, model, [_column(model, link) for link in data.links]))
    return sorted(found, key=lambda item: item[0])


def _column(model: type[Model], link: str) -> str:
    """The column to filter on: ``member`` (a foreign key) is ``member_id``."""
    return f"{link}_id" if link in model._meta.fk_fields else link


def _sql(conn: BaseDBAsyncClient, template: str) -> str:
    if conn.capabilities.dialect == "postgres":
        return template.format(*(f"${i}" for i in range(1, template.count("{}") + 1)))
    return template.replace("{}", "?")


async def _lock(conn: BaseDBAsyncClient, *member_ids: int) -> None:
    """Row-lock members in id order (the ledger's lock; no two merges deadlock)."""
    for member_id in sorted(set(member_ids)):
        rows = await conn.execute_query_dict(_sql(conn, _LOCK), [member_id])
        if not rows:
            raise MergeRefused(f"member {member_id} does not exist")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _fields(member: Member) -> dict[str, Any]:
    return {name: _jsonable(getattr(member, name)) for name in MEMBER_FIELDS}


def _restore(name: str, value: Any) -> Any:
    """A recorded field value as the ORM takes it."""
    if value is None:
        return None
    if name == "last_active_at":
        return datetime.fromisoformat(value)
    if name == "birthday":
        return date.fromisoformat(value)
    return value


# ---------------------------------------------------------------------------- merge


async def merge(
    survivor_id: int,
    merged_id: int,
    *,
    actor: str,
    reason: str,
    now: datetime,
    tier_rule: TierRule,
) -> MergeOutcome:
    """Merge ``merged_id`` into ``survivor_id`` in one transaction (MergeRefused: nothing)."""
    if survivor_id == merged_id:
        raise MergeRefused("a member cannot be merged into itself")
    async with in_transaction() as tx:
        await _lock(tx, survivor_id, merged_id)
        survivor = await Member.get(id=survivor_id)
        merged = await Member.get(id=merged_id)
        for member in (survivor, merged):
            if member.status != "active":
                raise MergeRefused(f"member {member.code} is {member.status}, not active")
        await _refuse_conflicts(survivor, merged)
        before = {"survivor": _fields(survivor), "merged": _fields(merged)}
        identities = await _identities(merged_id)
        rows, kept = await _move_rows(merged_id, survivor_id)
        after = await _merge_fields(survivor, merged, tier_rule)
        record = await MemberMerge.create(
            survivor_id=survivor_id,
            merged_id=merged_id,
            moved={"rows": rows, "kept": kept, **before, "after": after, "reason": reason},
            status="done",
            actor=actor,
            created_at=now,
        )
        moved = {name: len(ids) for name, ids in rows.items() if ids}
        kept_counts = {name: len(ids) for name, ids in kept.items() if ids}
        await audit_log.record(
            actor,
            "member.merge",
            f"member:{survivor_id}",
            {
                "merge_id": record.id,
                "survivor": survivor.code,
                "merged": merged.code,
                "reason": reason,
                "moved": moved,
                "kept": kept_counts,
            },
            now,
        )
    return MergeOutcome(int(record.id), moved, kept_counts, identities)


async def _refuse_conflicts(survivor: Member, merged: Member) -> None:
    """Two different values of one identity kind and app: two people, never merged."""
    if survivor.mobile_hash and merged.mobile_hash and survivor.mobile_hash != merged.mobile_hash:
        raise MergeRefused("the members hold different mobile numbers")
    held: dict[tuple[str, str], set[str]] = {}
    for kind, app, value in await Identity.filter(member_id=survivor.id).values_list(
        "kind", "app", "value"
    ):
        held.setdefault((str(kind), str(app)), set()).add(str(value))
    for kind, app, value in await Identity.filter(member_id=merged.id).values_list(
        "kind", "app", "value"
    ):
        theirs = held.get((str(kind), str(app)), set())
        if theirs and str(value) not in theirs:
            where = f" of {app}" if app else ""
            raise MergeRefused(f"both members hold a different {kind}{where}")


async def _identities(member_id: int) -> list[tuple[str, str, str]]:
    rows = await Identity.filter(member_id=member_id).values_list("kind", "app", "value")
    return [(str(kind), str(app), str(value)) for kind, app, value in rows]


async def _move_rows(source: int, target: int) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Re-point every movable row from ``source`` to ``target``; (moved, kept) ids."""
    moved: dict[str, list[int]] = {}
    kept: dict[str, list[int]] = {}
    for name, model, columns in move_models():
        for column in columns:
            ids = await _ids(model, column, source)
            clashing = await _clashes(model, column, source, target)
            keep = sorted(set(ids) & clashing)
            move = sorted(set(ids) - clashing)
            await _repoint(model, column, move, source, target)
            if move:
                moved.setdefault(name, []).extend(move)
            if keep:
                kept.setdefault(name, []).extend(keep)
    return moved, kept


async def _ids(model: type[Model], column: str, member_id: int) -> list[int]:
    rows = await model.filter(**{column: member_id}).order_by("id").values_list("id")
    return [int(row[0]) for row in rows]


async def _clashes(model: type[Model], column: str, source: int, target: int) -> set[int]:
    """Ids of ``source``'s rows that a unique key on ``column`` forbids moving to ``target``."""
    link = column.removesuffix("_id")
    clashing: set[int] = set()
    for group in model._meta.unique_together:
        if link not in group and column not in group:
            continue
        others = [_column(model, name) for name in group if name not in (link, column)]
        if not others:
            continue
        taken = set(await model.filter(**{column: target}).values_list(*others))
        for row in await model.filter(**{column: source}).values_list("id", *others):
            if tuple(row[1:]) in taken:
                clashing.add(int(row[0]))
    return clashing


async def _repoint(
    model: type[Model], column: str, ids: list[int], source: int, target: int
) -> None:
    if not ids:
        return
    changed = await model.filter(id__in=ids, **{column: source}).update(**{column: target})
    if changed != len(ids):
        raise MergeRefused(f"{model.__name__} rows changed during the move; try again")


async def _merge_fields(survivor: Member, merged: Member, tier_rule: TierRule) -> dict[str, Any]:
    """Combine the member rows; the survivor's written values (for the undo's check)."""
    growth = survivor.growth + merged.growth
    values: dict[str, Any] = {
        "points_balance": survivor.points_balance + merged.points_balance,
        "points_debt": survivor.points_debt + merged.points_debt,
        "growth": growth,
        "tier": tier_rule(survivor.tier, merged.tier, growth),
        "marketing_opt_out": survivor.marketing_opt_out or merged.marketing_opt_out,
    }
    if survivor.birthday is None and merged.birthday is not None:
        values["birthday"], values["birth_md"] = merged.birthday, merged.birth_md
    if survivor.referred_by_id is None and merged.referred_by_id not in (None, survivor.id):
        values["referred_by_id"] = merged.referred_by_id
    if merged.last_active_at is not None and (
        survivor.last_active_at is None or merged.last_active_at > survivor.last_active_at
    ):
        values["last_active_at"] = utc(merged.last_active_at)
    mobile = survivor.mobile_hash is None and merged.mobile_hash is not None
    await Member.filter(id=merged.id).update(
        status="merged",
        merged_into_id=survivor.id,
        points_balance=0,
        points_debt=0,
        growth=0,
        **({"mobile_hash": None, "mobile_cipher": None} if mobile else {}),
    )
    if mobile:  # mobile_hash is unique: cleared on the merged member first
        values["mobile_hash"], values["mobile_cipher"] = merged.mobile_hash, merged.mobile_cipher
    await Member.filter(id=survivor.id).update(**values)
    return {name: _jsonable(value) for name, value in values.items()}


# ----------------------------------------------------------------------------- undo


@dataclass(slots=True)
class _Ledger:
    """What the undo changes in the ledger besides moving rows back."""

    followers: list[int] = field(default_factory=list)  # expiry entries of moved lots
    reallocated: list[dict[str, Any]] = field(default_factory=list)
    expired: list[dict[str, Any]] = field(default_factory=list)


async def undo(
    merge_id: int, *, actor: str, now: datetime, tier_rule: Callable[[str, int], str]
) -> UndoOutcome:
    """Move back exactly what merge ``merge_id`` recorded (MergeRefused: nothing changes).

    ``tier_rule(tier, growth)`` is the survivor's tier for its growth after the undo,
    never below ``tier`` (the tier it had before the merge).
    """
    async with in_transaction() as tx:
        found = await MemberMerge.filter(id=merge_id).values_list(
            "survivor_id", "merged_id", "status", "moved"
        )
        if not found:
            raise MergeRefused(f"no merge {merge_id}")
        survivor_id, merged_id, status, recorded = int(found[0][0]), int(found[0][1]), *found[0][2:]
        await _lock(tx, survivor_id, merged_id)
        claimed = await MemberMerge.filter(id=merge_id, status="done").update(
            status="undone", undone_at=utc(now)
        )
        if not claimed:
            raise MergeRefused(f"merge {merge_id} is already {status}")
        moved = dict(recorded)
        if "rows" not in moved or "after" not in moved:
            raise MergeRefused(f"merge {merge_id} did not record member fields; undo by hand")
        rows: dict[str, list[int]] = {k: [int(i) for i in v] for k, v in moved["rows"].items()}
        survivor = await Member.get(id=survivor_id)
        merged = await Member.get(id=merged_id)
        if survivor.status != "active":
            raise MergeRefused(f"the survivor {survivor.code} is {survivor.status} since")
        if merged.status != "merged" or merged.merged_into_id != survivor_id:
            raise MergeRefused(f"member {merged.code} is no longer merged into {survivor.code}")
        ledger = await _reallocate(merge_id, survivor_id, merged_id, rows, now)
        identities = [
            (str(k), str(a), str(v))
            for k, a, v in await Identity.filter(id__in=rows.get("Identity", [])).values_list(
                "kind", "app", "value"
            )
        ]
        counts = await _move_back(rows, survivor_id, merged_id)
        if ledger.followers:
            await _repoint(PointsEntry, "member_id", ledger.followers, survivor_id, merged_id)
        await _restore_fields(survivor, merged, moved, tier_rule)
        totals = {m: await _ledger_totals(m) for m in (survivor_id, merged_id)}
        for member_id, (balance, debt) in totals.items():
            if debt < 0:
                raise MergeRefused(
                    f"since the merge the survivor settled {-debt} points of debt that "
                    "the merged member brought; undo by hand"
                )
            await Member.filter(id=member_id).update(points_balance=balance, points_debt=debt)
        moved["undo"] = {
            "followers": ledger.followers,
            "reallocated": ledger.reallocated,
            "expired": ledger.expired,
        }
        await MemberMerge.filter(id=merge_id).update(moved=moved)
        owed = sum(int(item["amount"]) for item in ledger.reallocated)
        await audit_log.record(
            actor,
            "member.unmerge",
            f"member:{survivor_id}",
            {
                "merge_id": merge_id,
                "survivor": survivor.code,
                "merged": merged.code,
                "moved": counts,
                "reallocated": owed,
                "expiry_entries": len(ledger.followers) + len(ledger.expired),
            },
            now,
        )
    return UndoOutcome(merge_id, survivor_id, merged_id, counts, owed, identities)


async def _move_back(
    rows: dict[str, list[int]], survivor_id: int, merged_id: int
) -> dict[str, int]:
    counts: dict[str, int] = {}
    models = {name: (model, columns) for name, model, columns in move_models()}
    for name, ids in rows.items():
        if not ids:
            continue
        if name not in models:
            raise MergeRefused(f"{name} is no longer a movable model; undo by hand")
        model, columns = models[name]
        column = columns[0]
        for candidate in columns:
            if await model.filter(id__in=ids, **{candidate: survivor_id}).exists():
                column = candidate
                break
        try:
            await _repoint(model, column, ids, survivor_id, merged_id)
        except IntegrityError as error:
            raise MergeRefused(f"{name} rows created since clash with the merged ones") from error
        counts[name] = len(ids)
    return counts


async def _reallocate(
    merge_id: int, survivor_id: int, merged_id: int, rows: dict[str, list[int]], now: datetime
) -> _Ledger:
    """Re-point the survivor's post-merge consumption of moved lots onto its own lots."""
    ledger = _Ledger()
    lots = rows.get("PointsLot", [])
    if not lots:
        return ledger
    entries = set(rows.get("PointsEntry", []))
    keys = [expiry_key(lot) for lot in lots]
    found = await PointsEntry.filter(idempotency_key__in=keys, member_id=survivor_id).values_list(
        "id"
    )
    ledger.followers = sorted(int(row[0]) for row in found if int(row[0]) not in entries)
    staying = entries | set(ledger.followers)
    crossing = [
        (int(a), int(e), int(lot), int(amount))
        for a, e, lot, amount in await PointsAllocation.filter(
            lot_id__in=lots, entry__member_id=survivor_id
        )
        .order_by("id")
        .values_list("id", "entry_id", "lot_id", "amount")
        if int(e) not in staying
    ]
    owed = sum(amount for *_, amount in crossing)
    if not owed:
        return ledger
    own = await _own_lots(survivor_id, set(lots))
    available = sum(remaining for _, remaining in own)
    if available < owed:
        raise MergeRefused(
            f"since the merge the survivor spent {owed} points of the merged member's lots "
            f"and holds only {available} of its own to give back"
        )
    for allocation_id, entry_id, lot_id, amount in crossing:
        taken = _take(own, amount)
        for own_lot, part in taken:
            await _consume(own_lot, part)
            await PointsAllocation.create(entry_id=entry_id, lot_id=own_lot, amount=part)
        await PointsAllocation.filter(id=allocation_id).delete()
        lot = await PointsLot.get(id=lot_id)
        if lot.closed_at is None:
            await PointsLot.filter(id=lot_id).update(remaining=lot.remaining + amount)
        else:  # the lot expired since: what comes back to it expires for the merged member
            entry = await PointsEntry.create(
                member_id=merged_id,
                idempotency_key=f"unmerge:{merge_id}:{expiry_key(lot_id)}:{allocation_id}",
                kind="expire",
                amount=-amount,
                reason="expired",
                source="expiry",
                ref=f"lot:{lot_id}",
                created_at=now,
            )
            await PointsAllocation.create(entry_id=entry.id, lot_id=lot_id, amount=amount)
            ledger.expired.append({"entry": int(entry.id), "lot": lot_id, "amount": amount})
        ledger.reallocated.append(
            {"entry": entry_id, "from_lot": lot_id, "amount": amount, "to": taken}
        )
    return ledger


async def _own_lots(member_id: int, excluded: set[int]) -> list[list[int]]:
    """The member's open lots with points left, oldest expiry first: [[id, remaining]]."""
    rows = (
        await PointsLot.filter(member_id=member_id, closed_at__isnull=True, remaining__gt=0)
        .order_by("expires_at", "id")
        .values_list("id", "remaining")
    )
    return [[int(i), int(r)] for i, r in rows if int(i) not in excluded]


def _take(own: list[list[int]], amount: int) -> list[list[int]]:
    """Take ``amount`` from the front of ``own`` (updated in place): [[lot, part]]."""
    taken: list[list[int]] = []
    for lot in own:
        if amount == 0:
            break
        part = min(lot[1], amount)
        if part:
            lot[1] -= part
            amount -= part
            taken.append([lot[0], part])
    return taken


async def _consume(lot_id: int, part: int) -> None:
    lot = await PointsLot.get(id=lot_id)
    changed = await PointsLot.filter(id=lot_id, remaining=lot.remaining).update(
        remaining=lot.remaining - part
    )
    if changed != 1:
        raise MergeRefused(f"lot {lot_id} changed during the undo; try again")


async def _ledger_totals(member_id: int) -> tuple[int, int]:
    """(balance, debt) from the ledger: Σ open lots, and balance − Σ entries."""
    open_rows = (
        await PointsLot.filter(member_id=member_id, closed_at__isnull=True)
        .annotate(total=Sum("remaining"))
        .values("total")
    )
    entry_rows = (
        await PointsEntry.filter(member_id=member_id).annotate(total=Sum("amount")).values("total")
    )
    balance = int(open_rows[0]["total"] or 0) if open_rows else 0
    entries = int(entry_rows[0]["total"] or 0) if entry_rows else 0
    return balance, balance - entries


async def _restore_fields(
    survivor: Member, merged: Member, moved: dict[str, Any], tier_rule: Callable[[str, int], str]
) -> None:
    """The merged member as it was; the survivor's fields the merge set, unless changed since."""
    before_s, before_m, after = moved["survivor"], moved["merged"], moved["after"]
    values: dict[str, Any] = {}
    for name, written in after.items():
        if name in _LEDGER or name in ("growth", "tier"):
            continue
        if _jsonable(getattr(survivor, name)) == written:
            values[name] = _restore(name, before_s[name])
    growth = survivor.growth - int(before_m["growth"])
    values["growth"] = growth
    if survivor.tier == after["tier"]:
        values["tier"] = tier_rule(str(before_s["tier"]), growth)
    merged_values = {
        name: _restore(name, value)
        for name, value in before_m.items()
        if name not in _LEDGER and name not in ("mobile_hash", "mobile_cipher")
    }
    await Member.filter(id=survivor.id).update(**values)
    if "mobile_hash" in values:
        # the survivor gave the number back: unique, so after the survivor's update
        merged_values["mobile_hash"] = before_m["mobile_hash"]
        merged_values["mobile_cipher"] = before_m["mobile_cipher"]
    await Member.filter(id=merged.id).update(**merged_values)
