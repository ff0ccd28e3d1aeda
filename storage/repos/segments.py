"""Saved segments (分群) by name: save (create or replace), get, list.

``save`` is safe against a concurrent save of the same name: the unique name decides,
and the loser of an insert race updates the winner's row instead (inside a savepoint,
so a caller's transaction survives the conflict).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from storage.models import Segment
from storage.timeutil import utc

__all__ = ["get", "list_all", "save"]


async def save(
    name: str, rule: dict[str, Any], *, description: str, actor: str, now: datetime
) -> tuple[Segment, bool]:
    """Create the segment or replace its rule and description; (row, created)."""
    at = utc(now)
    changes: dict[str, Any] = {"rule": rule, "description": description, "updated_at": at}
    if await Segment.filter(name=name).update(**changes):
        return await Segment.get(name=name), False
    try:
        async with in_transaction():
            row = await Segment.create(name=name, created_by=actor, created_at=at, **changes)
        return row, True
    except IntegrityError:
        await Segment.filter(name=name).update(**changes)
        return await Segment.get(name=name), False


async def get(name: str) -> Segment | None:
    """The saved segment of that name, or None."""
    return await Segment.get_or_none(name=name)


async def list_all() -> list[Segment]:
    """Every saved segment, by name."""
    return await Segment.all().order_by("name")
