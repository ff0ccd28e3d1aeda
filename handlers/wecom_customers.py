"""客户联系 events: a staff member added, edited, deleted or lost a customer.

The welcome goes out first (WeCom's 20 s), the relation is recorded from the event before
the callback answers, and the contact's details follow in the background
(:mod:`bot.services.wecom_customers`).
"""

from __future__ import annotations

from typing import Any

from bot.context import Ctx
from bot.replies import NO_REPLY, Reply
from bot.routing import Router
from bot.services import wecom_customers as customers
from bot.wechat.wecom_events import (
    AddExternalContact,
    AddHalfExternalContact,
    DelExternalContact,
    DelFollowUser,
    EditExternalContact,
    TransferFail,
)

router = Router("wecom_customers")


@router.on((AddExternalContact, AddHalfExternalContact))
async def add(event: Any, ctx: Ctx) -> Reply:
    """A customer added (or half-added, 待验证) a staff member: welcome, bind, record."""
    half = isinstance(event, AddHalfExternalContact)
    await customers.on_add(ctx.services, event, half=half, now=ctx.now)
    return NO_REPLY


@router.on(EditExternalContact)
async def edit(event: Any, ctx: Ctx) -> Reply:
    """The staff member edited the customer: mirror the remark and tags."""
    await customers.on_edit(ctx.services, event, ctx.now)
    return NO_REPLY


@router.on(DelExternalContact)
async def staff_deleted(event: Any, ctx: Ctx) -> Reply:
    """The staff member deleted the customer."""
    await customers.on_end(ctx.services, event, "staff", ctx.now)
    return NO_REPLY


@router.on(DelFollowUser)
async def customer_deleted(event: Any, ctx: Ctx) -> Reply:
    """The customer deleted the staff member."""
    await customers.on_end(ctx.services, event, "customer", ctx.now)
    return NO_REPLY


@router.on(TransferFail)
async def transfer_fail(event: Any, ctx: Ctx) -> Reply:
    """A handover failed (the customer refused, or the takeover's limit was reached)."""
    await customers.on_transfer_fail(ctx.services, event, event.fail_reason, ctx.now)
    return NO_REPLY
