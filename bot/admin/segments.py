"""``/api/segments``: save segments (分群) by name, list them, preview a rule, explain one
member (managers and admins; saves audited in the same transaction).

A bad rule answers 422 ``invalid_rule`` whose message and ``details[0].field`` name the
path of the bad condition (``rule.all[2].in``). Format: docs/segments.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.admin.api import ApiCall, ApiError, ApiRoutes, not_found
from bot.config import Settings
from sop import segments
from sop.segments import MemberNotFound, SegmentError, SegmentRule
from storage.models import Segment
from storage.repos import audit_log
from storage.repos import segments as segments_repo

routes = ApiRoutes(tag="segments")

NAME = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="A-Z a-z 0-9 _ . - (1 to 64)")
Kind = Literal["marketing", "service"]
RULE_DOC = 'all/any groups of conditions, e.g. {"all": [{"field": "tier", "in": ["gold"]}]}'


class SegmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = NAME
    description: str = Field(default="", max_length=255)
    rule: dict[str, Any] = Field(description=RULE_DOC)
    kind: Kind = Field(default="marketing", description="the base of the preview returned")


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule: dict[str, Any] | None = Field(default=None, description=RULE_DOC)
    name: str | None = Field(default=None, description="a saved segment instead of a rule")
    kind: Kind = "marketing"
    account: str | None = Field(default=None, description="for the channel split; default first")
    sample: int = Field(default=5, ge=0, le=50)

    @model_validator(mode="after")
    def _one(self) -> PreviewIn:
        if (self.rule is None) == (self.name is None):
            raise ValueError("give either rule or name")
        return self


class PreviewOut(BaseModel):
    count: int
    channels: dict[str, int] = Field(description="oa_cs, oa_template, wecom, unreachable")
    sample: list[str] = Field(description="member codes")


class SegmentOut(BaseModel):
    name: str
    description: str
    rule: dict[str, Any]
    created_by: str
    created_at: datetime
    updated_at: datetime


class SavedOut(SegmentOut):
    created: bool = Field(description="false when an existing segment was replaced")
    preview: PreviewOut


class SegmentList(BaseModel):
    items: list[SegmentOut]


class ExplainQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    member: str = Field(min_length=1, max_length=32, description="member code")
    kind: Kind = "marketing"


class ConditionOut(BaseModel):
    path: str = Field(description="all[1].any[0]; base: the kind's base; rule: the whole rule")
    description: str
    met: bool


class ExplainOut(BaseModel):
    name: str
    member: str
    holds: bool
    conditions: list[ConditionOut]


def parse_rule_body(
    data: dict[str, Any], settings: Settings, now: datetime, kind: str
) -> SegmentRule:
    """The rule, compiled once so settings-dependent errors (tiers, accounts) are 422 too."""
    try:
        rule = segments.parse_rule(data)
        segments.compile_segment(rule, kind=kind, settings=settings, now=now)
    except SegmentError as exc:
        field = f"rule.{exc.path}" if exc.path else "rule"
        detail = {"field": field, "in": "body", "message": exc.problem}
        raise ApiError(422, "invalid_rule", f"{field}: {exc.problem}", [detail]) from None
    return rule


def _out(row: Segment) -> dict[str, Any]:
    return {
        "name": row.name,
        "description": row.description,
        "rule": row.rule,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


async def _preview(call: ApiCall, rule: SegmentRule, kind: str, **more: Any) -> PreviewOut:
    settings = call.services.settings
    if more.get("account") and more["account"] not in settings.accounts:
        raise ApiError(422, "invalid_request", f"account: no account {more['account']!r}")
    found = await segments.preview(rule, kind=kind, settings=settings, now=call.now, **more)
    return PreviewOut(count=found.count, channels=found.channels, sample=found.sample)


@routes.route(
    "POST",
    "/api/segments",
    roles=("manager",),
    summary="Create or replace a segment by name",
    body=SegmentIn,
    response=SavedOut,
    errors=("422",),
)
async def save_segment(call: ApiCall) -> SavedOut:
    body: SegmentIn = call.body
    rule = parse_rule_body(body.rule, call.services.settings, call.now, body.kind)
    data = segments.dump_rule(rule)
    async with audit_log.atomic():
        row, created = await segments_repo.save(
            body.name, data, description=body.description, actor=call.actor.name, now=call.now
        )
        action = "segment.create" if created else "segment.replace"
        detail = {"rule": data, "description": body.description}
        await audit_log.record(call.actor.name, action, f"segment:{body.name}", detail, call.now)
    found = await _preview(call, rule, body.kind)
    return SavedOut(**_out(row), created=created, preview=found)


@routes.route(
    "GET",
    "/api/segments",
    roles=("manager",),
    summary="List saved segments",
    response=SegmentList,
)
async def list_segments(call: ApiCall) -> SegmentList:
    return SegmentList(items=[SegmentOut(**_out(r)) for r in await segments_repo.list_all()])


async def _saved(name: str) -> Segment:
    row = await segments_repo.get(name)
    if row is None:
        raise not_found("segment", name)
    return row


@routes.route(
    "POST",
    "/api/segments/preview",
    roles=("manager",),
    summary="Preview a rule or a saved segment: count, channel split, sample",
    body=PreviewIn,
    response=PreviewOut,
    errors=("404", "422"),
)
async def preview_segment(call: ApiCall) -> PreviewOut:
    body: PreviewIn = call.body
    data = body.rule if body.rule is not None else (await _saved(str(body.name))).rule
    rule = parse_rule_body(data, call.services.settings, call.now, body.kind)
    return await _preview(call, rule, body.kind, sample=body.sample, account=body.account)


@routes.route(
    "GET",
    "/api/segments/{name}/explain",
    roles=("manager",),
    summary="Which conditions of a saved segment one member meets",
    query=ExplainQuery,
    response=ExplainOut,
    errors=("404", "422"),
)
async def explain_segment(call: ApiCall) -> ExplainOut:
    query: ExplainQuery = call.query
    row = await _saved(call.path["name"])
    settings = call.services.settings
    rule = parse_rule_body(row.rule, settings, call.now, query.kind)
    try:
        found = await segments.explain(
            rule, query.member, settings=settings, now=call.now, kind=query.kind
        )
    except MemberNotFound:
        raise not_found("member", query.member) from None
    conditions = [ConditionOut(path=c.path, description=c.description, met=c.met) for c in found]
    return ExplainOut(
        name=row.name, member=query.member, holds=found[-1].met, conditions=conditions
    )
