"""Daily sign-ins: the SignIn row and its ledger earning, in as few round trips as we can.

The statements and the rules as data are in ``storage.repos.signin_sql``: the unique key
(member, day) decides duplicates, and the streak and award are computed by the database
inside the statement that inserts today's row.

Round trips in the common case (the member has no points debt):

- PostgreSQL: **one** statement (autocommit) per batch of concurrent sign-ins (group
  commit, ``storage.repos.signin_pg``; a lone sign-in is a batch of one, at once; inside a
  caller's transaction, the one-member statement in it). A chain of CTEs locks the member row
  (``FOR UPDATE`` returns its latest committed version), inserts the SignIn with
  ``ON CONFLICT DO NOTHING``, and only from that insert's ``RETURNING`` writes the entry,
  the lot and the balance. Sub-statements of a data-modifying CTE share one snapshot and
  cannot see each other's rows (DESIGN §11), so every step is fed by the ``RETURNING``
  of the step before, and the only row updated (the member) existed before the statement.
  That update also moves the member's ``last_active_at`` to the sign-in's time, the
  time the activity recorder noted for the callback: its flush then finds nothing to
  write for that member (on a table whose updates stay in place: migration 0011).
- SQLite (no DML inside CTEs): group commit (``storage.repos.signin_sqlite``): the
  sign-ins that arrive while one transaction runs are written together in the next, with
  four multi-row statements per batch. Inside a caller's own transaction a sign-in is
  written alone (a savepoint), as before.

A member with debt takes the ledger's own earning (``points.credit``: debt settled first,
the new lot allocated at once) in one transaction with the SignIn row; it is rare.
Lock order on every path: member row, sign-in key, entry key. The ledger's writers take
their entry key, then the member row; their keys are never ours, so there is no cycle.
"""

from __future__ import annotations

from tortoise import connections
from tortoise.backends.base.client import TransactionalDBClient
from tortoise.transactions import in_transaction

from storage.repos import points as ledger
from storage.repos import signin_pg, signin_sqlite
from storage.repos.points import UnknownMember
from storage.repos.signin_sql import (
    Attempt,
    Outcome,
    Rules,
    insert_for,
    postgres_statement,
    run,
    today,
)

__all__ = ["Attempt", "Outcome", "Rules", "postgres_statement", "sign_in"]


async def sign_in(attempt: Attempt, rules: Rules) -> Outcome:
    """Sign in once per (member, day); UnknownMember when there is no such member."""
    conn = connections.get("default")
    alone = isinstance(conn, TransactionalDBClient)  # the caller's transaction: no batch
    if conn.capabilities.dialect == "postgres":
        if alone:
            outcome = await signin_pg.sign_in_alone(conn, attempt, rules)
        else:
            outcome = await signin_pg.sign_in_grouped(conn, attempt, rules)
    elif alone:
        outcome = await signin_sqlite.sign_in_alone(attempt, rules)
    else:
        outcome = await signin_sqlite.sign_in_grouped(conn, attempt, rules)
    if outcome.blocked:
        return await _with_debt(attempt, rules)
    return outcome


_LOCK = (
    "UPDATE member SET points_balance = points_balance WHERE id = {1} "
    "RETURNING tier, points_balance, points_debt"
)


async def _with_debt(attempt: Attempt, rules: Rules) -> Outcome:
    """The rare path: the SignIn row and the ledger's own earning, which settles debt."""
    async with in_transaction() as tx:
        locked = await run(tx, _LOCK, attempt.params())
        if not locked:
            raise UnknownMember(attempt.member_id)
        rows = await run(tx, insert_for(rules, debt_free=False), attempt.params())
        if not rows:
            return await today(tx, attempt)
        streak, award = int(rows[0]["streak"]), int(rows[0]["points"])
        tier = str(locked[0]["tier"])
        spec = ledger.EntrySpec(
            attempt.member_id,
            attempt.key,
            "earn",
            award,
            attempt.now,
            attempt.reason,
            attempt.source,
            attempt.day.isoformat(),
            base=rules.base_for(streak),
            tier_multiplier=rules.tier_multiplier(tier),
            day_multiplier=attempt.day_multiplier,
        )
        effect = await ledger.credit(spec, attempt.expires_at)  # nested: a savepoint
        return Outcome(True, streak, award, tier, effect.balance, effect.debt)
