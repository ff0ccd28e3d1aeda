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

from tortoise import connections
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
    groups: dict[tuple[str, str], list[str]] = {}
    for kind, app, value in wanted:
        groups.setdefault((kind, app), []).append(value)
    for (kind, app), values in groups.items():  # (kind, app, value IN …): the unique index
        held = await Identity.filter(kind=kind, app=app, value__in=values).values_list(
            "value", "member__code"
        )
        for value, code in held:
            found.setdefault(wanted[(kind, app, str(value))], str(code))
    hashes = {row.mobile_hash: row.line for row in rows if row.mobile_hash}
    if hashes:
        members = await Member.filter(mobile_hash__in=list(hashes)).values_list(
            "mobile_hash", "code"
        )
        for digest, code in members:
            found.setdefault(hashes[str(digest)], str(code))
    return found


_TABLES = ("member", "identity", "points_entry", "points_lot", "growth_entry")


async def refresh_statistics() -> None:
    """ANALYZE the tables an import fills (PostgreSQL; nothing on SQLite).

    A table that grows from empty within a minute keeps the planner's "a few rows"
    estimate until autovacuum analyses it, and the duplicate check's index lookups turn
    into scans of the whole identity table per batch; the import refreshes the
    statistics as the tables double.
    """
    conn = connections.get("default")
    if conn.capabilities.dialect == "postgres":
        await conn.execute_script(f"ANALYZE {', '.join(_TABLES)};")


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


# (column, PostgreSQL array type): PostgreSQL inserts a batch as one statement over
# unnest() of one array per column; SQLite runs one executemany.
_MEMBER = (
    ("code", "text"), ("status", "text"), ("tier", "text"), ("growth", "int8"),
    ("points_balance", "int8"), ("points_debt", "int8"), ("birthday", "date"),
    ("birth_md", "int2"), ("mobile_cipher", "text"), ("mobile_hash", "text"),
    ("channel", "text"), ("created_at", "timestamptz"), ("name", "text"),
    ("marketing_opt_out", "bool"),
)  # fmt: skip
_IDENTITY = (
    ("kind", "text"), ("app", "text"), ("value", "text"), ("member_id", "int8"),
    ("followed", "bool"), ("cs_sent_since_message", "int4"), ("cs_sent_since_event", "int4"),
    ("created_at", "timestamptz"),
)  # fmt: skip
_ENTRY = (
    ("member_id", "int8"), ("idempotency_key", "text"), ("kind", "text"), ("amount", "int8"),
    ("base", "int8"), ("tier_multiplier", "int4"), ("day_multiplier", "int4"),
    ("reason", "text"), ("source", "text"), ("ref", "text"), ("created_at", "timestamptz"),
)  # fmt: skip
_LOT = (
    ("member_id", "int8"), ("entry_id", "int8"), ("amount", "int8"), ("remaining", "int8"),
    ("expires_at", "timestamptz"), ("created_at", "timestamptz"),
)  # fmt: skip
_GROWTH = (
    ("member_id", "int8"), ("idempotency_key", "text"), ("amount", "int8"),
    ("reason", "text"), ("source", "text"), ("created_at", "timestamptz"),
)  # fmt: skip


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
        "",
        False,
    ]


async def _many(
    tx: BaseDBAsyncClient, table: str, columns: tuple[tuple[str, str], ...], rows: list[list[Any]]
) -> None:
    """Insert these rows: one unnest() statement on PostgreSQL, one executemany on SQLite."""
    if not rows:
        return
    names = ", ".join(name for name, _ in columns)
    if tx.capabilities.dialect == "postgres":
        arrays = ", ".join(f"${i}::{kind}[]" for i, (_, kind) in enumerate(columns, 1))
        sql = f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays})"  # noqa: S608
        await tx.execute_query(sql, [list(column) for column in zip(*rows, strict=True)])
        return
    marks = ", ".join("?" for _ in columns)
    await tx.execute_many(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)  # noqa: S608


async def _ids(model: Any, column: str, values: Iterable[str]) -> dict[str, int]:
    """value → id for rows just inserted (bulk inserts do not return ids everywhere)."""
    rows = await model.filter(**{f"{column}__in": list(values)}).values_list(column, "id")
    return {str(value): int(row_id) for value, row_id in rows}
