"""The ``wecom_group`` channel (客户群群发): a broadcast to WeCom customer groups.

The unit is a group, not a member. The audience is every customer group whose roster has
at least one current (not left) member of the segment, or every group when the rule has
no conditions. Each group gets one reason, computed in SQL (empty: the group will be
reached): dismissed, its owner not an active staff member, or the group's receive limit
used (earlier ``wecom_group`` rows of that chat id in the period of the corp's receive rule,
``broadcast_sql.receive_window``, that reached it or may still). The reach counts groups
per reason, plus the customers of the reached groups.
Enqueueing writes one ``held`` row per group (member_id NULL, recipient the chat id,
staff_userid the owner, key ``bc:<id>:chat:<chat_id>``); the sender bundles each owner's
rows into one add_msg_template task with chat_type ``group``.

https://developer.work.weixin.qq.com/document/path/92135 (add_msg_template, updated
2025-11): "每位客户/每个客户群每月最多可接收条数为当月天数 … 可在企业微信-群发助手-设置群发规则
中调整为每周接收七条或每天接收一条" (older versions of the page said 4 a calendar month).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from tortoise.transactions import in_transaction

from bot.services.broadcast_enqueue import Enqueuer, fetch
from bot.services.broadcast_sql import NOT_REACHING, Target, receive_limit, receive_window
from sop.sql import Sql, conn, in_list, join, rows, sql
from storage.models import OutboxMessage

CHANNEL = "wecom_group"
UNIT = "group"
DISMISSED = "group dismissed"
NO_OWNER = "group owner not an active staff member"


@dataclass(frozen=True, slots=True)
class GroupScope:
    """Which groups a broadcast considers: ``every`` group, or those with segment members."""

    target: Target
    audience: Sql
    every: bool = False

    def where(self) -> Sql:
        """The condition over ``g`` (customer_group)."""
        if self.every:
            return sql("1 = 1")
        return (
            sql(
                "EXISTS (SELECT 1 FROM group_member gm JOIN member ON member.id = gm.member_id"
                " WHERE gm.group_id = g.id AND gm.left_at IS NULL AND ("
            )
            + self.audience
            + sql("))")
        )


def _from() -> Sql:
    return sql(" FROM customer_group g LEFT JOIN staff st ON st.userid = g.owner_userid")


def _used(t: Target) -> Sql:
    # Rows of other broadcasts to this chat in the receive period that reached it or may.
    return (
        sql(
            "(SELECT COUNT(*) FROM outbox_message o WHERE o.channel = {} AND o.recipient ="
            " g.chat_id AND o.group_key <> {} AND o.created_at >= {} AND o.status NOT IN ",
            CHANNEL,
            t.group_key,
            receive_window(t)[0],
        )
        + in_list(NOT_REACHING)
        + sql(")")
    )


def reason_case(t: Target) -> Sql:
    """``CASE … END``: why the group is excluded, '' when it will be reached."""
    cap = receive_window(t)[1]
    whens = [
        sql(" WHEN g.status = 'dismissed' THEN {text}", DISMISSED),
        sql(" WHEN st.id IS NULL OR NOT st.active THEN {text}", NO_OWNER),
        sql(" WHEN ") + _used(t) + sql(" >= {} THEN {text}", cap, receive_limit(t)),
    ]
    return sql("(CASE") + join(whens, "") + sql(" ELSE '' END)")


def _reasons(scope: GroupScope) -> Sql:
    head = sql("SELECT g.id AS id, ") + reason_case(scope.target) + sql(" AS reason")
    return head + _from() + sql(" WHERE ") + scope.where()


def reach_counts(scope: GroupScope) -> Sql:
    """Groups per reason ('' = reached)."""
    return (
        sql("SELECT x.reason AS reason, COUNT(*) AS n FROM (")
        + _reasons(scope)
        + sql(") x GROUP BY x.reason")
    )


def members_covered(scope: GroupScope) -> Sql:
    """Distinct current customers (type 2, not left) of the groups that will be reached."""
    return (
        sql("SELECT COUNT(DISTINCT gm.userid) AS n FROM group_member gm JOIN (")
        + _reasons(scope)
        + sql(
            ") x ON x.id = gm.group_id WHERE x.reason = '' AND gm.left_at IS NULL AND gm.type = 2"
        )
    )


async def reach(scope: GroupScope) -> tuple[dict[str, int], int]:
    """Groups per reason ('' = reached) and the customers of the reached groups."""
    found = await rows(reach_counts(scope))
    covered = await rows(members_covered(scope))
    return {str(r["reason"]): int(r["n"]) for r in found}, int(covered[0]["n"] or 0)


def page(scope: GroupScope, after: int, batch: int) -> Sql:
    """The next groups (id > ``after``) with no row of this broadcast yet, and why not."""
    t = scope.target
    head = sql("SELECT g.id AS group_id, g.chat_id AS recipient, g.owner_userid AS staff_userid, ")
    statement = head + reason_case(t) + sql(" AS reason") + _from() + sql(" WHERE ") + scope.where()
    statement += sql(
        " AND NOT EXISTS (SELECT 1 FROM outbox_message o WHERE o.group_key = {}"
        " AND o.recipient = g.chat_id) AND g.id > {} ORDER BY g.id LIMIT {}",
        t.group_key,
        after,
        batch,
    )
    return statement


@dataclass(frozen=True, slots=True)
class GroupEnqueuer(Enqueuer):
    """Writes one outbox row per customer group of a ``wecom_group`` broadcast."""

    every: bool = False
    CURSOR: ClassVar[str] = "group_id"

    async def _fetch(self, audience: Sql, after: int) -> list[dict[str, Any]]:
        scope = GroupScope(self.target, audience, self.every)
        return await fetch(conn(), page(scope, after, self.batch))

    async def _page(self, found: list[dict[str, Any]], paused: bool) -> int:
        rows = [self._row(r, "skipped" if r["reason"] else "held", str(r["reason"])) for r in found]
        async with in_transaction() as tx:
            if await self.locked_state(tx) not in ("sending", "paused"):
                return 0  # cancelled since the page was read
            await OutboxMessage.bulk_create(rows, ignore_conflicts=True, using_db=tx)
        return len(rows)

    def _row(self, group: Mapping[str, Any], status: str, reason: str) -> OutboxMessage:
        payload = self.content.payload(self.renderer) if status != "skipped" else {}
        return self.new_row(f"chat:{group['recipient']}", group, payload, status, reason)
