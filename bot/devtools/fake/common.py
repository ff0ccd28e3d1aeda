"""Helpers every API group shares: the error answer, typed body access, cursors, days."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.devtools.fake.platform import FakePlatform

Json = dict[str, Any]
# The platforms count days and months in Beijing time (no DST).
CHINA = timezone(timedelta(hours=8))
OK: Json = {"errcode": 0, "errmsg": "ok"}


class FakeError(Exception):
    """An error answer ``{"errcode": …, "errmsg": …}``, with optional extra fields."""

    def __init__(self, errcode: int, errmsg: str, **extra: Any) -> None:
        super().__init__(f"{errcode} {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.extra = extra

    def answer(self) -> Json:
        """The JSON the platform sends back."""
        return {"errcode": self.errcode, "errmsg": self.errmsg, **self.extra}


class Body:
    """Typed access to a JSON request body; bad types answer the platform's ``bad`` code."""

    def __init__(self, data: Any, bad: int) -> None:
        self.data: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
        self.bad = bad

    def _fail(self, key: str, what: str) -> FakeError:
        return FakeError(self.bad, f"invalid args: {key} must be {what}")

    def has(self, key: str) -> bool:
        """True when the key is present and not null."""
        return self.data.get(key) is not None

    def text(self, key: str, default: str = "") -> str:
        """A string field."""
        value = self.data.get(key, default)
        if not isinstance(value, str):
            raise self._fail(key, "a string")
        return value

    def need(self, key: str) -> str:
        """A non-empty string field."""
        value = self.text(key)
        if not value:
            raise self._fail(key, "a non-empty string")
        return value

    def num(self, key: str, default: int = 0) -> int:
        """An integer field (numeric strings accepted, as the platforms do)."""
        value = self.data.get(key, default)
        if isinstance(value, bool):
            raise self._fail(key, "an integer")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise self._fail(key, "an integer") from None

    def seq(self, key: str) -> list[Any]:
        """A list field (missing → empty)."""
        value = self.data.get(key) or []
        if not isinstance(value, list):
            raise self._fail(key, "a list")
        return value

    def strs(self, key: str) -> list[str]:
        """A list of strings."""
        values = self.seq(key)
        if not all(isinstance(v, str) for v in values):
            raise self._fail(key, "a list of strings")
        return [str(v) for v in values]

    def child(self, key: str) -> Body:
        """A nested object (missing → empty)."""
        value = self.data.get(key) or {}
        if not isinstance(value, Mapping):
            raise self._fail(key, "an object")
        return Body(value, self.bad)


def encode_cursor(offset: int) -> str:
    """An opaque cursor for the next page ("" when there is none)."""
    return base64.urlsafe_b64encode(f"fake:{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, bad: int) -> int:
    """The offset a cursor stands for; a cursor we never issued answers ``bad``."""
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, offset = text.partition(":")
        if prefix == "fake" and offset.isdigit():
            return int(offset)
    except (ValueError, UnicodeDecodeError):
        pass
    raise FakeError(bad, "invalid cursor")


def page(items: Sequence[Any], cursor: str, limit: int, bad: int) -> tuple[list[Any], str]:
    """One page of ``items`` and the cursor of the next ("" at the end)."""
    start = decode_cursor(cursor, bad)
    end = start + limit
    return list(items[start:end]), encode_cursor(end) if end < len(items) else ""


def china_day(ts: float) -> str:
    """The Beijing calendar day of a timestamp, e.g. ``2026-11-23``."""
    return datetime.fromtimestamp(ts, UTC).astimezone(CHINA).strftime("%Y-%m-%d")


def china_month(ts: float) -> str:
    """The Beijing calendar month of a timestamp, e.g. ``2026-11``."""
    return china_day(ts)[:7]


# The corp's 群发规则 (企业微信 → 群发助手 → 设置群发规则, add_msg_template, doc 92135):
# each customer and each customer group receives at most as many corp group messages a
# calendar month as the month has days (the default), or 7 a week, or 1 a day.
RECEIVE_RULES = ("month", "week", "day")


def receive_period(ts: float, rule: str) -> tuple[str, int]:
    """The receive-limit period of a timestamp under ``rule`` and its cap, e.g.
    ``("2026-11", 30)``, ``("2026-W48", 7)``, ``("2026-11-23", 1)``."""
    local = datetime.fromtimestamp(ts, UTC).astimezone(CHINA)
    if rule == "day":
        return local.strftime("%Y-%m-%d"), 1
    if rule == "week":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}", 7
    first = local.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return local.strftime("%Y-%m"), (following - first).days


@dataclass(frozen=True)
class Upload:
    """One multipart file field."""

    filename: str
    data: bytes


@dataclass
class ApiRequest:
    """One API call, parsed from HTTP (or built by a test) and handed to a route."""

    platform: str
    api: str
    method: str = "POST"
    query: dict[str, str] = field(default_factory=dict)
    json: Any = None
    files: dict[str, Upload] = field(default_factory=dict)
    parse_error: FakeError | None = None
    app_id: str = ""  # the appid/corpid the access_token belongs to, once checked

    @property
    def body(self) -> Body:
        """The JSON body with the platform's invalid-argument code."""
        return Body(self.json, 40097 if self.platform == "oa" else 40058)

    def recorded_body(self) -> Any:
        """What the call log keeps of the body."""
        if self.files:
            return {k: {"filename": f.filename, "size": len(f.data)} for k, f in self.files.items()}
        return self.json


Handler = Callable[["FakePlatform", ApiRequest], Json]


@dataclass(frozen=True)
class Route:
    """How one API is served: its handler, HTTP method, token and scope rules."""

    handler: Handler
    method: str = "POST"
    token: bool = True
    scope: str = ""  # WeCom: "agent" or "contact" (which secret's token may call it)
    multipart: bool = False


def bad_args(platform: str, what: str) -> FakeError:
    """The platform's invalid-argument answer."""
    return FakeError(40097, f"invalid args: {what}") if platform == "oa" else wecom_bad(what)


def wecom_bad(what: str) -> FakeError:
    """WeCom's invalid-parameter answer."""
    return FakeError(40058, f"invalid request parameter: {what}")
