"""``members export``: a member's rows in every model the registry marks ``export``."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from storage.member_data import classified
from storage.models import MemberTag
from storage.models.members import MOBILE_HASH
from storage.repos.erasure import member_rows

# Stored derivatives of secrets: the export carries the decrypted number instead.
HIDDEN = frozenset({"mobile_cipher", "mobile_hash", "code_hash"})

__all__ = ["HIDDEN", "member_data", "plain"]


def plain(value: Any) -> Any:
    """A JSON-ready copy (times as ISO 8601, decimals as strings)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


async def member_data(member_id: int, mobile: str = "") -> dict[str, list[dict[str, Any]]]:
    """Model name → the member's rows (ordered by id), for every exported model.

    Keyed hashes are left out; a ``mobile_hash`` identity shows the decrypted ``mobile``.
    """
    registry = classified()
    models = {m.__name__: m for m in registry}
    out: dict[str, list[dict[str, Any]]] = {}
    for model, data in sorted(registry.items(), key=lambda item: item[0].__name__):
        if not data.export:
            continue
        rows = await member_rows(model, data, member_id, models)
        pk = model._meta.pk_attr
        values = await rows.order_by(pk).values()
        out[model.__name__] = [
            {k: plain(v) for k, v in row.items() if k not in HIDDEN} for row in values
        ]
    for row in out.get("Identity", []):
        if row.get("kind") == MOBILE_HASH:
            row["value"] = mobile
    return out


async def tag_names(member_id: int) -> list[str]:
    """The member's tags as ``group/tag``."""
    rows = await MemberTag.filter(member_id=member_id).values("tag__group__name", "tag__name")
    return [f"{r['tag__group__name']}/{r['tag__name']}" for r in rows]
