"""Dispatch middlewares: errors, per-sender rate limit and lock, member resolution."""

from __future__ import annotations

import logging

from bot.context import Ctx, Services
from bot.replies import NO_REPLY, Reply, TextReply
from bot.routing import Next, Unhandled
from bot.wechat.inbound import Inbound
from storage.cache import CacheError, Gate

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


class SenderGateMiddleware:
    """Per sender: at most N commands a minute (default 20), and one callback at a time.

    One cache call counts the command and, under the limit, takes the sender's lock
    (across processes when the cache is shared) and reads the sender's identity-cache
    entry for :class:`MemberMiddleware` (``Trace.identity``: one round trip fewer). On a
    callback, intake has already made that call together with its dedupe claim
    (``Trace.admission``, see :meth:`gate_for`): the gate then only holds that lock. When
    intake asks for it (``Trace.hand_lock``), the lock is left held on exit and intake
    releases it in the same call that caches the reply (another round trip fewer). Past
    the limit: "too fast" once a minute, then silence; lock still busy after
    ``wait_seconds``: "busy".
    """

    def __init__(self, wait_seconds: float = 10.0) -> None:
        self.wait_seconds = wait_seconds

    @staticmethod
    def gate_for(inbound: Inbound, services: Services) -> Gate | None:
        """What the gate checks for this callback's sender (None: not from a member, no gate).

        Intake uses it to make the gate's first cache step in its dedupe claim's round trip
        (``Trace.admission``); the gate then only holds the lock that step tried.
        """
        if not inbound.from_member:
            return None
        sender = f"{inbound.platform}:{inbound.account}:{inbound.sender}"
        return Gate(
            services.keys.rate(sender, int(services.wall.time() // 60)),
            services.settings.business.rate_limit_per_minute,
            services.keys.member_lock(sender),
            services.members.identity_key(inbound),
        )

    async def __call__(self, inbound: Inbound, ctx: Ctx, call_next: Next) -> Reply | Unhandled:
        """Count the sender's command; refuse past the limit, else hold the lock around the rest."""
        services = ctx.services
        admitted, ctx.trace.admission = ctx.trace.admission, None  # taken: ours to hold now
        if admitted is not None:
            gate = services.cache.hold(admitted, self.wait_seconds)
            limit = services.settings.business.rate_limit_per_minute
        else:
            keys = self.gate_for(inbound, services)
            if keys is None:
                return await call_next(inbound, ctx)
            limit = keys.limit
            gate = services.cache.admit(
                keys.rate, keys.limit, keys.lock, self.wait_seconds, keys.peek
            )
        try:
            async with gate as admission:
                count = admission.count
                if count > limit:
                    ctx.trace.outcome = "rate_limited"
                    # Say "too fast" once per minute; further messages that minute get no reply.
                    return ctx.render("too_fast") if count == limit + 1 else NO_REPLY
                ctx.trace.identity = admission.peeked
                try:
                    return await call_next(inbound, ctx)
                finally:
                    if ctx.trace.hand_lock:  # intake releases it with the reply it caches
                        ctx.trace.held = admission.keep()
        except CacheError:
            ctx.trace.outcome = "busy"
            return TextReply(services.renderer.render("busy"))


class MemberMiddleware:
    """Resolves the sender's member through the injected resolver hook."""

    async def __call__(self, inbound: Inbound, ctx: Ctx, call_next: Next) -> Reply | Unhandled:
        """Attach the member (if any) to the context (the gate may have read its cache entry)."""
        member = await ctx.services.resolve_member(inbound, ctx.trace.identity, ctx.now)
        if member is not None:
            ctx.trace.member_id = member.id
            ctx = ctx.with_member(member)
        return await call_next(inbound, ctx)


def default_middlewares() -> tuple[ErrorMiddleware, SenderGateMiddleware, MemberMiddleware]:
    """The standard chain, outermost first."""
    return (ErrorMiddleware(), SenderGateMiddleware(), MemberMiddleware())
