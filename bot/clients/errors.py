"""Typed API errors: every platform answer other than errcode 0, and unknown outcomes."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """The platform answered with a non-zero errcode (so nothing was done)."""

    def __init__(
        self, platform: str, api: str, errcode: int, errmsg: str, body: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{platform} {api}: {errcode} {errmsg}")
        self.platform = platform
        self.api = api
        self.errcode = errcode
        self.errmsg = errmsg
        self.body = body or {}


class QuotaExhausted(ApiError):
    """A daily quota ran out; the API is paused for the account until business midnight."""


class BadSecret(ApiError):
    """The app secret is wrong: retrying cannot help, an operator must fix the config."""


class NotSent(Exception):
    """The request never reached the platform (connection refused): safe to retry."""

    def __init__(self, platform: str, api: str, cause: str) -> None:
        super().__init__(f"{platform} {api}: not sent ({cause})")
        self.platform = platform
        self.api = api


class OutcomeUnknown(Exception):
    """The request may have been processed (timeout, 5xx, unreadable answer)."""

    def __init__(self, platform: str, api: str, cause: str) -> None:
        super().__init__(f"{platform} {api}: outcome unknown ({cause})")
        self.platform = platform
        self.api = api
