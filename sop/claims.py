"""The set-based Touchpoint claim: ``INSERT … SELECT … ON CONFLICT DO NOTHING`` per batch.

The audience is walked in id order, ``batch`` members per statement; a member already
touched for the occurrence is left alone, so a second claim inserts nothing.

- PostgreSQL: one statement per batch: a CTE pages the audience (``ORDER BY id LIMIT``),
  inserts from that page and returns the rows inserted and the page's last id.
- SQLite (no data-modifying CTEs): the batch's upper id, then the insert over that id
  range (SQLite has one writer, and both run on the one connection).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sop.sql import Sql, conn, dialect_of, insert, rows, sql

_COLUMNS = (
    "INSERT INTO touchpoint (sop_id, member_id, occurrence, run_id, status, due_at, "
    "attempts, granted, outcome, created_at) "
)
_VALUES = "{bigint}, 'pending', {timestamptz}, 0, FALSE, '', {timestamptz}"
_CONFLICT = " ON CONFLICT (sop_id, member_id, occurrence) DO NOTHING"


@dataclass(frozen=True, slots=True)
class ClaimSpec:
    """What to claim: the SOP, its audience condition and occurrence key, the row values."""

    sop_id: str
    where: Sql
    occurrence: Sql
    run_id: int | None
    due_at: datetime
    now: datetime


async def claim(spec: ClaimSpec, batch: int, progress: Callable[[int], None] | None = None) -> int:
    """Insert a pending Touchpoint per audience member; the rows inserted."""
    if batch < 1:
        raise ValueError("batch must be positive")
    step = _postgres_batch if dialect_of(conn()) == "postgres" else _sqlite_batch
    done, after = 0, 0
    while True:
        inserted, last = await step(spec, after, batch)
        done += inserted
        if progress is not None:
            progress(done)
        if last is None:
            return done
        after = last


async def _postgres_batch(spec: ClaimSpec, after: int, batch: int) -> tuple[int, int | None]:
    """(rows inserted, the page's last id, or None when the page was the last)."""
    page = sql("WITH page AS (SELECT member.id AS id, ") + spec.occurrence
    page += sql(" AS occ FROM member WHERE ") + spec.where
    page += sql(" AND member.id > {} ORDER BY member.id LIMIT {}), ", after, batch)
    ins = sql("ins AS (" + _COLUMNS + "SELECT {text}, page.id, page.occ, ", spec.sop_id)
    ins += sql(
        _VALUES + " FROM page" + _CONFLICT + " RETURNING 1) ", spec.run_id, spec.due_at, spec.now
    )
    tail = sql(
        "SELECT (SELECT COUNT(*) FROM ins) AS n, (SELECT COUNT(*) FROM page) AS seen, "
        "(SELECT MAX(id) FROM page) AS last"
    )
    found = (await rows(page + ins + tail))[0]
    full = int(found["seen"]) == batch
    return int(found["n"]), int(found["last"]) if full else None


async def _sqlite_batch(spec: ClaimSpec, after: int, batch: int) -> tuple[int, int | None]:
    bound = sql("SELECT member.id AS id FROM member WHERE ") + spec.where
    bound += sql(" AND member.id > {} ORDER BY member.id LIMIT 1 OFFSET {}", after, batch - 1)
    found = await rows(bound)
    upper = int(found[0]["id"]) if found else None
    statement = sql(_COLUMNS + "SELECT {text}, member.id, ", spec.sop_id) + spec.occurrence
    statement += sql(", " + _VALUES + " FROM member WHERE ", spec.run_id, spec.due_at, spec.now)
    statement += spec.where + sql(" AND member.id > {}", after)
    if upper is not None:
        statement += sql(" AND member.id <= {}", upper)
    return await insert(statement + sql(_CONFLICT)), upper
