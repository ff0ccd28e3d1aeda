"""Dispatch middlewares: errors, per-member rate limit, per-member lock, member resolution."""

from __future__ import annotations

import dataclasses
import logging

from bot.context import Ctx
from bot.replies import NO_REPLY, Reply, TextReply
from bot.routing import Next, Unhandled
from bot.wechat.inbound import Inbound
from storage.cache import CacheError

log = logging.getLogger("bot.dispatch")


class ErrorMiddleware:
    """The one place handler errors end: logged with the event id, answered politely."""

    async def __call__(self, inbound: Inbound, ctx: Ctx, call_next: Next) -> Reply | Unhandled:
        """Run the chain; on any exception log it and apologise (members) or stay silent."""
        try:
            return await call_next(inbound, ctx)
        except Exception:
            log.exception("handler failed", extra={"event_id": inbound.dedupe_key})
            ctx.trace.outcome = "error"
            if inbound.platform == "oa" and inbound.from_member:
                return ctx.render("error")
            return NO_REPLY


class RateLimitMiddleware:
    """At most N commands a minute per sender (default 20); then a polite reply."""

    async def __call__(self, inbound: Inbound, ctx: Ctx, call_next: Next) -> Reply | Unhandled:
        """Count the sender's commands in the current minute; refuse past the limit."""
        if not inbound.from_member:
            return await call_next(inbound, ctx)
        services = ctx.services
        minute = int(services.wall.time() // 60)
        key = services.keys.rate(f"{inbound.platform}:{inbound.account}:{inbound.sender}", minute)
        count = await services.cache.incr(key)
        if count > services.settings.business.rate_limit_per_minute:
            ctx.trace.outcome = "rate_limited"
            return ctx.render("too_fast") if count == _first_over(ctx) else NO_REPLY
        return await call_next(inbound, ctx)


def _first_over(ctx: Ctx) -> int:
    # Say "too fast" once per minute; further messages that minute get no reply.
    return ctx.services.settings.business.rate_limit_per_minute + 1


class MemberLockMiddleware:
    """One callback per sender at a time, across processes when the cache is shared."""

    def __init__(self, wait_seconds: float = 10.0) -> None:
        self.wait_seconds = wait_seconds

    async def __call__(self, inbound: Inbound, ctx: Ctx, call_next: Next) -> Reply | Unhandled:
        """Hold the sender's lock around the rest of the chain."""
        if not inbound.from_member:
            return await call_next(inbound, ctx)
        key = ctx.services.keys.member_lock(
            f"{inbound.platform}:{inbound.account}:{inbound.sender}"
        )
        try:
            async with ctx.services.cache.lock(key, self.wait_seconds):
                return await call_next(inbound, ctx)
        except CacheError:
            ctx.trace.outcome = "busy"
            return TextReply(ctx.services.renderer.render("busy"))


class MemberMiddleware:
    """Resolves the sender's member through the injected resolver hook."""

    async def __call__(self, inbound: Inbound, ctx: Ctx, call_next: Next) -> Reply | Unhandled:
        """Attach the member (if any) to the context."""
        member = await ctx.services.resolve_member(inbound)
        if member is not None:
            ctx.trace.member_id = member.id
            ctx = dataclasses.replace(ctx, member=member)
        return await call_next(inbound, ctx)


def default_middlewares() -> tuple[
    ErrorMiddleware, RateLimitMiddleware, MemberLockMiddleware, MemberMiddleware
]:
    """The standard chain, outermost first."""
    return (ErrorMiddleware(), RateLimitMiddleware(), MemberLockMiddleware(), MemberMiddleware())
