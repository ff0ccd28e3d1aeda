"""Sign-ins on PostgreSQL, by group commit: one statement for a batch of members.

One sign-in is one statement (``signin_sql.postgres_statement``), but under load each is
also one round trip through asyncpg (its sends were ~14% of the server's loop under 签到
load). Here the sign-ins that arrive while a batch statement runs go together into the
next one (``GroupCommit``: no timer, a lone sign-in goes at once), with the per-attempt
values as arrays (``unnest``). The statement is the single one's chain of CTEs over many
rows: it locks the batch's member rows in id order (two processes' batches cannot
deadlock on each other), inserts the SignIns with ``ON CONFLICT DO NOTHING`` and only from
that insert's ``RETURNING`` writes the entries, the lots and the balances. Unique keys still
decide duplicates; a member twice in one batch is written once, the repeat gets "already
signed". A member not found (merged or erased meanwhile) has no row: only its caller gets
``UnknownMember``.

If a batch statement fails as a whole (an entry key already taken, a deadlock with another
writer), nothing of it was written, and each of its sign-ins is written alone, so an error
reaches only the caller it belongs to. Inside a caller's transaction a sign-in is one
statement of its own in that transaction, as before.
"""

from __future__ import annotations

import functools

from tortoise.backends.base.client import BaseDBAsyncClient

from storage import db
from storage.repos.points import UnknownMember
from storage.repos.signin_sql import (
    PG_ARRAY_TYPES,
    TODAYS_ROW,
    Attempt,
    Batches,
    Key,
    Outcome,
    Rules,
    award_source,
    firsts,
    insert_sign_in,
    one_by_one,
    outcome_of,
    per_attempt,
    postgres_statement,
    prepared,
    run,
)
from storage.timeutil import utc


async def sign_in_grouped(conn: BaseDBAsyncClient, attempt: Attempt, rules: Rules) -> Outcome:
    """Sign in through the client's group commit (outcome ``blocked``: debt path)."""
    return await _batches.sign_in(conn, attempt, rules)


async def sign_in_alone(conn: BaseDBAsyncClient, attempt: Attempt, rules: Rules) -> Outcome:
    """One sign-in, one statement (in the caller's transaction when ``conn`` is one)."""
    rows = await run(conn, postgres_statement(rules), attempt.params())
    if not rows:
        raise UnknownMember(attempt.member_id)
    return outcome_of(rows[0])


async def write(key: Key, attempts: list[Attempt]) -> list[Outcome | Exception]:
    """One batch (the group commit's write) in one statement; if it fails, each alone.

    On the ``batch`` connection (``storage.db.batch_client``): its statements keep their
    generic plans, where this one was planned again for every batch.
    """
    conn = db.batch_client()
    try:
        return await _batch(conn, key[2], attempts)
    except Exception as error:
        return await one_by_one(attempts, error, lambda a: sign_in_alone(conn, a, key[2]))


_batches = Batches(write)


_ATTEMPTS = (
    "SELECT * FROM unnest({1}, {5}, {6}, {7}, {8}, {9}) "
    "AS p (member_id, now, key, expires_at, reason, source)"
)
_MEMBERS = (  # the batch's member rows, locked in id order, with their attempt's values
    "(SELECT l.id, l.tier, l.points_balance, l.points_debt, p.now, p.key, p.expires_at, "
    "p.reason, p.source FROM locked l JOIN p ON p.member_id = l.id)"
)


@functools.lru_cache(maxsize=8)
def batch_statement(rules: Rules) -> str:
    """The batch's one statement: {1} member ids, {5}…{9} their attempts' values as arrays
    (in the same order), {2} day, {3} yesterday, {4} day ×, {10} ref; one row per member
    found, with its ``member_id``."""
    carry = ", m.now, m.key, m.expires_at, m.reason, m.source"
    return (
        f"WITH p AS ({_ATTEMPTS}), "  # noqa: S608 - rules are validated, see signin_sql
        "locked AS (SELECT id, tier, points_balance, points_debt FROM member "
        "WHERE id = ANY({1}) ORDER BY id FOR UPDATE), "
        f"a AS ({award_source(rules, _MEMBERS, carry=carry, fenced=True)}), "
        f"s AS ({insert_sign_in('a', debt_free=True, created='w.now')}), "
        "e AS (INSERT INTO points_entry (member_id, idempotency_key, kind, amount, base, "
        "tier_multiplier, day_multiplier, reason, source, ref, created_at) "
        "SELECT s.member_id, a.key, 'earn', s.points, a.base, a.tier_multiplier, {4}, "
        "a.reason, a.source, {10}, a.now FROM s JOIN a ON a.member_id = s.member_id "
        "RETURNING id, member_id, amount, created_at), "
        "l AS (INSERT INTO points_lot (member_id, entry_id, amount, remaining, expires_at, "
        "created_at) SELECT e.member_id, e.id, e.amount, e.amount, a.expires_at, e.created_at "
        "FROM e JOIN a ON a.member_id = e.member_id WHERE e.amount > 0 RETURNING id), "
        "u AS (UPDATE member SET points_balance = member.points_balance + e.amount, "
        "last_active_at = GREATEST(member.last_active_at, e.created_at) FROM e "
        "WHERE member.id = e.member_id RETURNING member.id, member.points_balance) "
        # as in the single statement: t sees rows committed before the statement only
        "SELECT a.member_id, s.member_id IS NOT NULL AS signed, "
        "COALESCE(t.streak, a.streak) AS streak, COALESCE(s.points, 0) AS points, a.tier, "
        "a.points_debt AS debt, COALESCE(u.points_balance, a.points_balance) AS balance, "
        "s.member_id IS NULL AND t.streak IS NULL AND a.points_debt > 0 AS blocked "
        "FROM a LEFT JOIN s ON s.member_id = a.member_id LEFT JOIN u ON u.id = a.member_id "
        f"LEFT JOIN LATERAL {TODAYS_ROW} t ON TRUE"
    )


async def _batch(
    conn: BaseDBAsyncClient, rules: Rules, attempts: list[Attempt]
) -> list[Outcome | Exception]:
    """Write the batch: the first attempt per member counts, repeats are "already signed"."""
    first = firsts(attempts)
    sql, _ = prepared(batch_statement(rules), True, PG_ARRAY_TYPES)
    rows = await conn.execute_query_dict(sql, _params(first))
    return per_attempt(attempts, {int(row["member_id"]): outcome_of(row) for row in rows})


def _params(attempts: list[Attempt]) -> list[object]:
    """Parameters {1}…{10}: the shared ones as in ``Attempt.params``, the rest as arrays."""
    shared = attempts[0].params()  # day, yesterday, day × and ref: the batch's key
    return [
        [a.member_id for a in attempts],
        *shared[1:4],
        [utc(a.now) for a in attempts],
        [a.key for a in attempts],
        [utc(a.expires_at) for a in attempts],
        [a.reason[:128] for a in attempts],
        [a.source[:32] for a in attempts],
        shared[9],
    ]
