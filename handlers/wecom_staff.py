"""Staff chat-ops in the WeCom agent: 标签 (tag a customer), 查 (look a customer up) and,
for managers, 加积分 (an audited points adjustment). Only registered, active staff."""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from bot.admin.api import Actor
from bot.clients.errors import ApiError, NotSent, OutcomeUnknown
from bot.context import Ctx
from bot.filters import Regex
from bot.replies import Reply
from bot.routing import Router
from bot.services import operator, wecom_tags
from bot.services.member_profile import masked_mobile
from bot.services.pii import MobileVault
from bot.services.staff import may, staff_actor
from bot.services.staff_lookup import Candidate, find_customers, owners
from bot.wechat.wecom_events import AgentText

router = Router("wecom_staff")

TAG_ROLES = ("staff", "manager")
LOOKUP_ROLES = ("staff", "manager")
POINTS_ROLES = ("manager",)
MAX_POINTS = 100_000
_API_FAILED = (ApiError, NotSent, OutcomeUnknown, aiohttp.ClientError, OSError)
_TAG_OP = re.compile(r"^[+＋\-－]")


@router.on(AgentText, Regex(r"标签\s+(?P<rest>.+)", re.S))
async def tag_customer(event: AgentText, ctx: Ctx) -> Reply:
    """``标签 <customer> +VIP -潜在客户``: mark_tag on the acting staff member's relation."""
    actor = await staff_actor(event.from_user)
    if actor is None or not may(actor, TAG_ROLES):
        return _refused(ctx, actor)
    ref, add, remove = parse_tag_command(str(ctx.match["rest"]))
    if not ref or not (add or remove):
        return ctx.render("staff_lookup", outcome="usage", ref=ref, candidates=[])
    vault = _vault(ctx)
    found = [c for c in await find_customers(event.from_user, ref, vault) if c.relation]
    if len(found) != 1:
        return _lookup_failed(ctx, ref, found, vault)
    relation = found[0].relation
    assert relation is not None
    wecom = ctx.services.settings.wecom
    group = wecom.tag_group if wecom is not None else wecom_tags.DEFAULT_GROUP
    api = ctx.services.clients.wecom().tags
    try:
        to_add = await wecom_tags.ensure_tags(api, add, group)
        to_remove = list((await wecom_tags.find_tags(remove)).values())
        await wecom_tags.mark(
            api, relation, to_add, to_remove, source="staff", set_by=event.from_user, now=ctx.now
        )
    except _API_FAILED:
        return ctx.render("staff_lookup", outcome="failed", ref=ref, candidates=[])
    tags = wecom_tags.tag_names(await wecom_tags.member_tags(found[0].member.id))
    return ctx.render("staff_tagged", customer=_label(found[0], vault), tags=tags)


@router.on(AgentText, Regex(r"查\s+(?P<ref>.+)", re.S))
async def look_up(event: AgentText, ctx: Ctx) -> Reply:
    """``查 <customer>``: tier, points, last visit, tags and owner staff."""
    actor = await staff_actor(event.from_user)
    if actor is None or not may(actor, LOOKUP_ROLES):
        return _refused(ctx, actor)
    ref, vault = str(ctx.match["ref"]).strip(), _vault(ctx)
    found = await find_customers(event.from_user, ref, vault)
    if len(found) != 1:
        return _lookup_failed(ctx, ref, found, vault)
    member = found[0].member
    last = member.last_active_at
    return ctx.render(
        "staff_customer",
        customer=_label(found[0], vault),
        tier=ctx.services.settings.membership.tier(member.tier).name,
        points=member.points_balance,
        debt=member.points_debt,
        last_visit=last.astimezone(ctx.services.clock.tz).strftime("%Y-%m-%d") if last else "",
        tags=wecom_tags.tag_names(await wecom_tags.member_tags(member.id)),
        owners=await owners(member.id),
    )


@router.on(AgentText, Regex(r"加积分\s+(?P<ref>\S+)\s+(?P<n>[+-]?\d+)\s+(?P<reason>.+)", re.S))
async def add_points(event: AgentText, ctx: Ctx) -> Reply:
    """``加积分 <customer> <n> <reason>`` (managers): the operator adjustment, audited
    with actor ``staff:<userid>``; the callback's key makes a retried callback a no-op."""
    actor = await staff_actor(event.from_user)
    if actor is None or not may(actor, POINTS_ROLES):
        return _refused(ctx, actor)
    ref, vault = str(ctx.match["ref"]), _vault(ctx)
    delta, reason = int(ctx.match["n"]), str(ctx.match["reason"]).strip()[:128]
    if delta == 0 or abs(delta) > MAX_POINTS:
        return ctx.render("staff_lookup", outcome="usage", ref=ref, candidates=[])
    found = await find_customers(event.from_user, ref, vault)
    if len(found) != 1:
        return _lookup_failed(ctx, ref, found, vault)
    member = found[0].member
    result = await operator.adjust_points(
        member.id,
        delta,
        reason=reason,
        actor=actor.name,
        key=f"staff-adjust:{ctx.event_key}",
        now=ctx.now,
        tz=ctx.services.clock.tz,
    )
    return ctx.render(
        "staff_points",
        customer=_label(found[0], vault),
        delta=delta,
        balance=result.balance,
        debt=result.debt,
    )


def parse_tag_command(text: str) -> tuple[str, list[str], list[str]]:
    """``<customer> +A -B +C`` → (customer, [A, C], [B]); the customer may hold spaces."""
    words: list[str] = []
    add: list[str] = []
    remove: list[str] = []
    for word in text.split():
        if _TAG_OP.match(word) and len(word) > 1:
            (add if word[0] in "+＋" else remove).append(word[1:])
        else:
            words.append(word)
    return " ".join(words), add, remove


def _refused(ctx: Ctx, actor: Actor | None) -> Reply:
    """Unregistered (or inactive) staff, or a role the command does not allow."""
    return ctx.render("staff_refused", registered=actor is not None)


def _vault(ctx: Ctx) -> MobileVault:
    return MobileVault.from_settings(ctx.services.settings.security)


def _label(found: Candidate, vault: MobileVault) -> dict[str, Any]:
    return {
        "remark": found.relation.remark if found.relation else "",
        "code": found.member.code,
        "mobile": masked_mobile(found.member, vault),
    }


def _lookup_failed(ctx: Ctx, ref: str, found: list[Candidate], vault: MobileVault) -> Reply:
    outcome = "ambiguous" if found else "none"
    candidates = [_label(c, vault) for c in found]
    return ctx.render("staff_lookup", outcome=outcome, ref=ref, candidates=candidates)
