"""One API call end to end: record it, apply injected failures, check the token, answer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.devtools.fake.common import ApiRequest, FakeError, Json, Route
from bot.devtools.fake.routes import ROUTES
from bot.devtools.fake.state import Call, Failure
from bot.devtools.fake.wecom_transfer import settle_transfers

if TYPE_CHECKING:
    from bot.devtools.fake.platform import FakePlatform

NOT_FOUND = -404  # internal marker: no such API (answered with HTTP 404)
# What each platform answers above a global rate limit (WeCom: "api freq out of limit").
RATE_LIMITED = {"oa": 45011, "wecom": 45009, "mp": 45011}
METHOD_ERRORS = {"GET": (43001, "require GET method"), "POST": (43002, "require POST method")}


@dataclass(frozen=True)
class Answer:
    """An API answer: HTTP status and JSON body."""

    status: int
    body: Json


async def handle(p: FakePlatform, req: ApiRequest) -> Answer:
    """Record, fail on request, check the token, and answer one API call."""
    query = {k: v for k, v in req.query.items() if k != "access_token"}
    call = Call(p.next_seq(), req.platform, req.api, query, req.recorded_body(), p.now())
    p.world.calls.append(call)
    for observer in list(p.observers):
        observer(call)
    status = 200
    try:
        body = await _answer(p, req)
    except FakeError as exc:
        body = exc.answer()
        status = 404 if exc.errcode == NOT_FOUND else 200
    call.errcode = int(body.get("errcode", 0) or 0)
    return Answer(status, body)


async def _answer(p: FakePlatform, req: ApiRequest) -> Json:
    for hold in [h for h in p.world.holds if (h.platform, h.api) == (req.platform, req.api)]:
        hold.waiting += 1
        await hold.released.wait()
    limits = p.world.rate_limits
    for limit in (limits.get((req.platform, req.api)), limits.get((req.platform, "*"))):
        if limit is not None and not limit.take(p.now()):
            raise FakeError(RATE_LIMITED[req.platform], "api freq out of limit")
    failure = _take_failure(p.world.failures, req.platform, req.api)
    if failure is not None:
        if failure.delay:
            await asyncio.sleep(failure.delay)
        if failure.errcode:
            raise FakeError(failure.errcode, failure.errmsg)
    route = ROUTES.get((req.platform, req.api))
    if route is None:
        raise FakeError(NOT_FOUND, f"unknown api {req.platform}/{req.api}")
    _check_request(p, req, route)
    if req.platform == "wecom" and req.app_id:
        # Handovers complete by time (24 h), so bring them up to date before any answer.
        settle_transfers(p.world.corps[req.app_id], p.now())
    return route.handler(p, req)


def _check_request(p: FakePlatform, req: ApiRequest, route: Route) -> None:
    if req.method != route.method:
        raise FakeError(*METHOD_ERRORS[route.method])
    if route.token:
        token = p.tokens.check(req.platform, req.query.get("access_token", ""), p.now())
        if route.scope and route.scope not in token.scopes:
            raise FakeError(48002, "api forbidden")  # e.g. externalcontact/* by the agent token
        req.app_id = token.app_id
    if route.method == "POST" and not route.multipart:
        if req.parse_error is not None:
            raise req.parse_error
        if req.json is None:
            raise FakeError(44002, "empty post data")


def _take_failure(failures: list[Failure], platform: str, api: str) -> Failure | None:
    for failure in failures:
        if failure.matches(platform, api):
            failure.times -= 1
            return failure
    return None
