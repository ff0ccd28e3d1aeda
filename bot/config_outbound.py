"""``[outbound]``: the outbound engine's pace (concurrency, token-bucket rates, retries).

Rates are per (platform, app id, API) and shared by every process (Redis) or by this
process (in-process mode). ``rates`` keys are ``"oa:<api path>"`` or ``"wecom:<api path>"``,
e.g. ``"oa:cgi-bin/message/custom/send" = 200``; any other API uses ``rate_per_second``.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

_RATE_KEY = re.compile(r"^(oa|wecom):[A-Za-z0-9_/.-]+$")


class OutboundSettings(BaseModel):
    """How fast and how wide the sender sends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    concurrency: int = Field(default=16, ge=1, le=1000)
    batch: int = Field(default=200, ge=1, le=10_000)
    rate_per_second: float = Field(default=1000.0, gt=0)
    rates: dict[str, float] = Field(default_factory=dict)
    rate_retry_seconds: float = Field(default=1.0, gt=0, le=3600)
    not_sent_retry_seconds: float = Field(default=30.0, gt=0, le=3600)
    wecom_task_max: int = Field(default=10_000, ge=1, le=10_000)
    mass_max: int = Field(default=10_000, ge=2, le=10_000)

    @field_validator("rates")
    @classmethod
    def _rate_keys(cls, value: dict[str, float]) -> dict[str, float]:
        for key, rate in value.items():
            if not _RATE_KEY.match(key):
                raise ValueError(f"rates key {key!r} must look like oa:<api path> or wecom:<api>")
            if rate <= 0:
                raise ValueError(f"rates.{key} must be positive")
        return value

    def rate(self, platform: str, api: str) -> float:
        """Requests per second allowed for one API of one app."""
        return self.rates.get(f"{platform}:{api}", self.rate_per_second)
