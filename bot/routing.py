"""Routers, the dispatcher and the middleware chain.

Routers sit in one explicit ordered tuple; within and across routers the first handler
whose event type and filters all match wins. A handler returns a ``Reply`` or the
explicit ``NO_REPLY``; when nothing matches the dispatcher returns ``UNHANDLED``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, Literal, Protocol

from bot.context import Ctx
from bot.replies import NO_REPLY, Reply
from bot.wechat.inbound import Inbound

Handler = Callable[[Any, Ctx], Awaitable[Reply]]
FilterResult = bool | Mapping[str, Any]


class _Unhandled(Enum):
    UNHANDLED = "unhandled"


UNHANDLED: Final = _Unhandled.UNHANDLED
Unhandled = Literal[_Unhandled.UNHANDLED]


class Filter(Protocol):
    """A small predicate; a mapping result both matches and hands data to the handler."""

    def __call__(self, event: Any, ctx: Ctx) -> FilterResult:
        """False (or an empty result) to pass, True or a mapping to match."""


@dataclass(frozen=True, slots=True)
class Route:
    """One handler with the event types and filters it answers."""

    types: tuple[type, ...]
    filters: tuple[Filter, ...]
    handler: Handler

    def match(self, event: Any, ctx: Ctx) -> Mapping[str, Any] | None:
        """The merged filter data when every filter matches, else None."""
        if not isinstance(event, self.types):
            return None
        return self.filtered(event, ctx)

    def filtered(self, event: Any, ctx: Ctx) -> Mapping[str, Any] | None:
        """:meth:`match` for an event already known to be of one of the route's types."""
        data: dict[str, Any] = {}
        for flt in self.filters:
            result = flt(event, ctx)
            if result is True:
                continue
            if result is False:
                return None
            if isinstance(result, Mapping):
                data.update(result)
        return data


class Router:
    """A named, ordered set of routes for one chat feature."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.routes: list[Route] = []

    def on(
        self, event_type: type | tuple[type, ...], *filters: Filter
    ) -> Callable[[Handler], Handler]:
        """Register a handler for an event type (or tuple of types) and filters."""
        types = event_type if isinstance(event_type, tuple) else (event_type,)

        def register(handler: Handler) -> Handler:
            self.routes.append(Route(types, filters, handler))
            return handler

        return register


Next = Callable[[Inbound, Ctx], Awaitable[Reply | Unhandled]]


class Middleware(Protocol):
    """Wraps dispatch; outer middlewares see every event, in order.

    ``call_next`` is passed by keyword (the chain binds it with ``functools.partial``).
    """

    async def __call__(self, inbound: Inbound, ctx: Ctx, call_next: Next) -> Reply | Unhandled:
        """Do work around ``call_next`` or answer without calling it."""


class Dispatcher:
    """Runs the middleware chain, then the first matching route."""

    def __init__(self, routers: Sequence[Router], middlewares: Sequence[Middleware] = ()) -> None:
        self.routers = tuple(routers)
        self.middlewares = tuple(middlewares)
        self._routes = tuple(route for router in self.routers for route in router.routes)
        self._by_type: dict[type, tuple[Route, ...]] = {}  # the routes an event class can match
        self._chain: Next = self._route
        for mw in reversed(self.middlewares):
            self._chain = _bind(mw, self._chain)

    async def dispatch(self, inbound: Inbound, ctx: Ctx) -> Reply:
        """Dispatch one event; an unhandled event gets no reply."""
        result = await self._chain(inbound, ctx)
        if result is UNHANDLED:
            ctx.trace.outcome = "unhandled"
            return NO_REPLY
        return result

    def routes_for(self, kind: type) -> tuple[Route, ...]:
        """The routes, in order, whose event types an event of class ``kind`` is one of."""
        routes = self._by_type.get(kind)
        if routes is None:
            routes = tuple(route for route in self._routes if issubclass(kind, route.types))
            self._by_type[kind] = routes
        return routes

    async def _route(self, inbound: Inbound, ctx: Ctx) -> Reply | Unhandled:
        event = inbound.event
        for route in self.routes_for(type(event)):
            data = route.filtered(event, ctx)
            if data is not None:
                if data:
                    ctx = ctx.with_match(data)
                return await route.handler(event, ctx)
        return UNHANDLED


def _bind(mw: Middleware, call_next: Next) -> Next:
    # A partial, not a wrapping coroutine: one coroutine frame fewer per middleware per
    # callback (the middleware's own call is the awaitable).
    return functools.partial(mw, call_next=call_next)
