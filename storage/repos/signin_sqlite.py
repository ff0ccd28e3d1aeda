"""Sign-ins on SQLite, by group commit: a constant number of statements per batch.

SQLite takes one transaction at a time on the in-process connection, and every
statement is a hop to aiosqlite's thread and back, so one sign-in per transaction
(BEGIN, four statements, COMMIT) caps throughput at one sign-in per six hops. Here the
sign-ins that arrive while a batch is being written are written together in the next
transaction (``GroupCommit``: no timer, a lone sign-in starts at once), as multi-row
statements over a JSON array (``json_each``): the sign-in rows (one day per batch, so
no row of the batch is another's yesterday), the balances, the entries, the lots.
Each caller's awaitable resolves after the COMMIT. Unique keys still decide duplicates;
a member twice in one batch is written once, the repeat gets "already signed".

The whole batch transaction (BEGIN, the statements, the Python between them, COMMIT) runs
as one call in aiosqlite's thread, under tortoise's connection lock: one hand-off to that
thread and back per batch instead of seven, each of which costs the event loop a thread
wake-up and a GIL hand-over (py-spy: about a quarter of the loop under 签到 load).

Members with debt are not written (``points_debt = 0`` in the INSERT): they come back
``blocked`` and take the ledger's path (``storage.repos.signin``). If a batch fails as a
whole, it is rolled back and each of its sign-ins is written alone, so an error reaches
only the caller it belongs to.
"""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from storage.repos.points import LedgerConflict
from storage.repos.signin_sql import (
    Attempt,
    Batches,
    Key,
    Outcome,
    Rules,
    award_source,
    firsts,
    insert_for,
    insert_sign_in,
    one_by_one,
    outcome_of,
    per_attempt,
    prepared,
    run,
    today,
)
from storage.timeutil import utc

_log = logging.getLogger(__name__)


async def sign_in_grouped(conn: BaseDBAsyncClient, attempt: Attempt, rules: Rules) -> Outcome:
    """Sign in through the connection's group commit (outcome ``blocked``: debt path)."""
    return await _batches.sign_in(conn, attempt, rules)


async def _write(key: Key, attempts: list[Attempt]) -> list[Outcome | Exception]:
    """One batch in one transaction; if it fails, each sign-in in its own."""
    try:
        return await _batch(key[2], attempts)
    except Exception as error:
        return await one_by_one(attempts, error, lambda a: sign_in_alone(a, key[2]))


_batches = Batches(_write)


# --- the batch -----------------------------------------------------------------------

_MEMBERS = (
    "(SELECT m.id, m.tier, m.points_balance, m.points_debt, json_extract(j.value, '$.t') "
    "AS now FROM json_each({1}) j JOIN member m ON m.id = json_extract(j.value, '$.m'))"
)
_CREDIT_ALL = (  # last_active_at too: the activity flush after it then finds nothing to write
    "UPDATE member SET points_balance = points_balance + json_extract(c.value, '$.p'), "
    "last_active_at = CASE WHEN last_active_at IS NULL "
    "OR last_active_at < json_extract(c.value, '$.t') THEN json_extract(c.value, '$.t') "
    "ELSE last_active_at END "
    "FROM json_each(?1) c WHERE member.id = json_extract(c.value, '$.m') "
    "AND member.points_debt = 0 RETURNING id, points_balance, tier"
)
_ENTRIES = (
    "INSERT INTO points_entry (member_id, idempotency_key, kind, amount, base, "
    "tier_multiplier, day_multiplier, reason, source, ref, created_at) "
    "SELECT json_extract(value, '$.m'), json_extract(value, '$.k'), 'earn', "
    "json_extract(value, '$.p'), json_extract(value, '$.b'), json_extract(value, '$.x'), "
    "?2, json_extract(value, '$.r'), json_extract(value, '$.s'), ?3, "
    "json_extract(value, '$.t') FROM json_each(?1)"
)
_LOTS = (
    "INSERT INTO points_lot (member_id, entry_id, amount, remaining, expires_at, created_at) "
    "SELECT e.member_id, e.id, e.amount, e.amount, json_extract(j.value, '$.e'), "
    "e.created_at FROM json_each(?1) j "
    "JOIN points_entry e ON e.idempotency_key = json_extract(j.value, '$.k') WHERE e.amount > 0"
)
_TODAY_ALL = (
    "SELECT m.id AS member_id, FALSE AS signed, COALESCE(t.streak, 0) AS streak, "
    "0 AS points, m.tier, m.points_balance AS balance, m.points_debt AS debt, "
    "t.streak IS NULL AND m.points_debt > 0 AS blocked FROM json_each(?1) j "
    "JOIN member m ON m.id = j.value "
    "LEFT JOIN sign_in t ON t.member_id = m.id AND t.day = ?2"
)


@functools.lru_cache(maxsize=8)
def _insert_all(rules: Rules) -> str:
    """The batch's sign-in INSERT: {1} the attempts as JSON, {2} day, {3} yesterday, {4} ×."""
    source = f"({award_source(rules, _MEMBERS, carry=', m.now')})"
    return insert_sign_in(source, debt_free=True, created="w.now")


async def _batch(rules: Rules, attempts: list[Attempt]) -> list[Outcome | Exception]:
    """Write the batch: the first attempt per member counts, repeats are "already signed"."""
    return per_attempt(attempts, await _in_thread(rules, firsts(attempts)))


Rows = list[dict[str, Any]]
RowsOf = Callable[[str, Sequence[object]], Rows]


async def _in_thread(rules: Rules, attempts: list[Attempt]) -> dict[int, Outcome]:
    """The batch as one call in aiosqlite's thread, under tortoise's connection lock."""
    client = connections.get("default")
    async with client.acquire_connection() as conn:  # nothing else interleaves
        run_in_thread = getattr(conn, "_execute", None)  # aiosqlite's own hand-off
        raw = getattr(conn, "_conn", None)
        if run_in_thread is None or not isinstance(raw, sqlite3.Connection):
            # a driver without them: the batch "fails" and is written one by one (_write)
            raise RuntimeError("no raw SQLite connection to hand the batch to")
        result: dict[int, Outcome] = await run_in_thread(_transaction, raw, rules, attempts)
        return result


def _transaction(
    db: sqlite3.Connection, rules: Rules, attempts: list[Attempt]
) -> dict[int, Outcome]:
    """In aiosqlite's thread: the batch in one transaction (like tortoise's: COMMIT what
    the driver may have begun implicitly, then BEGIN)."""

    def rows(sql: str, params: Sequence[object]) -> Rows:
        if _log.isEnabledFor(logging.DEBUG):  # as tortoise logs its statements
            _log.debug("%s: %s", sql, params)
        return [dict(row) for row in db.execute(sql, params).fetchall()]

    db.commit()
    db.execute("BEGIN")
    try:
        outcomes = _sign(rows, rules, attempts)
        rest = [a.member_id for a in attempts if a.member_id not in outcomes]
        if rest:
            outcomes |= _today_all(rows, attempts[0].day, rest)
    except BaseException:
        db.rollback()
        raise
    db.commit()
    return outcomes


def _sign(rows_of: RowsOf, rules: Rules, attempts: list[Attempt]) -> dict[int, Outcome]:
    """Insert the day's rows, credit the balances, write entries and lots: signed members."""
    day = attempts[0].day
    members = json.dumps([{"m": a.member_id, "t": _iso(a.now)} for a in attempts])
    params: list[object] = [
        members,
        day.isoformat(),
        (day - timedelta(days=1)).isoformat(),
        attempts[0].day_multiplier,
    ]
    sql, used = prepared(_insert_all(rules), postgres=False)
    rows = rows_of(sql, params[:used])
    if not rows:
        return {}
    awards = {int(row["member_id"]): (int(row["streak"]), int(row["points"])) for row in rows}
    moments = {a.member_id: _iso(a.now) for a in attempts}
    credits = json.dumps(
        [{"m": m, "p": points, "t": moments[m]} for m, (_, points) in awards.items()]
    )
    credited = rows_of(_CREDIT_ALL, [credits])
    if len(credited) != len(awards):
        raise LedgerConflict("a member changed under the write lock")
    totals = {int(row["id"]): (str(row["tier"]), int(row["points_balance"])) for row in credited}
    entries = []
    for attempt in (a for a in attempts if a.member_id in awards):
        streak, award = awards[attempt.member_id]
        entries.append(_entry(rules, attempt, streak, totals[attempt.member_id][0], award))
    written = json.dumps(entries)
    rows_of(_ENTRIES, [written, attempts[0].day_multiplier, day.isoformat()])
    rows_of(_LOTS, [written])
    return {m: Outcome(True, streak, award, *totals[m], 0) for m, (streak, award) in awards.items()}


def _entry(rules: Rules, attempt: Attempt, streak: int, tier: str, award: int) -> dict[str, object]:
    """One entry (and lot) of the batch, as a JSON object."""
    return {
        "m": attempt.member_id,
        "k": attempt.key,
        "p": award,
        "b": rules.base_for(streak),
        "x": rules.tier_multiplier(tier),
        "r": attempt.reason[:128],
        "s": attempt.source[:32],
        "t": _iso(attempt.now),
        "e": _iso(attempt.expires_at),
    }


def _iso(moment: datetime) -> str:
    """A time as the driver's adapter binds it (UTC, ISO with a space): the same text."""
    return utc(moment).isoformat(" ")


def _today_all(rows_of: RowsOf, day: date, members: list[int]) -> dict[int, Outcome]:
    """Nothing inserted for these: their totals and today's streak, or ``blocked``."""
    rows = rows_of(_TODAY_ALL, [json.dumps(members), day.isoformat()])
    return {int(row["member_id"]): outcome_of(row) for row in rows}


# --- one at a time (inside a caller's transaction, or when a batch failed) -------------

_CREDIT = (
    "UPDATE member SET points_balance = points_balance + ?1 WHERE id = ?2 AND points_debt = 0 "
    "RETURNING points_balance, tier"
)
_ENTRY = (
    "INSERT INTO points_entry (member_id, idempotency_key, kind, amount, base, "
    "tier_multiplier, day_multiplier, reason, source, ref, created_at) "
    "VALUES (?1, ?2, 'earn', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING id"
)
_LOT = (
    "INSERT INTO points_lot (member_id, entry_id, amount, remaining, expires_at, created_at) "
    "VALUES (?1, ?2, ?3, ?3, ?4, ?5)"
)


async def sign_in_alone(attempt: Attempt, rules: Rules) -> Outcome:
    """One sign-in in its own transaction (a savepoint inside a caller's)."""
    async with in_transaction() as tx:
        rows = await run(tx, insert_for(rules, debt_free=True), attempt.params())
        if not rows:
            return await today(tx, attempt)
        streak, award = int(rows[0]["streak"]), int(rows[0]["points"])
        credited = await tx.execute_query_dict(_CREDIT, [award, attempt.member_id])
        if not credited:
            raise LedgerConflict(f"member {attempt.member_id} changed under the write lock")
        tier, balance = str(credited[0]["tier"]), int(credited[0]["points_balance"])
        member_id, _, _, day_multiplier, now, key, expires_at, *labels = attempt.params()
        base, tier_multiplier = rules.base_for(streak), rules.tier_multiplier(tier)
        entry = [member_id, key, award, base, tier_multiplier, day_multiplier, *labels, now]
        entry_rows = await tx.execute_query_dict(_ENTRY, entry)
        if award > 0:
            lot = [member_id, entry_rows[0]["id"], award, expires_at, now]
            await tx.execute_query(_LOT, lot)
        return Outcome(True, streak, award, tier, balance, 0)
