"""Crafted members and orders for the segment tests, and running a rule against them."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.config import Settings
from sop.segments import compile_segment, parse_rule
from sop.sql import rows, sql
from storage.models import Member, Order

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2027, 5, 20, 10, 0, tzinfo=SH)
_orders = itertools.count(1)


async def order(member_id: int, amount_fen: int, paid_at: datetime, refunded_fen: int = 0) -> None:
    """A paid order of the member."""
    await Order.create(
        external_id=f"seg-{next(_orders)}",
        member_id=member_id,
        amount_fen=amount_fen,
        refunded_fen=refunded_fen,
        paid_at=paid_at,
        created_at=paid_at,
    )


async def matching(
    settings: Settings, rule: dict[str, Any], *, kind: str = "service", now: datetime = NOW
) -> list[int]:
    """The member ids the rule selects (ascending), through the compiled SQL."""
    where = compile_segment(parse_rule(rule), kind=kind, settings=settings, now=now)
    query = sql("SELECT member.id AS id FROM member WHERE ") + where + sql(" ORDER BY member.id")
    return [int(r["id"]) for r in await rows(query)]


def one(condition: dict[str, Any]) -> dict[str, Any]:
    """A rule of one condition."""
    return {"all": [condition]}


async def code_of(member_id: int) -> str:
    """The member's public code."""
    return str((await Member.get(id=member_id)).code)
