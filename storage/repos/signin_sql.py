"""Sign-in statements shared by both databases: the rules as data, the award in SQL.

The unique key (member, day) decides duplicates; the streak and the award are computed
by the database from yesterday's row and the member's tier inside the statement that
inserts today's row, so nothing is read first and checked later. ``storage.repos.signin``
runs them (PostgreSQL: one statement per sign-in); ``storage.repos.signin_sqlite`` runs
SQLite's, grouped (group commit).
"""

from __future__ import annotations

import functools
import logging
import re
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from storage.repos.group_commit import GroupCommit, Write
from storage.repos.points import UnknownMember
from storage.timeutil import utc

PER_MILLION = 1_000_000
_log = logging.getLogger(__name__)
_TIER_CODE = re.compile(r"[a-z][a-z0-9_]*")
_MARK = re.compile(r"\{(\d+)\}")


@dataclass(frozen=True, slots=True)
class Rules:
    """What an award depends on, as data: the streak cycle's bases, the tiers' multipliers."""

    rewards: tuple[int, ...]
    tier_multipliers: tuple[tuple[str, int], ...]
    default_tier_multiplier: int

    def base_for(self, streak: int) -> int:
        """The base for the n-th consecutive day (the cycle restarts)."""
        return self.rewards[(streak - 1) % len(self.rewards)]

    def tier_multiplier(self, tier: str) -> int:
        """A tier's multiplier per mille (unknown codes get the default)."""
        return dict(self.tier_multipliers).get(tier, self.default_tier_multiplier)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One sign-in to write: whose, which business-local day, and the ledger details."""

    member_id: int
    day: date
    now: datetime
    key: str
    day_multiplier: int
    expires_at: datetime
    reason: str = "signin"
    source: str = "signin"

    def params(self) -> list[object]:
        """Parameters {1}…{10} shared by every statement below."""
        return [
            self.member_id,  # {1}
            self.day,  # {2}
            self.day - timedelta(days=1),  # {3} yesterday
            self.day_multiplier,  # {4}
            utc(self.now),  # {5}
            self.key,  # {6}
            utc(self.expires_at),  # {7}
            self.reason[:128],  # {8}
            self.source[:32],  # {9}
            self.day.isoformat(),  # {10} ref
        ]


_PG_TYPES: tuple[str, ...] = ("bigint", "date", "date", "bigint", "timestamptz", "varchar")
_PG_TYPES += ("timestamptz", "varchar", "varchar", "varchar")
# a batch's {1} and {5}…{9} are arrays, one element per attempt (storage.repos.signin_pg)
_ARRAYS = (1, 5, 6, 7, 8, 9)
PG_ARRAY_TYPES = tuple(t + "[]" if n in _ARRAYS else t for n, t in enumerate(_PG_TYPES, 1))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened. Not ``signed``: today's row existed, nothing was written; ``blocked``:
    nothing was written because of debt, the ledger's own path must run."""

    signed: bool
    streak: int
    points: int
    tier: str
    balance: int
    debt: int
    blocked: bool = False


def _base_case(rules: Rules, streak: str) -> str:
    # validated positive ints from the settings, inlined: the text is constant per config
    arms = " ".join(f"WHEN {i} THEN {int(v)}" for i, v in enumerate(rules.rewards))
    return f"CASE ({streak} - 1) % {len(rules.rewards)} {arms} END"


def _tier_case(rules: Rules, tier: str) -> str:
    arms = []
    for code, multiplier in rules.tier_multipliers:
        if not _TIER_CODE.fullmatch(code):
            raise ValueError(f"tier code {code!r} is not a plain identifier")
        arms.append(f"WHEN '{code}' THEN {int(multiplier)}")
    return f"CASE {tier} {' '.join(arms)} ELSE {int(rules.default_tier_multiplier)} END"


# today's row of member ``a``, looked up by its key for each member (OFFSET 0: a fence,
# so the planner cannot turn the lookups back into a join over the whole table)
TODAYS_ROW = (
    "(SELECT t.streak FROM sign_in t WHERE t.member_id = a.member_id AND t.day = {2} OFFSET 0)"
)


def award_source(rules: Rules, member: str, carry: str = "", fenced: bool = False) -> str:
    """One row per member: tier, totals, the streak today would make, its base and tier ×.

    ``member`` is a table expression with the member columns (and ``carry``'s, e.g.
    ``", m.now"``, which the rows carry along). ``fenced`` (PostgreSQL only): the inner
    query is kept apart (``OFFSET 0``), so yesterday's row is looked up once per member
    rather than once for the streak and again inside the base's CASE.
    """
    return (
        f"SELECT c.*, {_base_case(rules, 'c.streak')} AS base, "  # noqa: S608 - see _tier_case
        f"{_tier_case(rules, 'c.tier')} AS tier_multiplier FROM ("
        "SELECT m.id AS member_id, m.tier, m.points_balance, m.points_debt, "
        # a subquery per member, not a join: PostgreSQL's plan for a join chose a seq
        # scan + hash of sign_in while the table was young, and kept it as it grew
        "COALESCE((SELECT y.streak FROM sign_in y WHERE y.member_id = m.id "
        f"AND y.day = {{3}}), 0) + 1 AS streak{carry} FROM {member} m"
        f"{' OFFSET 0' if fenced else ''}) c"
    )


_MEMBER = "(SELECT id, tier, points_balance, points_debt FROM member WHERE id = {1})"


def insert_sign_in(source: str, *, debt_free: bool, created: str = "{5}") -> str:
    """INSERT the day's row from an award source (a CTE name or a parenthesised query)."""
    condition = "w.points_debt = 0" if debt_free else "TRUE"  # SQLite's upsert needs a WHERE
    return (
        "INSERT INTO sign_in (member_id, day, streak, points, created_at) "  # noqa: S608
        f"SELECT w.member_id, {{2}}, w.streak, w.base * w.tier_multiplier * {{4}} / "
        f"{PER_MILLION}, {created} FROM {source} w WHERE {condition} "
        "ON CONFLICT (member_id, day) DO NOTHING RETURNING member_id, streak, points"
    )


@functools.lru_cache(maxsize=16)
def insert_for(rules: Rules, *, debt_free: bool) -> str:
    """The sign-in INSERT over the member table (SQLite's fast path, the debt path)."""
    return insert_sign_in(f"({award_source(rules, _MEMBER)})", debt_free=debt_free)


@functools.lru_cache(maxsize=8)
def postgres_statement(rules: Rules) -> str:
    """The one-statement sign-in for PostgreSQL (see the module docstring), unmarked."""
    return (
        "WITH locked AS (SELECT id, tier, points_balance, points_debt FROM member "  # noqa: S608
        "WHERE id = {1} FOR UPDATE), "
        f"a AS ({award_source(rules, 'locked', fenced=True)}), "
        f"s AS ({insert_sign_in('a', debt_free=True)}), "
        "e AS (INSERT INTO points_entry (member_id, idempotency_key, kind, amount, base, "
        "tier_multiplier, day_multiplier, reason, source, ref, created_at) "
        "SELECT s.member_id, {6}, 'earn', s.points, a.base, a.tier_multiplier, {4}, "
        "{8}, {9}, {10}, {5} FROM s, a RETURNING id, member_id, amount), "
        "l AS (INSERT INTO points_lot (member_id, entry_id, amount, remaining, expires_at, "
        "created_at) SELECT member_id, id, amount, amount, {7}, {5} FROM e "
        "WHERE amount > 0 RETURNING id), "
        # last_active_at here too: the activity flush after it then finds nothing to write
        "u AS (UPDATE member SET points_balance = member.points_balance + e.amount, "
        "last_active_at = GREATEST(member.last_active_at, {5}) FROM e "
        "WHERE member.id = e.member_id RETURNING member.points_balance) "
        # t sees rows committed before the statement only: a racer that lost to a winner
        # still running gets the same streak from a (same yesterday, same formula)
        "SELECT s.member_id IS NOT NULL AS signed, COALESCE(t.streak, a.streak) AS streak, "
        "COALESCE(s.points, 0) AS points, a.tier, a.points_debt AS debt, "
        "COALESCE(u.points_balance, a.points_balance) AS balance, "
        "s.member_id IS NULL AND t.streak IS NULL AND a.points_debt > 0 AS blocked "
        "FROM a LEFT JOIN s ON TRUE LEFT JOIN u ON TRUE "
        f"LEFT JOIN LATERAL {TODAYS_ROW} t ON TRUE"
    )


def _mark(template: str, postgres: bool, types: tuple[str, ...]) -> str:
    """{n} → $n::type (PostgreSQL: an INSERT … SELECT parameter has no type to infer) or ?n."""
    if postgres:
        return _MARK.sub(lambda m: f"${m[1]}::{types[int(m[1]) - 1]}", template)
    return _MARK.sub(r"?\1", template)


async def run(conn: BaseDBAsyncClient, template: str, params: list[object]) -> list[dict[str, Any]]:
    """Run a marked statement with as many parameters as it uses (both drivers insist)."""
    sql, used = prepared(template, conn.capabilities.dialect == "postgres")
    return await conn.execute_query_dict(sql, params[:used])


@functools.lru_cache(maxsize=64)
def prepared(template: str, postgres: bool, types: tuple[str, ...] = _PG_TYPES) -> tuple[str, int]:
    """The dialect's text and how many parameters it takes (memoised: the hot path)."""
    used = max((int(n) for n in _MARK.findall(template)), default=0)
    return _mark(template, postgres, types), used


def outcome_of(row: dict[str, Any]) -> Outcome:
    """An Outcome from a result row with its columns."""
    return Outcome(
        bool(row["signed"]),
        int(row["streak"]),
        int(row["points"]),
        str(row["tier"]),
        int(row["balance"]),
        int(row["debt"]),
        bool(row["blocked"]),
    )


_TODAY = (
    "SELECT FALSE AS signed, COALESCE(t.streak, 0) AS streak, 0 AS points, m.tier, "
    "m.points_balance AS balance, m.points_debt AS debt, "
    "t.streak IS NULL AND m.points_debt > 0 AS blocked "
    "FROM member m LEFT JOIN sign_in t ON t.member_id = m.id AND t.day = {2} WHERE m.id = {1}"
)


async def today(tx: BaseDBAsyncClient, attempt: Attempt) -> Outcome:
    """Nothing inserted: the member's totals and today's streak, or ``blocked`` by debt."""
    rows = await run(tx, _TODAY, attempt.params())
    if not rows:
        raise UnknownMember(attempt.member_id)
    return outcome_of(rows[0])


# --- batches (group commit on either database) ----------------------------------------

BATCH_CAP = 200
Key = tuple[date, int, Rules]  # what every sign-in of one batch shares: day, day ×, rules


class Batches:
    """One group commit per database client, each writing its batches with ``write``."""

    def __init__(self, write: Write[Key, Attempt, Outcome]) -> None:
        self._write = write
        self._writers: weakref.WeakKeyDictionary[
            BaseDBAsyncClient, GroupCommit[Key, Attempt, Outcome]
        ] = weakref.WeakKeyDictionary()

    async def sign_in(self, conn: BaseDBAsyncClient, attempt: Attempt, rules: Rules) -> Outcome:
        """Sign in through the client's group commit (outcome ``blocked``: debt path)."""
        writer = self._writers.get(conn)
        if writer is None:
            writer = self._writers[conn] = GroupCommit(self._write, BATCH_CAP)
        return await writer.submit((attempt.day, attempt.day_multiplier, rules), attempt)


def firsts(attempts: list[Attempt]) -> list[Attempt]:
    """The first attempt per member, in order: the ones a batch writes."""
    first: dict[int, Attempt] = {}
    for attempt in attempts:
        first.setdefault(attempt.member_id, attempt)
    return list(first.values())


def per_attempt(attempts: list[Attempt], outcomes: dict[int, Outcome]) -> list[Outcome | Exception]:
    """Each attempt's result from the batch's outcomes by member: the first attempt per
    member gets its outcome, a repeat "already signed", a member not found UnknownMember."""
    seen: set[int] = set()
    results: list[Outcome | Exception] = []
    for attempt in attempts:
        outcome = outcomes.get(attempt.member_id)
        if outcome is None:
            results.append(UnknownMember(attempt.member_id))
        elif attempt.member_id in seen:
            results.append(replace(outcome, signed=False, points=0))
        else:
            results.append(outcome)
        seen.add(attempt.member_id)
    return results


async def one_by_one(
    attempts: list[Attempt], error: Exception, alone: Callable[[Attempt], Awaitable[Outcome]]
) -> list[Outcome | Exception]:
    """After a batch failed as a whole (``error``, nothing written): each sign-in alone, so
    an error reaches only the caller it belongs to."""
    _log.warning("sign-in batch of %d failed (%r): writing one by one", len(attempts), error)
    results: list[Outcome | Exception] = []
    for attempt in attempts:
        try:
            results.append(await alone(attempt))
        except Exception as failure:
            results.append(failure)
    return results
