"""Settings of personal-data rights (PIPL): the consent text version, 注销 confirmation."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PrivacySettings(BaseModel):
    """``[privacy]``: what consent rows record and how long a 注销 request waits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The version of the marketing-consent text members were shown; every Consent row
    # records it, so a change of wording is visible in the history.
    marketing_text_version: str = Field(default="2026-12", min_length=1, max_length=32)
    # 确认注销 must follow 注销 within this many minutes, else nothing is erased.
    erase_confirm_minutes: int = Field(default=10, ge=1, le=1440)
