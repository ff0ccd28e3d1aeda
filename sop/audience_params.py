"""The parameters of each named audience (extra keys forbidden).

Every audience takes the common filters: ``tiers`` (tier codes, any of), ``tags_any``,
``tags_all`` and ``tags_none`` (tag names; deleted tags are ignored).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class CommonParams(BaseModel):
    """Filters every audience accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tiers: tuple[str, ...] = ()
    tags_any: tuple[str, ...] = ()
    tags_all: tuple[str, ...] = ()
    tags_none: tuple[str, ...] = ()

    @field_validator("tiers", "tags_any", "tags_all", "tags_none")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not name.strip() for name in value):
            raise ValueError("names must not be empty")
        return value


class ActiveParams(CommonParams):
    """``active``: some activity (sign-in, message, order) in the last ``days`` days."""

    days: int = Field(default=30, ge=1, le=3650)


class InactiveParams(CommonParams):
    """``inactive``: no activity for ``days[i]`` days (and not yet for ``days[i+1]``)."""

    days: tuple[int, ...] = (30, 60)

    @field_validator("days")
    @classmethod
    def _steps(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("days needs at least one step")
        if list(value) != sorted(set(value)) or value[0] < 1 or value[-1] > 3650:
            raise ValueError("days must be increasing steps between 1 and 3650")
        return value


class JoinedParams(CommonParams):
    """``joined_days_ago``: members who joined exactly ``days`` business days ago."""

    days: int = Field(ge=0, le=3650)


class ExpiringParams(CommonParams):
    """``points_expiring``: an open lot's last day is ``days`` days after the fire date."""

    days: int = Field(default=30, ge=0, le=3650)


class TierWarningParams(CommonParams):
    """``tier_warning``: fired ``days`` days before the yearly evaluation."""

    days: int = Field(default=30, ge=1, le=360)
