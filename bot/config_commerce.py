"""Settings of the admin API (bearer tokens and their roles) and the points mall."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Role = Literal["admin", "manager", "staff", "integration"]
ROLES: tuple[Role, ...] = ("admin", "manager", "staff", "integration")
MIN_TOKEN_LENGTH = 24


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AdminToken(_Section):
    """One bearer token of the admin API: who holds it and the role it acts with."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,48}$")
    role: Role
    # At least 24 characters; write "${ENV_NAME}" to keep it out of the file.
    token: str = Field(min_length=MIN_TOKEN_LENGTH, max_length=256)


class AdminSettings(_Section):
    """``[admin]``: the API's tokens. No tokens: every guarded route answers 401."""

    tokens: list[AdminToken] = Field(default_factory=list)

    @field_validator("tokens")
    @classmethod
    def _unique(cls, value: list[AdminToken]) -> list[AdminToken]:
        names = [t.name for t in value]
        if len(set(names)) != len(names):
            raise ValueError("token names must be unique")
        if len({t.token for t in value}) != len(value):
            raise ValueError("two tokens have the same value")
        return value


class RewardConfig(_Section):
    """``[[rewards]]``: a reward of the points mall, upserted by code on start."""

    code: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    name: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=256)
    cost_points: int = Field(ge=1)
    # Omit for unlimited stock.
    stock: int | None = Field(default=None, ge=0)
    # 0: no limit per member.
    per_member_limit: int = Field(default=0, ge=0)
    # The coupon issued: a value in fen off, or a discount ("0.85" is 15 % off).
    coupon_value_fen: int = Field(default=0, ge=0)
    coupon_discount: float = Field(default=0, ge=0, lt=1)
    coupon_valid_days: int = Field(default=30, ge=1, le=3660)
    available_from: datetime | None = None
    available_to: datetime | None = None
    active: bool = True

    @model_validator(mode="after")
    def _one_kind(self) -> RewardConfig:
        if bool(self.coupon_value_fen) == bool(self.coupon_discount):
            raise ValueError("set exactly one of coupon_value_fen and coupon_discount")
        for moment in (self.available_from, self.available_to):
            if moment is not None and moment.tzinfo is None:
                raise ValueError("available_from/available_to need a time zone offset")
        if self.available_from and self.available_to and self.available_to <= self.available_from:
            raise ValueError("available_to must be after available_from")
        return self

    @property
    def discount_per_mille(self) -> int:
        """The discount as the price's per mille (0.85 → 850), 0 for a value coupon."""
        return round(self.coupon_discount * 1000)


def unique_reward_codes(rewards: list[RewardConfig]) -> list[RewardConfig]:
    """Validator body: reward codes must be unique (case-insensitive)."""
    codes = [r.code.lower() for r in rewards]
    duplicates = sorted({c for c in codes if codes.count(c) > 1})
    if duplicates:
        raise ValueError(f"duplicate reward code {duplicates[0]!r}")
    return rewards
