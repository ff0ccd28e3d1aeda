"""``[sms]``: how one-time codes are sent, and the rules of verified phone binding."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SmsSettings(BaseModel):
    """The SMS provider and the one-time code rules (DESIGN §9).

    ``provider = "fake"`` posts to the fake platform (``base_url`` follows the ``[api]``
    convention: the fake is mounted under ``/_fake/`` by ``make run``); ``"log"`` only
    writes the message to the log, for development without the fake. A real provider is
    an adapter implementing ``bot.services.sms.SmsSender`` (docs/membership.md).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: Literal["fake", "log"] = "log"
    base_url: str = "http://127.0.0.1:8080/_fake/sms"
    timeout_seconds: float = Field(default=5.0, gt=0, le=30)
    # A code lives this long, allows this many tries, and a member may ask for this many
    # codes in any hour.
    code_ttl_seconds: int = Field(default=300, ge=60, le=3600)
    max_tries: int = Field(default=5, ge=1, le=20)
    max_requests_per_hour: int = Field(default=3, ge=1, le=20)
