"""WeCom programme settings: what each contact way's State means, and the staff roster."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ContactWayConfig(_Section):
    """``[wecom.contact_ways.<State>]``: a 联系我 QR code's State → welcome and channel.

    ``welcome`` names a template in templates/ (without ``.j2``); ``channel`` is recorded
    on members first met through it.
    """

    welcome: str = Field(default="wecom_welcome", pattern=r"^[a-z0-9_]+$")
    channel: str = Field(default="", max_length=64)


class StaffSeed(_Section):
    """``[[wecom.staff]]``: a staff member allowed to use the agent's chat-ops, with a role
    (the admin API's roles and permission check)."""

    userid: str = Field(min_length=1, max_length=64)
    name: str = Field(default="", max_length=64)
    role: Literal["staff", "manager", "admin"] = "staff"
