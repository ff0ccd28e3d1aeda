"""Raw SQL fragments with their parameters, rendered for SQLite (``?``) or asyncpg (``$n``).

A fragment's text marks each parameter with ``{}`` or ``{type}``; the type becomes a
PostgreSQL cast (``$3::timestamptz``) where asyncpg cannot infer one (a SELECT list) and
is dropped on SQLite. Datetimes are bound in UTC (``storage.timeutil.utc``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient

from storage.timeutil import utc

_MARK = re.compile(r"\{([a-z]*)\}")


@dataclass(frozen=True, slots=True)
class Sql:
    """A piece of SQL and the values of its ``{}`` marks, in order."""

    text: str
    params: tuple[Any, ...] = ()

    def __add__(self, other: Sql) -> Sql:
        """The two pieces one after the other."""
        return Sql(self.text + other.text, self.params + other.params)


def sql(text: str, *params: Any) -> Sql:
    """A fragment; datetimes among ``params`` are converted to UTC."""
    if text.count("{") != len(params):
        raise ValueError(f"{len(params)} values for the marks of {text!r}")
    return Sql(text, tuple(utc(p) if isinstance(p, datetime) else p for p in params))


def join(parts: Iterable[Sql], separator: str) -> Sql:
    """The fragments joined by ``separator`` (``" AND "``...)."""
    items = list(parts)
    return Sql(separator.join(p.text for p in items), tuple(v for p in items for v in p.params))


def render(piece: Sql, dialect: str) -> tuple[str, list[Any]]:
    """The statement text for ``dialect`` and its value list."""
    if dialect != "postgres":
        return _MARK.sub("?", piece.text), list(piece.params)
    counter = iter(range(1, len(piece.params) + 1))

    def number(match: re.Match[str]) -> str:
        cast = f"::{match.group(1)}" if match.group(1) else ""
        return f"${next(counter)}{cast}"

    return _MARK.sub(number, piece.text), list(piece.params)


def conn() -> BaseDBAsyncClient:
    """The default connection."""
    client: BaseDBAsyncClient = connections.get("default")
    return client


def dialect_of(client: BaseDBAsyncClient) -> str:
    """``postgres`` or ``sqlite``."""
    return str(client.capabilities.dialect)


async def rows(piece: Sql) -> list[dict[str, Any]]:
    """Run a query and return its rows as dicts."""
    client = conn()
    text, values = render(piece, dialect_of(client))
    return await client.execute_query_dict(text, values)


async def insert(piece: Sql) -> int:
    """Run an INSERT and return the rows it inserted (one statement on either database).

    On PostgreSQL the count comes from ``RETURNING`` inside a CTE (the command tag's
    second field is the OID, not the row count); SQLite counts the changes.
    """
    client = conn()
    dialect = dialect_of(client)
    if dialect == "postgres":
        counted = (
            sql("WITH inserted AS (")
            + piece
            + sql(" RETURNING 1) SELECT COUNT(*) AS n FROM inserted")
        )
        text, values = render(counted, dialect)
        found = await client.execute_query_dict(text, values)
        return int(found[0]["n"])
    text, values = render(piece, dialect)
    changed, _ = await client.execute_query(text, values)
    return int(changed)


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """Midnight of a business date, in UTC."""
    return utc(datetime.combine(day, time(), tz))


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of a business date, in UTC."""
    return day_start(day, tz), day_start(day + timedelta(days=1), tz)


def in_list(values: Sequence[Any], kind: str = "") -> Sql:
    """``({}, {}, …)`` for an IN condition (at least one value)."""
    if not values:
        raise ValueError("an IN list needs at least one value")
    mark = "{" + kind + "}"
    return Sql("(" + ", ".join(mark for _ in values) + ")", tuple(values))
