"""``/api/broadcasts``: create, list, preview, schedule, start, pause, resume, cancel,
status and report broadcasts (群发; managers and admins, every change audited with the
calling token as the actor).

``start`` moves the broadcast to ``sending`` in the request (a state conflict is a 409
at once) and enqueues its audience as background work of the app: the enqueue of a big
audience takes seconds, so the answer (202) does not wait for it. The status shows the
enqueue's progress (``reach.enqueued``, the row counts); an enqueue that fails is
logged and kept on the broadcast as ``reach.enqueue_error``. Format: docs/broadcasts.md.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.admin.api import ApiCall, ApiError, ApiRoutes, not_found
from bot.admin.segments import RULE_DOC, Kind, parse_rule_body
from bot.services.broadcasts import BroadcastError, BroadcastService, BroadcastStateError
from sop import segments
from storage.models import Broadcast, Segment
from storage.repos import broadcasts as repo
from storage.repos import segments as segments_repo

routes = ApiRoutes(tag="broadcasts")
State = Literal["draft", "scheduled", "sending", "paused", "done", "cancelled"]
log = logging.getLogger("bot.admin.broadcasts")

CONTENT_DOC = (
    '{"variables": {...}} for the template, {"text": ...} (service broadcasts), or on '
    'oa_template {"template_id": ..., "data": {...}}'
)


class BroadcastIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    segment: str | None = Field(default=None, description="a saved segment's name")
    rule: dict[str, Any] | None = Field(default=None, description=f"instead: {RULE_DOC}")
    channel: str = Field(description="oa_cs, oa_template, oa_mass, wecom_customer")
    template: str = Field(default="", max_length=64, description="a template of templates/")
    content: dict[str, Any] = Field(default_factory=dict, description=CONTENT_DOC)
    kind: Kind = "marketing"
    account: str | None = Field(default=None, description="Official Account; default first")
    scheduled_at: datetime | None = Field(
        default=None, description="schedule it (naive: business time); default a draft"
    )

    @model_validator(mode="after")
    def _one(self) -> BroadcastIn:
        if (self.rule is None) == (self.segment is None):
            raise ValueError("give either segment or rule")
        return self


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: datetime = Field(description="when to start (naive: business time), in the future")


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: State | None = None
    before_id: int | None = Field(
        default=None, ge=1, lt=2**63, description="page: ids below this one"
    )
    limit: int = Field(default=50, ge=1, le=500)


class BroadcastOut(BaseModel):
    id: int
    name: str
    state: str = Field(description="draft, scheduled, sending, paused, done, cancelled")
    channel: str
    kind: str
    account: str
    template: str
    segment: str | None = Field(description="the saved segment's name; null: an inline rule")
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    created_by: str
    created_at: datetime
    reach: dict[str, Any] = Field(
        description="expected reach once started: total, reached, excluded by reason; "
        "enqueued (false while the audience is being enqueued), enqueue_error if it failed"
    )


class StatusOut(BroadcastOut):
    rows: dict[str, int] = Field(description="outbox rows per status")


class BroadcastPage(BaseModel):
    items: list[BroadcastOut]
    next_before_id: int | None = Field(description="pass as before_id for the next page")


class ReachOut(BaseModel):
    channel: str
    total: int = Field(description="members of the audience")
    reached: int = Field(description="members the broadcast will reach")
    excluded: dict[str, int] = Field(description="members left out, per reason")


class ChangeOut(BaseModel):
    id: int
    state: str
    rows: int = Field(description="outbox rows moved (held, released or cancelled)")


class ReportOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int
    state: str
    rows: dict[str, int]
    reach: dict[str, Any]
    channels: dict[str, Any] = Field(
        description="per channel, per status: count and reasons; plus staff (WeCom, per staff "
        "member) and mass (MASSSENDJOBFINISH totals) where they apply"
    )


def _service(call: ApiCall) -> BroadcastService:
    return call.services.broadcasts


async def _broadcast(call: ApiCall) -> Broadcast:
    broadcast_id = call.path_int("id")
    found = await Broadcast.get_or_none(id=broadcast_id)
    if found is None:
        raise not_found("broadcast", broadcast_id)
    return found


def _refused(exc: BroadcastError) -> ApiError:
    """409 ``state_conflict`` naming the states, or 422 ``invalid_broadcast``."""
    if isinstance(exc, BroadcastStateError):
        detail = {"state": exc.state, "action": exc.action, "allowed": list(exc.allowed)}
        return ApiError(409, "state_conflict", str(exc), [detail])
    return ApiError(422, "invalid_broadcast", str(exc))


def _future(call: ApiCall, at: datetime, field: str) -> datetime:
    moment = at if at.tzinfo is not None else at.replace(tzinfo=call.services.settings.tz)
    if moment <= call.now:
        detail = {"field": field, "in": "body", "message": "must be in the future"}
        raise ApiError(422, "invalid_request", f"{field}: must be in the future", [detail])
    return moment


async def _out(b: Broadcast) -> dict[str, Any]:
    segment = await Segment.get_or_none(id=b.segment_id) if b.segment_id is not None else None
    return {
        "id": int(b.id),
        "name": b.name,
        "state": b.state,
        "channel": b.channel,
        "kind": b.kind,
        "account": b.account,
        "template": b.template,
        "segment": segment.name if segment is not None else None,
        "scheduled_at": b.scheduled_at,
        "started_at": b.started_at,
        "finished_at": b.finished_at,
        "created_by": b.created_by,
        "created_at": b.created_at,
        "reach": b.reach,
    }


async def _status(call: ApiCall, broadcast_id: int) -> StatusOut:
    try:
        current = await _service(call).status(broadcast_id)
    except BroadcastError as exc:
        raise _refused(exc) from None
    b = await Broadcast.get(id=broadcast_id)
    return StatusOut(**await _out(b), rows=current["rows"])


@routes.route(
    "POST",
    "/api/broadcasts",
    roles=("manager",),
    summary="Create a broadcast (a draft, or scheduled with scheduled_at)",
    body=BroadcastIn,
    response=StatusOut,
    status=201,
    errors=("404", "422"),
)
async def create_broadcast(call: ApiCall) -> StatusOut:
    body: BroadcastIn = call.body
    settings = call.services.settings
    at = _future(call, body.scheduled_at, "scheduled_at") if body.scheduled_at else None
    segment_id, rule = None, None
    if body.segment is not None:
        row = await segments_repo.get(body.segment)
        if row is None:
            raise not_found("segment", body.segment)
        segment_id = int(row.id)
    else:
        parsed = parse_rule_body(body.rule or {}, settings, call.now, body.kind)
        rule = segments.dump_rule(parsed)
    account = body.account if body.account is not None else next(iter(settings.accounts), "")
    service = _service(call)
    try:
        made = await service.create(
            body.name,
            body.channel,
            actor=call.actor.name,
            template=body.template,
            content=body.content,
            kind=body.kind,
            account=account,
            segment_id=segment_id,
            rule=rule,
        )
        if at is not None:
            await service.schedule(int(made.id), at, actor=call.actor.name)
    except BroadcastError as exc:
        raise _refused(exc) from None
    return await _status(call, int(made.id))


@routes.route(
    "GET",
    "/api/broadcasts",
    roles=("manager",),
    summary="List broadcasts, newest first",
    query=ListQuery,
    response=BroadcastPage,
)
async def list_broadcasts(call: ApiCall) -> BroadcastPage:
    query: ListQuery = call.query
    rows = Broadcast.all()
    if query.state is not None:
        rows = rows.filter(state=query.state)
    if query.before_id is not None:
        rows = rows.filter(id__lt=query.before_id)
    found = await rows.order_by("-id").limit(query.limit + 1)
    items = [BroadcastOut(**await _out(b)) for b in found[: query.limit]]
    more = len(found) > query.limit
    return BroadcastPage(items=items, next_before_id=items[-1].id if more and items else None)


@routes.route(
    "GET",
    "/api/broadcasts/{id}",
    roles=("manager",),
    summary="A broadcast's state, reach and rows per status",
    response=StatusOut,
    errors=("404",),
)
async def broadcast_status(call: ApiCall) -> StatusOut:
    return await _status(call, int((await _broadcast(call)).id))


@routes.route(
    "POST",
    "/api/broadcasts/{id}/preview",
    roles=("manager",),
    summary="Expected reach of a broadcast now, with who is excluded and why",
    response=ReachOut,
    errors=("404", "422"),
)
async def preview_broadcast(call: ApiCall) -> ReachOut:
    b = await _broadcast(call)
    try:
        reach = await _service(call).preview(int(b.id))
    except BroadcastError as exc:
        raise _refused(exc) from None
    return ReachOut(**reach.as_dict())


@routes.route(
    "POST",
    "/api/broadcasts/{id}/schedule",
    roles=("manager",),
    summary="Schedule a draft (or move a scheduled) broadcast",
    body=ScheduleIn,
    response=StatusOut,
    errors=("404", "409", "422"),
)
async def schedule_broadcast(call: ApiCall) -> StatusOut:
    body: ScheduleIn = call.body
    b = await _broadcast(call)
    at = _future(call, body.at, "at")
    try:
        await _service(call).schedule(int(b.id), at, actor=call.actor.name)
    except BroadcastError as exc:
        raise _refused(exc) from None
    return await _status(call, int(b.id))


@routes.route(
    "POST",
    "/api/broadcasts/{id}/start",
    roles=("manager",),
    summary="Start sending a broadcast (the enqueue runs in the background)",
    response=StatusOut,
    status=202,
    errors=("404", "409", "422"),
)
async def start_broadcast(call: ApiCall) -> StatusOut:
    b = await _broadcast(call)
    service = _service(call)
    try:
        await service.begin(int(b.id), actor=call.actor.name)
    except BroadcastError as exc:
        raise _refused(exc) from None
    work = _enqueue(service, int(b.id))
    call.services.background.spawn(work, name=f"broadcast-enqueue:{b.id}")
    return await _status(call, int(b.id))


async def _enqueue(service: BroadcastService, broadcast_id: int) -> None:
    """The background enqueue of a started broadcast; a failure is logged and kept on it."""
    try:
        await service.continue_enqueue(broadcast_id)
    except Exception as exc:
        log.exception("broadcast enqueue failed", extra={"broadcast": broadcast_id})
        b = await Broadcast.get(id=broadcast_id)
        await repo.save_reach(broadcast_id, {**b.reach, "enqueue_error": str(exc)[:500]})


async def _change(call: ApiCall, action: str) -> ChangeOut:
    b = await _broadcast(call)
    service = _service(call)
    try:
        moved = await getattr(service, action)(int(b.id), actor=call.actor.name)
    except BroadcastError as exc:
        raise _refused(exc) from None
    state = (await Broadcast.get(id=b.id)).state
    return ChangeOut(id=int(b.id), state=state, rows=int(moved))


@routes.route(
    "POST",
    "/api/broadcasts/{id}/pause",
    roles=("manager",),
    summary="Pause a sending broadcast (pending rows held)",
    response=ChangeOut,
    errors=("404", "409"),
)
async def pause_broadcast(call: ApiCall) -> ChangeOut:
    return await _change(call, "pause")


@routes.route(
    "POST",
    "/api/broadcasts/{id}/resume",
    roles=("manager",),
    summary="Resume a paused broadcast (held rows pending again)",
    response=ChangeOut,
    errors=("404", "409"),
)
async def resume_broadcast(call: ApiCall) -> ChangeOut:
    return await _change(call, "resume")


@routes.route(
    "POST",
    "/api/broadcasts/{id}/cancel",
    roles=("manager",),
    summary="Cancel a broadcast (pending and held rows cancelled)",
    response=ChangeOut,
    errors=("404", "409"),
)
async def cancel_broadcast(call: ApiCall) -> ChangeOut:
    return await _change(call, "cancel")


@routes.route(
    "GET",
    "/api/broadcasts/{id}/report",
    roles=("manager",),
    summary="A broadcast's delivery report: sent, failed, unknown, skipped with reasons",
    response=ReportOut,
    errors=("404",),
)
async def report_broadcast(call: ApiCall) -> ReportOut:
    b = await _broadcast(call)
    try:
        report = await _service(call).report(int(b.id))
    except BroadcastError as exc:
        raise _refused(exc) from None
    return ReportOut(**report)
