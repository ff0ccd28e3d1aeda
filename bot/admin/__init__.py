"""The admin HTTP API under ``/api/`` (DESIGN §9): see ``bot.admin.api`` for the base.

Each module of endpoints holds an ``ApiRoutes`` named ``routes``; ``MODULES`` lists them,
and ``setup_admin`` mounts every endpoint and the public ``/api/openapi.json``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from aiohttp import web

from bot.admin.api import ApiError, ApiRoutes, Endpoint, error_response, wrap
from bot.admin.openapi import build_document

# One module per resource; each defines ``routes = ApiRoutes(tag=…)``.
MODULES: tuple[str, ...] = (
    "bot.admin.audit",
    "bot.admin.members",
    "bot.admin.member_tags",
    "bot.admin.orders",
    "bot.admin.rewards",
    "bot.admin.coupons",
    "bot.admin.segments",
    "bot.admin.broadcasts",
)


def endpoints() -> list[Endpoint]:
    """Every declared endpoint, in module order."""
    found: list[Endpoint] = []
    for name in MODULES:
        routes: ApiRoutes = importlib.import_module(name).routes
        found.extend(routes.endpoints)
    return found


def setup_admin(app: web.Application) -> None:
    """Mount the API's endpoints, its OpenAPI document and its JSON 404/405 answers."""
    declared = endpoints()
    seen: set[tuple[str, str]] = set()
    for endpoint in declared:
        key = (endpoint.method, endpoint.path)
        if key in seen:
            raise ValueError(f"{endpoint.method} {endpoint.path} is declared twice")
        seen.add(key)
        app.router.add_route(endpoint.method, endpoint.path, wrap(endpoint))
    document = build_document(declared, _version())

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(document)

    app.router.add_get("/api/openapi.json", openapi)
    app.middlewares.append(api_errors)


@web.middleware
async def api_errors(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    """Under ``/api/`` even aiohttp's own 404/405/413 answers are JSON with a code."""
    if not request.path.startswith("/api/"):
        response: web.StreamResponse = await handler(request)
        return response
    try:
        answer: web.StreamResponse = await handler(request)
    except ApiError as error:
        return error_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
            exc.status, "http_error"
        )
        return error_response(ApiError(exc.status, code, exc.reason))
    return answer


def _version() -> str:
    try:
        return version("scrm-bot")
    except PackageNotFoundError:
        return "0"
