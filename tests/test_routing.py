"""The dispatcher's routing: first match wins, in router order, across event types.

The dispatcher keeps, per event class, the routes whose types it can match (so a text
message never runs the filters or type checks of click routes); these tests hold it to
the plain rule "the first route, in order, whose type and filters all match".
"""

from __future__ import annotations

from typing import Any

from wechatpy.events import ClickEvent
from wechatpy.messages import BaseMessage, TextMessage

from bot.context import Ctx, Trace
from bot.replies import NO_REPLY, Reply, TextReply
from bot.routing import Dispatcher, Route, Router
from bot.wechat.inbound import Inbound
from bot.wechat.oa_parse import parse_oa
from tests.helpers import oa_text


def _inbound(content: str) -> Inbound:
    return parse_oa("demo", oa_text(content))


def _ctx(inbound: Inbound) -> Ctx:
    return Ctx(inbound=inbound, services=None, now=None, trace=Trace())  # type: ignore[arg-type]


def _replying(text: str) -> Any:
    async def handler(event: Any, ctx: Ctx) -> Reply:
        data = ",".join(f"{k}={v}" for k, v in sorted(ctx.match.items()))
        return TextReply(f"{text}|{data}")

    return handler


def _says(word: str) -> Any:
    return lambda event, ctx: event.content == word


async def _dispatch(dispatcher: Dispatcher, content: str) -> str:
    inbound = _inbound(content)
    reply = await dispatcher.dispatch(inbound, _ctx(inbound))
    assert isinstance(reply, TextReply)
    return reply.content


async def test_the_first_matching_route_wins_across_routers_and_base_types() -> None:
    first, second = Router("first"), Router("second")
    first.on(ClickEvent)(_replying("click"))
    first.on(TextMessage, _says("a"))(_replying("text-a"))
    second.on(BaseMessage)(_replying("any-message"))  # a base class of TextMessage
    second.on(TextMessage, _says("b"))(_replying("never: the base-class route is first"))
    dispatcher = Dispatcher([first, second])

    assert (await _dispatch(dispatcher, "a")).startswith("text-a|")
    assert (await _dispatch(dispatcher, "b")).startswith("any-message|")
    # the per-class route list is what the plain rule gives, in order
    routes = dispatcher.routes_for(TextMessage)
    assert [r.handler for r in routes] == [
        r.handler for r in (*first.routes, *second.routes) if issubclass(TextMessage, r.types)
    ]
    assert len(routes) == 3
    # wechatpy's events are messages too: the BaseMessage route is a click's second
    assert dispatcher.routes_for(ClickEvent) == (first.routes[0], second.routes[0])


async def test_filters_true_false_and_mappings() -> None:
    router = Router("r")
    router.on(TextMessage, _says("x"), lambda e, c: {"n": 1}, lambda e, c: True)(_replying("x"))
    router.on(TextMessage, lambda e, c: {}, lambda e, c: {"m": 2})(_replying("fallback"))
    dispatcher = Dispatcher([router])

    assert await _dispatch(dispatcher, "x") == "x|n=1"
    assert await _dispatch(dispatcher, "y") == "fallback|m=2"
    route: Route = router.routes[0]
    inbound = _inbound("x")
    assert route.match(inbound.event, _ctx(inbound)) == {"n": 1}
    assert route.match(object(), _ctx(inbound)) is None  # not one of its types


async def test_an_event_no_route_takes_is_unhandled() -> None:
    router = Router("r")
    router.on(ClickEvent)(_replying("click"))
    dispatcher = Dispatcher([router])
    inbound = _inbound("hello")
    ctx = _ctx(inbound)
    reply = await dispatcher.dispatch(inbound, ctx)
    assert reply is NO_REPLY
    assert ctx.trace.outcome == "unhandled"
    assert dispatcher.routes_for(TextMessage) == ()
