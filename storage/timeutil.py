"""Datetimes bound into queries must be UTC.

Tortoise converts datetimes to UTC when it saves a model, but not in ``filter()`` or
``update()`` values; SQLite compares the stored text, so a +08:00 value would sit eight
hours off from what ``create()`` stored. Every repository passes times through ``utc``.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc(moment: datetime) -> datetime:
    """The same instant in UTC (aware datetimes only)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: times must be timezone-aware")
    return moment.astimezone(UTC)
