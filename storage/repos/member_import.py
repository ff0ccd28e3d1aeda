"""Batched writes of imported members: members, identities, opening points and growth.

A batch is one transaction of a few multi-row inserts (no per-row round trips). The
opening balance is a real ledger earning: a keyed ``earn`` entry and its lot, with the
member's cached balance equal to the lot, so ``points reconcile`` holds afterwards. The
unique keys (identity, mobile hash, entry keys, member code) decide duplicates: a batch
that hits one rolls back whole and the caller retries its rows one by one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from storage.models import AuditLog, Identity, Member, PointsEntry
from storage.timeutil import utc

IMPORT_ACTION = "members.import"
SOURCE = "import"
REASON = "import"


@dataclass(slots=True)
class ImportRow:
    """One validated CSV row, ready to write (``code`` is the new member's public code)."""

    line: int
    row_key: str
    code: str
    tier: str
    joined_at: datetime
    channel: str
    points: int = 0
    growth: int = 0
    birthday: date | None = None
    birth_md: int | None = None
    mobile_cipher: str | None = None
    mobile_hash: str | None = None
    # (kind, app, value): mobile_hash, legacy_code, oa_openid, unionid
    identities: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def points_key(self) -> str:
        """The opening balance's ledger key."""
        return f"import:member:{self.row_key}:points"

    @property
    def growth_key(self) -> str:
        """The opening growth entry's key."""
        return f"import:member:{self.row_key}:growth"


async def existing(rows: Sequence[ImportRow]) -> dict[int, str]:
    """Rows (by line) whose identity or mobile already belongs to a member: line → code.

    A read for the report only; the unique keys still decide when the batch is written.
    """
    wanted = {identity: row.line for row in rows for identity in row.identities}
    found: dict[int, str] = {}
    if wanted:
        values = sorted({value for _, _, value in wanted})
        kinds = sorted({kind for kind, _, _ in wanted})
        held = await Identity.filter(kind__in=kinds, value__in=values).values_list(
            "kind", "app", "value", "member__code"
        )
        for kind, app, value, code in held:
            line = wanted.get((str(kind), str(app), str(value)))
            if line is not None:
                found.setdefault(line, str(code))
    hashes = {row.mobile_hash: row.line for row in rows if row.mobile_hash}
    if hashes:
        members = await Member.filter(mobile_hash__in=list(hashes)).values_list(
            "mobile_hash", "code"
        )
        for digest, code in members:
            found.setdefault(hashes[str(digest)], str(code))
    return found


async def insert(
    rows: Sequence[ImportRow],
    *,
    now: datetime,
    expires_at: datetime,
    actor: str,
    target: str,
) -> None:
    """Write the rows, their ledger openings and one audit row in one transaction.

    Multi-row ``executemany`` inserts (building ORM objects costs more than the database
    work at 100k rows); ids are read back by the unique columns. Raises IntegrityError
    (and writes nothing) when any unique key is taken.
    """
    if not rows:
        return
    at, expiry = utc(now), utc(expires_at)
    async with in_transaction() as tx:
        await _many(tx, "member", _MEMBER, [_member(row) for row in rows])
        ids = await _ids(Member, "code", [row.code for row in rows])
        identities = [
            [kind, app, value, ids[row.code], False, 0, 0, at]
            for row in rows
            for kind, app, value in row.identities
        ]
        await _many(tx, "identity", _IDENTITY, identities)
        earned = [row for row in rows if row.points > 0]
        entries = [
            [ids[r.code], r.points_key, "earn", r.points, r.points, 1000, 1000, REASON, SOURCE,
             f"line:{r.line}", at]
            for r in earned
        ]  # fmt: skip
        await _many(tx, "points_entry", _ENTRY, entries)
        entry_ids = await _ids(PointsEntry, "idempotency_key", [r.points_key for r in earned])
        lots = [
            [ids[r.code], entry_ids[r.points_key], r.points, r.points, expiry, at] for r in earned
        ]
        await _many(tx, "points_lot", _LOT, lots)
        growth = [
            [ids[r.code], r.growth_key, r.growth, REASON, SOURCE, at] for r in rows if r.growth > 0
        ]
        await _many(tx, "growth_entry", _GROWTH, growth)
        await AuditLog.create(
            actor=actor,
            action=IMPORT_ACTION,
            target=target[:128],
            detail={
                "members": len(rows),
                "lines": [rows[0].line, rows[-1].line],
                "points": sum(row.points for row in rows),
                "growth": sum(row.growth for row in rows),
            },
            at=at,
        )


_MEMBER = (
    "code", "status", "tier", "growth", "points_balance", "points_debt", "birthday",
    "birth_md", "mobile_cipher", "mobile_hash", "channel", "created_at",
)  # fmt: skip
_IDENTITY = (
    "kind", "app", "value", "member_id", "followed", "cs_sent_since_message",
    "cs_sent_since_event", "created_at",
)  # fmt: skip
_ENTRY = (
    "member_id", "idempotency_key", "kind", "amount", "base", "tier_multiplier",
    "day_multiplier", "reason", "source", "ref", "created_at",
)  # fmt: skip
_LOT = ("member_id", "entry_id", "amount", "remaining", "expires_at", "created_at")
_GROWTH = ("member_id", "idempotency_key", "amount", "reason", "source", "created_at")


def _member(row: ImportRow) -> list[Any]:
    return [
        row.code,
        "active",
        row.tier,
        row.growth,
        row.points,
        0,
        row.birthday,
        row.birth_md,
        row.mobile_cipher,
        row.mobile_hash,
        row.channel,
        utc(row.joined_at),
    ]


async def _many(
    tx: BaseDBAsyncClient, table: str, columns: tuple[str, ...], rows: list[list[Any]]
) -> None:
    """One ``executemany`` INSERT of these rows (placeholders for the dialect)."""
    if not rows:
        return
    if tx.capabilities.dialect == "postgres":
        marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    else:
        marks = ", ".join("?" for _ in columns)
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608
    await tx.execute_many(sql, rows)


async def _ids(model: Any, column: str, values: Iterable[str]) -> dict[str, int]:
    """value → id for rows just inserted (bulk inserts do not return ids everywhere)."""
    rows = await model.filter(**{f"{column}__in": list(values)}).values_list(column, "id")
    return {str(value): int(row_id) for value, row_id in rows}
