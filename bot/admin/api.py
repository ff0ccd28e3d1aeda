"""The admin HTTP API's base: routes with roles, bearer auth, validation, JSON errors.

Every endpoint is declared once with ``ApiRoutes.route`` (method, path, the roles that
may call it, the pydantic models of its body, query and answer). That declaration is
the whole contract: the wrapper authenticates the bearer token (401), checks the role
with ``permits`` (403), validates the body and query (422), turns ``ApiError`` into a
JSON error with a stable code, and ``bot.admin.openapi`` builds the OpenAPI document
from the same list, so the document cannot drift from the routes.

``admin`` may call every endpoint; the others only where a route lists them. WeCom staff
(the ``Staff`` table) act with the same roles through the same ``permits``.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from bot.appkeys import SERVICES
from bot.config_commerce import ROLES, AdminSettings, Role
from bot.context import Services

__all__ = [
    "Actor",
    "ApiCall",
    "ApiError",
    "ApiRoutes",
    "Endpoint",
    "authenticate",
    "error_response",
    "permits",
]


class ApiError(Exception):
    """An answer other than success: HTTP status, a stable code and a message."""

    def __init__(
        self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []


def not_found(what: str, key: object) -> ApiError:
    """404 ``not_found`` naming what was looked up."""
    return ApiError(404, "not_found", f"{what} {key} not found")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is calling: ``token:<name>`` for API tokens, ``staff:<userid>`` for WeCom staff."""

    name: str
    role: Role


def permits(role: str, allowed: Iterable[str]) -> bool:
    """The one permission check: admin may do everything, others what a route lists."""
    return role == "admin" or role in set(allowed)


def authenticate(settings: AdminSettings, header: str | None) -> Actor | None:
    """The actor behind an ``Authorization: Bearer …`` header, or None.

    Every configured token is compared in constant time, so the answer's timing tells
    nothing about which token came close.
    """
    if not header or not header.startswith("Bearer "):
        return None
    given = header.removeprefix("Bearer ").strip().encode()
    found: Actor | None = None
    for token in settings.tokens:
        if hmac.compare_digest(given, token.token.encode()):
            found = Actor(f"token:{token.name}", token.role)
    return found


def error_response(error: ApiError) -> web.Response:
    """The JSON body every API error has: ``{"error": code, "message": …, "details": […]}``."""
    body: dict[str, Any] = {"error": error.code, "message": error.message}
    if error.details:
        body["details"] = error.details
    headers = {"WWW-Authenticate": 'Bearer realm="scrm"'} if error.status == 401 else None
    return web.json_response(body, status=error.status, headers=headers, dumps=_dumps)


@dataclass(frozen=True, slots=True)
class ApiCall:
    """What an endpoint handler sees: the validated input and the caller."""

    request: web.Request
    services: Services
    actor: Actor
    now: datetime
    path: Mapping[str, str]
    body: Any = None
    query: Any = None

    def path_int(self, name: str) -> int:
        """A path parameter that must be a positive integer (404 otherwise)."""
        raw = self.path[name]
        if not raw.isdigit() or len(raw) > 18:
            raise ApiError(404, "not_found", f"{name} {raw!r} not found")
        return int(raw)


Handler = Callable[[ApiCall], Awaitable[Any]]


@dataclass(frozen=True)
class Endpoint:
    """One declared route: what the wrapper enforces and the OpenAPI document shows."""

    method: str
    path: str
    roles: frozenset[str]
    summary: str
    handler: Handler
    tag: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[str, ...] = ()

    @property
    def operation_id(self) -> str:
        """``handler`` module and name, unique across the API."""
        return self.handler.__name__

    @property
    def path_params(self) -> list[str]:
        """The ``{name}`` parameters of the path, in order."""
        return re.findall(r"\{(\w+)\}", self.path)


@dataclass
class ApiRoutes:
    """A module's endpoints; ``bot.admin.setup_admin`` mounts every module's list."""

    tag: str
    endpoints: list[Endpoint] = field(default_factory=list)

    def route(
        self,
        method: str,
        path: str,
        *,
        roles: Iterable[Role],
        summary: str,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        errors: Iterable[str] = (),
    ) -> Callable[[Handler], Handler]:
        """Declare an endpoint; ``roles`` besides ``admin`` (which may call everything)."""
        allowed = frozenset(roles) | {"admin"}
        unknown = allowed - set(ROLES)
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}")
        if not path.startswith("/api/"):
            raise ValueError(f"{path}: admin routes live under /api/")

        def register(handler: Handler) -> Handler:
            self.endpoints.append(
                Endpoint(
                    method.upper(),
                    path,
                    allowed,
                    summary,
                    handler,
                    self.tag,
                    body,
                    query,
                    response,
                    status,
                    tuple(errors),
                )
            )
            return handler

        return register


def wrap(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler enforcing an endpoint's contract."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await _handle(endpoint, request)
        except ApiError as error:
            return error_response(error)

    handle.__name__ = endpoint.operation_id
    return handle


async def _handle(endpoint: Endpoint, request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    actor = authenticate(services.settings.admin, request.headers.get("Authorization"))
    if actor is None:
        raise ApiError(401, "unauthorized", "a valid bearer token is required")
    if not permits(actor.role, endpoint.roles):
        raise ApiError(403, "forbidden", f"role {actor.role} may not {endpoint.summary.lower()}")
    body = await _body(endpoint, request)
    query = _validate(endpoint.query, dict(request.query), "query") if endpoint.query else None
    call = ApiCall(
        request=request,
        services=services,
        actor=actor,
        now=services.clock.now(),
        path=dict(request.match_info),
        body=body,
        query=query,
    )
    result = await endpoint.handler(call)
    if isinstance(result, web.StreamResponse):
        return result
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    return web.json_response(result, status=endpoint.status, dumps=_dumps)


async def _body(endpoint: Endpoint, request: web.Request) -> Any:
    if endpoint.body is None:
        return None
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    try:
        raw = await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(raw, dict):
        raise ApiError(422, "invalid_request", "the body must be a JSON object")
    return _validate(endpoint.body, raw, "body")


def _validate(model: type[BaseModel], data: dict[str, Any], where: str) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            {
                "field": ".".join(str(p) for p in err["loc"]) or where,
                "in": where,
                "message": str(err["msg"]).removeprefix("Value error, "),
            }
            for err in exc.errors(include_url=False, include_input=False)
        ]
        first = details[0]
        raise ApiError(
            422, "invalid_request", f"{first['field']}: {first['message']}", details
        ) from None


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
