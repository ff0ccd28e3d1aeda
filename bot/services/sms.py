"""``SmsSender``: how one-time codes leave the server, behind one small interface.

``[sms] provider`` picks the implementation: ``fake`` posts to the fake platform (which
records every message; the simulator prints the codes), ``log`` writes the message to
the log (development only: the log then holds codes). A real provider is an adapter with
the same two methods that calls the vendor's API (see docs/membership.md); the caller
never waits for it on the reply path (``PhoneService`` sends from a background task).
"""

from __future__ import annotations

import logging
from typing import Protocol

import aiohttp

from bot.config import Settings
from bot.services.pii import mask

log = logging.getLogger("bot.sms")


class SmsError(Exception):
    """The provider did not accept the message."""


class SmsSender(Protocol):
    """Sends one text message to a mainland mobile number."""

    async def send(self, mobile: str, text: str) -> None:
        """Deliver ``text`` to ``mobile`` (11 digits); SmsError if the provider refuses."""

    async def close(self) -> None:
        """Release connections (at shutdown)."""


class LogSms:
    """Writes messages to the log instead of sending them (development only)."""

    async def send(self, mobile: str, text: str) -> None:
        """Log the message, the number masked."""
        log.warning("sms not sent (provider log)", extra={"mobile": mask(mobile), "text": text})

    async def close(self) -> None:
        """Nothing to release."""


class FakePlatformSms:
    """Posts ``{"mobile", "text"}`` to the fake platform's ``<base_url>/send``."""

    def __init__(self, base_url: str, timeout_seconds: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, mobile: str, text: str) -> None:
        """One bounded POST; SmsError on an HTTP error or an unreachable fake."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._session.post(
                f"{self.base_url}/send", json={"mobile": mobile, "text": text}
            ) as resp:
                if resp.status != 200:
                    raise SmsError(f"fake sms answered HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SmsError(f"fake sms unreachable: {exc}") from None

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def make_sms_sender(settings: Settings) -> SmsSender:
    """The sender ``[sms] provider`` names."""
    sms = settings.sms
    if sms.provider == "fake":
        return FakePlatformSms(sms.base_url, sms.timeout_seconds)
    return LogSms()
