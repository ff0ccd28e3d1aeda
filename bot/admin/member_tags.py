"""``GET/POST /api/members/{code}/tags``: a member's tags, and tagging them.

Corp tags live on staff–customer relations (WeCom's mark_tag), so tagging a member acts
on every active relation; a member no staff member has added gets local MemberTag rows.
Tags are always kept in the WeCom corp library (created there when missing), so a later
relation can carry them.
"""

from __future__ import annotations

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from bot.admin.api import ApiCall, ApiError, ApiRoutes, not_found
from bot.clients.errors import ApiError as WeComError
from bot.clients.errors import NotSent, OutcomeUnknown
from bot.services import member_profile, wecom_tags
from storage.models import Member, StaffCustomer
from storage.repos import audit_log

routes = ApiRoutes(tag="members")

TAG_NAME = Field(min_length=1, max_length=30)
_FAILED = (WeComError, NotSent, OutcomeUnknown, aiohttp.ClientError, OSError)


class TagChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    add: list[str] = Field(default_factory=list, max_length=20)
    remove: list[str] = Field(default_factory=list, max_length=20)


class TagOut(BaseModel):
    name: str
    group: str
    source: str = Field(description="staff, sync, rule or local")
    set_by: str
    staff: str = Field(description="the relation's staff userid; empty for local tags")


class MemberTagsOut(BaseModel):
    code: str
    relations: int = Field(description="active staff–customer relations")
    tags: list[TagOut]


async def _member(code: str) -> Member:
    member = await member_profile.by_code(code)
    if member is None:
        raise not_found("member", code)
    return member


async def _out(member: Member) -> MemberTagsOut:
    relations = await StaffCustomer.filter(member_id=member.id, status="active").count()
    tags = [TagOut(**t) for t in await wecom_tags.member_tags(member.id)]
    return MemberTagsOut(code=member.code, relations=relations, tags=tags)


@routes.route(
    "GET",
    "/api/members/{code}/tags",
    roles=("manager", "staff"),
    summary="the member's tags: corp tags on every active relation, then local tags",
    response=MemberTagsOut,
    errors=("404",),
)
async def member_tags(call: ApiCall) -> MemberTagsOut:
    return await _out(await _member(call.path["code"]))


@routes.route(
    "POST",
    "/api/members/{code}/tags",
    roles=("manager", "staff"),
    summary="add and remove tags on every active relation (local tags without one)",
    body=TagChange,
    response=MemberTagsOut,
    errors=("404", "422", "502"),
)
async def change_member_tags(call: ApiCall) -> MemberTagsOut:
    body: TagChange = call.body
    add = list(dict.fromkeys(n.strip() for n in body.add if n.strip()))
    remove = list(dict.fromkeys(n.strip() for n in body.remove if n.strip()))
    if (not add and not remove) or any(len(n) > wecom_tags.MAX_TAG for n in add + remove):
        raise ApiError(422, "bad_tags", "give tag names (1-30 characters) to add or remove")
    member = await _member(call.path["code"])
    relations = await StaffCustomer.filter(member_id=member.id, status="active").order_by("id")
    wecom = call.services.settings.wecom
    if wecom is None:
        raise ApiError(409, "wecom_failed", "no [wecom] section in the settings")
    api = call.services.clients.wecom().tags
    try:
        to_add = await wecom_tags.ensure_tags(api, add, wecom.tag_group)
        to_remove = list((await wecom_tags.find_tags(remove)).values())
        for relation in relations:
            await wecom_tags.push(api, relation, to_add, to_remove)
    except _FAILED as exc:
        raise ApiError(502, "wecom_failed", f"WeCom refused the change: {exc}") from None
    async with audit_log.atomic():
        for relation in relations:
            await wecom_tags.mirror(
                relation, to_add, to_remove, source="staff", set_by=call.actor.name, now=call.now
            )
        if not relations:
            await wecom_tags.mirror_local(
                member.id, to_add, to_remove, set_by=call.actor.name, now=call.now
            )
        detail = {"add": add, "remove": remove, "relations": [r.id for r in relations]}
        await audit_log.record(
            call.actor.name, "member.tags", f"member:{member.id}", detail, call.now
        )
    return await _out(member)
