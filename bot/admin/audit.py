"""``GET /api/audit-log``: who changed what, newest first, paged by id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bot.admin.api import ApiCall, ApiRoutes
from storage.models import AuditLog

routes = ApiRoutes(tag="audit")


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor: str | None = Field(default=None, max_length=64)
    action: str | None = Field(default=None, max_length=64)
    target: str | None = Field(default=None, max_length=128)
    before_id: int | None = Field(default=None, ge=1, description="page: ids below this one")
    limit: int = Field(default=50, ge=1, le=500)


class AuditRow(BaseModel):
    id: int
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    at: datetime


class AuditPage(BaseModel):
    items: list[AuditRow]
    next_before_id: int | None = Field(description="pass as before_id for the next page")


@routes.route(
    "GET",
    "/api/audit-log",
    roles=("manager",),
    summary="List audit log entries",
    query=AuditQuery,
    response=AuditPage,
)
async def list_audit_log(call: ApiCall) -> AuditPage:
    query: AuditQuery = call.query
    rows = AuditLog.all()
    for name in ("actor", "action", "target"):
        value = getattr(query, name)
        if value is not None:
            rows = rows.filter(**{name: value})
    if query.before_id is not None:
        rows = rows.filter(id__lt=query.before_id)
    found = await rows.order_by("-id").limit(query.limit + 1)
    items = [
        AuditRow(id=r.id, actor=r.actor, action=r.action, target=r.target, detail=r.detail, at=r.at)
        for r in found[: query.limit]
    ]
    more = len(found) > query.limit
    return AuditPage(items=items, next_before_id=items[-1].id if more and items else None)
