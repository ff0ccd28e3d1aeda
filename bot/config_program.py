"""Settings of the loyalty programme: tiers, points, sign-in, member day, referrals, chat.

Defaults are DESIGN §4. Multipliers are written as decimals (``1.5``) and kept as per
mille integers (``1500``), the unit the ledger stores on every entry, so awards round
down exactly once.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PER_MILLE = 1000


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def per_mille(value: float) -> int:
    """A decimal multiplier as an integer per mille (1.5 → 1500); at most 3 decimals."""
    scaled = round(value * PER_MILLE)
    if abs(scaled - value * PER_MILLE) > 1e-6:
        raise ValueError(f"{value} has more than three decimals")
    return scaled


class TierSettings(_Section):
    """One tier: entered when growth reaches ``threshold``, kept yearly with ``retain``."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str = Field(min_length=1)
    threshold: int = Field(ge=0)
    # Growth earned in the previous 12 months needed to keep the tier at the yearly
    # evaluation; None means the entry threshold.
    retain: int | None = Field(default=None, ge=0)
    multiplier: float = Field(default=1.0, ge=1.0, le=10.0)
    benefits: tuple[str, ...] = ()

    @field_validator("multiplier")
    @classmethod
    def _three_decimals(cls, value: float) -> float:
        per_mille(value)
        return value

    @property
    def multiplier_per_mille(self) -> int:
        """The points multiplier as the ledger stores it."""
        return per_mille(self.multiplier)

    @property
    def retention(self) -> int:
        """Growth over the last 12 months that keeps this tier."""
        return self.threshold if self.retain is None else self.retain


_DEFAULT_TIERS = (
    TierSettings(code="basic", name="普卡", threshold=0, benefits=("签到与消费积分", "生日礼")),
    TierSettings(
        code="silver",
        name="银卡",
        threshold=3000,
        multiplier=1.2,
        benefits=("积分 1.2 倍", "生日礼", "会员日双倍积分"),
    ),
    TierSettings(
        code="gold",
        name="金卡",
        threshold=6000,
        multiplier=1.5,
        benefits=("积分 1.5 倍", "生日礼", "会员日双倍积分", "专属客服"),
    ),
)


class MembershipSettings(_Section):
    """Tiers by growth and their yearly evaluation (DESIGN §4)."""

    tiers: tuple[TierSettings, ...] = _DEFAULT_TIERS
    # The yearly evaluation day, MM-DD in business time (default 1 January).
    evaluation_day: str = Field(default="01-01", pattern=r"^\d{2}-\d{2}$")

    @model_validator(mode="after")
    def _ordered(self) -> MembershipSettings:
        if not self.tiers:
            raise ValueError("at least one tier is required")
        if self.tiers[0].threshold != 0:
            raise ValueError("the first tier's threshold must be 0")
        thresholds = [t.threshold for t in self.tiers]
        if thresholds != sorted(set(thresholds)):
            raise ValueError("tier thresholds must strictly increase")
        codes = [t.code for t in self.tiers]
        if len(set(codes)) != len(codes):
            raise ValueError("tier codes must be unique")
        month, day = (int(x) for x in self.evaluation_day.split("-"))
        date(2001, month, day)  # ValueError names the bad day (29 February excluded)
        return self

    def tier(self, code: str) -> TierSettings:
        """The tier with this code (the lowest when the code is no longer configured)."""
        return next((t for t in self.tiers if t.code == code), self.tiers[0])

    def tier_for_growth(self, growth: int) -> TierSettings:
        """The highest tier whose threshold ``growth`` reaches."""
        return [t for t in self.tiers if t.threshold <= growth][-1]

    def next_tier(self, code: str) -> TierSettings | None:
        """The tier above this one, if any."""
        index = next((i for i, t in enumerate(self.tiers) if t.code == code), 0)
        return self.tiers[index + 1] if index + 1 < len(self.tiers) else None

    def lower_tier(self, code: str) -> TierSettings:
        """The tier below this one (the lowest stays the lowest)."""
        index = next((i for i, t in enumerate(self.tiers) if t.code == code), 0)
        return self.tiers[max(index - 1, 0)]


class PointsSettings(_Section):
    """Purchases → points and growth; expiry. See config.example.toml for budgets."""

    # Points per yuan spent (default 1; a 10%-rebate brand sets 0.1 with 1 point = 1 yuan).
    points_per_yuan: float = Field(default=1.0, gt=0)
    growth_per_yuan: float = Field(default=1.0, ge=0)
    # How many points make one yuan in the mall (default 100: a 1% rebate).
    points_per_yuan_value: int = Field(default=100, ge=1)
    # Reminder this many days before a lot expires (the SOP issue sends it).
    expiry_reminder_days: int = Field(default=30, ge=1)


class SignInSettings(_Section):
    """Daily sign-in: points for day N of the streak cycle (the cycle restarts after it)."""

    # rewards[n - 1] is the base for the n-th consecutive day; default 5 a day and 20 more
    # on the 7th, then the cycle restarts.
    rewards: tuple[int, ...] = (5, 5, 5, 5, 5, 5, 25)
    # Growth per sign-in (optional; DESIGN §4 grows tiers by purchases only).
    growth: int = Field(default=0, ge=0)

    @field_validator("rewards")
    @classmethod
    def _positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(v <= 0 for v in value):
            raise ValueError("needs at least one reward and every reward must be positive")
        return value

    def base_for(self, streak: int) -> int:
        """The base points for a sign-in that makes a streak of ``streak`` days."""
        return self.rewards[(streak - 1) % len(self.rewards)]


class MemberDaySettings(_Section):
    """The monthly member day (会员日): points multiplied (days past month end → last day)."""

    enabled: bool = True
    day: int = Field(default=8, ge=1, le=31)
    multiplier: float = Field(default=2.0, ge=1.0, le=10.0)

    @property
    def multiplier_per_mille(self) -> int:
        """The member-day multiplier as the ledger stores it."""
        return per_mille(self.multiplier)


class ReferralSettings(_Section):
    """Referral scenes ``ref_<member code>``: the referrer's reward per genuinely new member."""

    enabled: bool = True
    points: int = Field(default=50, ge=0)
    qr_days: int = Field(default=30, ge=1, le=30)


_COMMANDS = (
    "signin",
    "points",
    "tier",
    "birthday",
    "invite",
    "mall",
    "redeem",
    "coupons",
    "bind_phone",
    "verify",
    "help",
    "opt_out",
    "opt_in",
    "erase",
    "erase_confirm",
)
_DEFAULT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "signin": ("签到", "打卡"),
    "points": ("积分", "我的积分"),
    "tier": ("会员", "等级", "我的等级"),
    "birthday": ("生日",),
    "invite": ("邀请", "邀请好友"),
    "mall": ("积分商城", "商城"),
    "redeem": ("兑换",),
    "coupons": ("我的券", "优惠券", "我的优惠券"),
    "bind_phone": ("绑定手机",),
    "verify": ("验证",),
    "help": ("帮助", "help", "?", "？", "菜单", "menu"),
    # Marketing consent (PIPL): 退订 / TD (any case) opts out, 订阅 opts back in.
    "opt_out": ("退订", "TD"),
    "opt_in": ("订阅",),
    # 注销 asks for confirmation; 确认注销 within the window erases the member.
    "erase": ("注销",),
    "erase_confirm": ("确认注销",),
}
_DEFAULT_MENU_KEYS: dict[str, tuple[str, ...]] = {
    "signin": ("SIGNIN",),
    "points": ("POINTS",),
    "tier": ("TIER",),
    "invite": ("INVITE",),
    "mall": ("MALL",),
    "coupons": ("COUPONS",),
    "help": ("HELP", "help"),
}


class AutoReply(_Section):
    """A configured keyword auto-reply, tried before the help hint."""

    keywords: tuple[str, ...] = Field(min_length=1)
    match: Literal["exact", "contains"] = "exact"
    reply: str = Field(min_length=1)


class ChatSettings(_Section):
    """Member chat commands: keywords (with synonyms), menu CLICK keys, auto-replies."""

    keywords: dict[str, tuple[str, ...]] = Field(default_factory=lambda: dict(_DEFAULT_KEYWORDS))
    menu_keys: dict[str, tuple[str, ...]] = Field(default_factory=lambda: dict(_DEFAULT_MENU_KEYS))
    auto_replies: tuple[AutoReply, ...] = ()

    @field_validator("keywords", "menu_keys")
    @classmethod
    def _known_commands(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for name in value:
            if name not in _COMMANDS:
                raise ValueError(f"unknown command {name!r} (one of {', '.join(_COMMANDS)})")
        return value

    def words(self, command: str) -> tuple[str, ...]:
        """The keywords of a command (its defaults unless the config names it)."""
        return self.keywords.get(command, _DEFAULT_KEYWORDS.get(command, ()))

    def keys(self, command: str) -> tuple[str, ...]:
        """The menu CLICK keys of a command."""
        return self.menu_keys.get(command, _DEFAULT_MENU_KEYS.get(command, ()))


class MenuButton(_Section):
    """A custom-menu button as the menu/create API takes it (one level of sub-buttons)."""

    name: str = Field(min_length=1, max_length=16)
    type: Literal["click", "view", "miniprogram", ""] = ""
    key: str = ""
    url: str = ""
    appid: str = ""
    pagepath: str = ""
    sub_button: tuple[MenuButton, ...] = ()

    @model_validator(mode="after")
    def _complete(self) -> MenuButton:
        if self.sub_button:
            if len(self.sub_button) > 5:
                raise ValueError(f"{self.name}: at most 5 sub-buttons")
            return self
        if self.type == "click" and not self.key:
            raise ValueError(f"{self.name}: a click button needs a key")
        if self.type == "view" and not self.url:
            raise ValueError(f"{self.name}: a view button needs a url")
        if not self.type:
            raise ValueError(f"{self.name}: needs a type or sub-buttons")
        return self


class OaSettings(_Section):
    """Official Account features beyond the callback: the custom menu, scene channels."""

    menu: tuple[MenuButton, ...] = Field(default=(), max_length=3)
    # Scene codes (qrscene_<scene> / SCAN keys) → the channel recorded on new members.
    # A scene not listed is recorded as ``qr:<scene>``; no scene is ``organic``.
    scenes: dict[str, str] = Field(default_factory=dict)


class SecuritySettings(_Section):
    """Keys for personal data at rest: AES-GCM for mobiles, HMAC for their lookup hash."""

    # 32 bytes, base64 or 64 hex characters; "${SCRM_MOBILE_KEY}" keeps them out of files.
    mobile_key: str = ""
    mobile_hmac_key: str = ""

    @field_validator("mobile_key", "mobile_hmac_key")
    @classmethod
    def _key_shape(cls, value: str) -> str:
        if value and not (
            re.fullmatch(r"[0-9a-fA-F]{64}", value) or re.fullmatch(r"[A-Za-z0-9+/]{43}=", value)
        ):
            raise ValueError("must be 32 bytes as 64 hex characters or base64 (44 characters)")
        return value


class NotifySettings(_Section):
    """Service notices (DESIGN §5): template ids per notice and the daily template quota."""

    # Notice name (its message template, e.g. "tier_changed") → the OA template_id. A
    # notice without one is never sent as a template message.
    templates: dict[str, str] = Field(default_factory=dict)
    template_daily_quota: int = Field(default=100_000, ge=0)
