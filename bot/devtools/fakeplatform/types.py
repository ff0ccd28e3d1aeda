"""Route and request types shared by the fake API modules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from bot.devtools.fakeplatform.state import IssuedToken

if TYPE_CHECKING:
    from bot.devtools.fakeplatform.platform import FakePlatform

Auth = Literal["none", "oa", "agent", "contact"]


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """One API call as a handler sees it."""

    query: dict[str, str]
    body: Any
    token: IssuedToken | None
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Route:
    """An API path, its handler and which token it needs."""

    method: str
    api: str
    handler: Callable[[FakePlatform, ApiRequest], dict[str, Any]]
    auth: Auth = "oa"
