"""Enqueue a broadcast into the outbox, set-based, one page of members at a time.

Each page reads the next members (id order) that have no row of the broadcast yet, with
their exclusion reason (:mod:`bot.services.broadcast_sql`); excluded members get a
``skipped`` row with the reason (the sender never claims it), the others a row to send.
On ``oa_cs`` the page's customer-service slots are claimed by one conditional update in
the same transaction as the page's rows, so a slot is never taken without its row.
Idempotency keys ``bc:<id>:<member>`` make a resumed enqueue insert nothing twice.
Mass-send and WeCom rows are written ``held``, released when enqueueing ends (one call
or task carries many rows); per-recipient rows are ``pending`` at once (``held`` while
the broadcast is paused).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from bot.services.broadcast_content import Content
from bot.services.broadcast_sql import NO_WINDOW, Target, claim_cs_slots, page
from bot.templating import Renderer
from sop.sql import Sql, conn, dialect_of, render
from storage.models import Broadcast, OutboxMessage
from storage.timeutil import utc

SOURCE = "broadcast"
# One platform call carries many rows of these channels.
BUNDLED = frozenset({"oa_mass", "wecom_customer", "wecom_group"})
StateReader = Callable[[], Awaitable[str]]


async def fetch(client: BaseDBAsyncClient, piece: Sql) -> list[dict[str, Any]]:
    """The rows of one statement, as dicts."""
    text, values = render(piece, dialect_of(client))
    return await client.execute_query_dict(text, values)


@dataclass(frozen=True, slots=True)
class Enqueuer:
    """Writes the outbox rows of one broadcast."""

    target: Target
    content: Content
    renderer: Renderer
    batch: int = 500
    CURSOR: ClassVar[str] = "member_id"  # the column pages are read in order of

    async def run(self, audience: Sql, state: StateReader) -> int:
        """Enqueue every page while the broadcast is sending or paused; rows written."""
        written, after = 0, 0
        while True:
            current = await state()
            if current not in ("sending", "paused"):
                return written
            found = await self._fetch(audience, after)
            if not found:
                return written
            written += await self._page(found, paused=current == "paused")
            after = int(found[-1][self.CURSOR])
            if len(found) < self.batch:
                return written

    async def _fetch(self, audience: Sql, after: int) -> list[dict[str, Any]]:
        return await fetch(conn(), page(self.target, audience, after, self.batch))

    async def locked_state(self, tx: BaseDBAsyncClient) -> str:
        """Lock the broadcast row for the page's transaction (an update: a row lock on
        PostgreSQL, the write lock on SQLite) and read its state under the lock. A pause
        or cancel waits for the page, and its hold/cancel of the rows then sees them; a
        page after it sees the new state."""
        b = Broadcast.filter(id=self.target.broadcast_id)
        await b.using_db(tx).update(updated_at=utc(self.target.now))
        found = await b.using_db(tx).values_list("state", flat=True)
        return str(found[0]) if found else "cancelled"

    async def _page(self, found: list[dict[str, Any]], paused: bool) -> int:
        reached = [r for r in found if not r["reason"]]
        skipped = [r for r in found if r["reason"]]
        async with in_transaction() as tx:
            state = await self.locked_state(tx)
            if state not in ("sending", "paused"):
                return 0  # cancelled (or finished) since the page was read
            held = state == "paused" or self.target.channel in BUNDLED
            status = "held" if held else "pending"
            if self.target.channel == "oa_cs" and reached:
                ids = [int(r["identity_id"]) for r in reached]
                won = {int(r["id"]) for r in await fetch(tx, claim_cs_slots(self.target, ids))}
                lost = [r for r in reached if int(r["identity_id"]) not in won]
                reached = [r for r in reached if int(r["identity_id"]) in won]
                skipped += [{**r, "reason": NO_WINDOW} for r in lost]
            rows = [self._row(r, status, "") for r in reached]
            rows += [self._row(r, "skipped", str(r["reason"])) for r in skipped]
            await OutboxMessage.bulk_create(rows, ignore_conflicts=True, using_db=tx)
        return len(rows)

    def _row(self, member: Mapping[str, Any], status: str, reason: str) -> OutboxMessage:
        payload = self.content.payload(self.renderer, member) if status != "skipped" else {}
        member_id = int(member["member_id"])
        return self.new_row(str(member_id), member, payload, status, reason, member_id)

    def new_row(
        self,
        key: str,
        found: Mapping[str, Any],
        payload: dict[str, Any],
        status: str,
        reason: str,
        member_id: int | None = None,
    ) -> OutboxMessage:
        """A row of the broadcast (key ``bc:<id>:<key>``) to ``found``'s recipient and staff."""
        t, now = self.target, utc(self.target.now)
        return OutboxMessage(
            idempotency_key=f"{t.group_key}:{key}",
            channel=t.channel,
            account=t.account,
            recipient=str(found["recipient"] or ""),
            member_id=member_id,
            source=SOURCE,
            kind=t.kind,
            group_key=t.group_key,
            staff_userid=str(found["staff_userid"] or ""),
            payload=payload,
            status=status,
            reason=reason[:255],
            due_at=now,
            created_at=now,
        )
