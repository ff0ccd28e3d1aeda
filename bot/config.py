"""Settings: one TOML file, validated by pydantic, frozen, unknown keys rejected.

Any string value written as ``"${NAME}"`` is read from the environment variable NAME,
so secrets need not live in the file. ``SCRM_DATABASE_URL`` and ``SCRM_REDIS_URL``
override ``[database] url`` and ``[redis] url``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bot.config_commerce import AdminSettings, RewardConfig, unique_reward_codes
from bot.config_outbound import OutboundSettings
from bot.config_privacy import PrivacySettings
from bot.config_program import (
    ChatSettings,
    MemberDaySettings,
    MembershipSettings,
    NotifySettings,
    OaSettings,
    PointsSettings,
    ReferralSettings,
    SecuritySettings,
    SignInSettings,
)
from bot.config_sms import SmsSettings
from bot.config_sop import SopSettings
from bot.config_wecom import ContactWayConfig, StaffSeed

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
AES_KEY_LENGTH = 43


class ConfigError(Exception):
    """A configuration problem, naming the file and the key."""

    def __init__(self, path: str, key: str, message: str) -> None:
        super().__init__(f"{path}: {key}: {message}" if key else f"{path}: {message}")
        self.path = path
        self.key = key


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_aes_key(value: str) -> str:
    if value and len(value) != AES_KEY_LENGTH:
        raise ValueError(f"must be {AES_KEY_LENGTH} characters (got {len(value)})")
    return value


class ServerSettings(_Section):
    """HTTP server and callback intake limits."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    body_limit: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)
    reply_budget_seconds: float = Field(default=4.0, gt=0, le=4.5)
    timestamp_tolerance_seconds: int = Field(default=300, ge=30, le=3600)
    dedupe_ttl_seconds: int = Field(default=900, ge=60)


class OfficialAccountSettings(_Section):
    """One Official Account (公众号); the table name is the URL name: /wechat/{name}."""

    appid: str = Field(min_length=1)
    secret: str = ""
    token: str = Field(min_length=3, max_length=32)
    encoding_aes_key: str = ""
    previous_encoding_aes_key: str = ""
    mode: Literal["plaintext", "compatible", "safe"] = "safe"
    type: Literal["subscription", "service"] = "subscription"
    verified: bool = False

    _aes = field_validator("encoding_aes_key", "previous_encoding_aes_key")(_check_aes_key)

    @model_validator(mode="after")
    def _key_for_encrypted_modes(self) -> OfficialAccountSettings:
        if self.mode != "plaintext" and not self.encoding_aes_key:
            raise ValueError(f"encoding_aes_key is required in {self.mode} mode")
        return self


class WeComSettings(_Section):
    """The WeCom corp (企业微信): the self-built app and 客户联系."""

    name: str = Field(default="default", pattern=r"^[A-Za-z0-9_-]+$")
    corp_id: str = Field(min_length=1)
    agent_id: int = 0
    agent_secret: str = ""
    contact_secret: str = ""
    token: str = Field(min_length=3, max_length=32)
    encoding_aes_key: str = Field(min_length=AES_KEY_LENGTH)
    previous_encoding_aes_key: str = ""
    # State of a contact way (联系我) → its welcome template and channel; a State not
    # listed gets ``default_welcome`` and the State itself as the channel.
    contact_ways: dict[str, ContactWayConfig] = Field(default_factory=dict)
    default_welcome: str = Field(default="wecom_welcome", pattern=r"^[a-z0-9_]+$")
    # Staff who may use the agent's chat-ops (seeded into the Staff table on start).
    staff: list[StaffSeed] = Field(default_factory=list)
    # The corp's 群发规则 (企业微信 → 群发助手 → 设置群发规则): each customer and customer
    # group receives at most as many group messages a month as the month has days
    # ("month", WeCom's default), 7 a week ("week") or 1 a day ("day"). Broadcasts exclude
    # those whose limit is used.
    receive_rule: Literal["month", "week", "day"] = "month"
    # The corp tag group that tags staff name in the agent chat (标签) are created in.
    tag_group: str = Field(default="SCRM", min_length=1, max_length=30)

    _aes = field_validator("encoding_aes_key", "previous_encoding_aes_key")(_check_aes_key)

    @field_validator("staff")
    @classmethod
    def _unique_staff(cls, value: list[StaffSeed]) -> list[StaffSeed]:
        ids = [s.userid for s in value]
        if len(set(ids)) != len(ids):
            raise ValueError("staff userids must be unique")
        return value


class ApiSettings(_Section):
    """Base URLs of every WeChat API (pointed at the fake platform in development)."""

    oa_base_url: str = "https://api.weixin.qq.com"
    wecom_base_url: str = "https://qyapi.weixin.qq.com"
    mp_base_url: str = "https://mp.weixin.qq.com"
    timeout_seconds: float = Field(default=10.0, gt=0)


class DatabaseSettings(_Section):
    """Relational storage: SQLite (embedded default) or PostgreSQL."""

    url: str = "sqlite://data/scrm.sqlite3"

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgres://", "postgresql://", "asyncpg://")):
            raise ValueError("must start with sqlite:// or postgres://")
        return value


class RedisSettings(_Section):
    """Shared cache, locks and rate limits; empty means in-process.

    ``timeout_seconds`` bounds every read and write (and each pipeline of the callback hot
    path): a Redis that stops answering fails those calls instead of stalling callbacks.
    """

    url: str = ""
    timeout_seconds: float = Field(default=1.0, gt=0, le=30)
    connect_timeout_seconds: float = Field(default=1.0, gt=0, le=30)


class BusinessSettings(_Section):
    """Business rules that are not membership amounts."""

    timezone: str = "Asia/Shanghai"
    rate_limit_per_minute: int = Field(default=20, ge=1)
    inbound_retention_days: int = Field(default=30, ge=1)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class DevSettings(_Section):
    """Development aids; never enable in production."""

    fake_platform: bool = False
    time_travel: bool = False
    slow_keyword: str = ""
    slow_seconds: float = Field(default=6.0, ge=0)


class WorkerSettings(_Section):
    """Outbound sender placement."""

    embedded: bool = True


class LogSettings(_Section):
    """Structured logging."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"


class Settings(_Section):
    """Everything the server needs, loaded once by the entry point and passed down."""

    server: ServerSettings = ServerSettings()
    accounts: dict[str, OfficialAccountSettings] = Field(default_factory=dict)
    wecom: WeComSettings | None = None
    api: ApiSettings = ApiSettings()
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    business: BusinessSettings = BusinessSettings()
    dev: DevSettings = DevSettings()
    worker: WorkerSettings = WorkerSettings()
    log: LogSettings = LogSettings()
    membership: MembershipSettings = MembershipSettings()
    points: PointsSettings = PointsSettings()
    signin: SignInSettings = SignInSettings()
    member_day: MemberDaySettings = MemberDaySettings()
    referral: ReferralSettings = ReferralSettings()
    chat: ChatSettings = ChatSettings()
    oa: OaSettings = OaSettings()
    security: SecuritySettings = SecuritySettings()
    notify: NotifySettings = NotifySettings()
    admin: AdminSettings = AdminSettings()
    sms: SmsSettings = SmsSettings()
    privacy: PrivacySettings = PrivacySettings()
    rewards: list[RewardConfig] = Field(default_factory=list)
    sop: SopSettings = SopSettings()
    outbound: OutboundSettings = OutboundSettings()

    @field_validator("rewards")
    @classmethod
    def _reward_codes(cls, value: list[RewardConfig]) -> list[RewardConfig]:
        return unique_reward_codes(value)

    @field_validator("accounts")
    @classmethod
    def _account_names(
        cls, value: dict[str, OfficialAccountSettings]
    ) -> dict[str, OfficialAccountSettings]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
                raise ValueError(f"account name {name!r} must be letters, digits, - or _")
        return value

    @property
    def tz(self) -> ZoneInfo:
        """The business time zone."""
        return ZoneInfo(self.business.timezone)


def load_settings(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    """Read, resolve ``${ENV}`` references in, and validate a TOML settings file."""
    env = os.environ if env is None else env
    name = str(path)
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(name, "", "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(name, "", f"invalid TOML: {exc}") from None
    raw = _with_rules_file(raw, Path(path).parent)
    return settings_from_dict(raw, env, name)


def _with_rules_file(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """Append the ``[[rules]]`` of ``[sop] rules_file`` (relative to the settings file)."""
    sop = raw.get("sop")
    if not isinstance(sop, dict) or not sop.get("rules_file"):
        return raw
    rules_path = base / str(sop["rules_file"])
    try:
        with open(rules_path, "rb") as fh:
            extra = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(str(rules_path), "", "SOP rules file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(rules_path), "", f"invalid TOML: {exc}") from None
    unknown = set(extra) - {"rules"}
    if unknown or not isinstance(extra.get("rules", []), list):
        raise ConfigError(str(rules_path), ",".join(sorted(unknown)), "only [[rules]] tables")
    rules = [*sop.get("rules", []), *extra.get("rules", [])]
    return {**raw, "sop": {**sop, "rules": rules}}


def settings_from_dict(raw: Mapping[str, Any], env: Mapping[str, str], name: str) -> Settings:
    """Validate an already-parsed settings mapping; errors name ``name`` and the key."""
    data = _resolve_env(dict(raw), env, name, "")
    for section, var in (("database", "SCRM_DATABASE_URL"), ("redis", "SCRM_REDIS_URL")):
        if env.get(var):
            data.setdefault(section, {})
            data[section] = {**data[section], "url": env[var]}
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in _named_loc(err["loc"], data))
        raise ConfigError(name, key, _message(err)) from None


def _named_loc(loc: tuple[Any, ...], data: Mapping[str, Any]) -> tuple[Any, ...]:
    """``sop.rules.3.trigger`` → ``sop.rules[birthday].trigger``: errors name the SOP id."""
    if len(loc) >= 3 and loc[:2] == ("sop", "rules") and isinstance(loc[2], int):
        rules = data.get("sop", {}).get("rules", [])
        if loc[2] < len(rules) and isinstance(rules[loc[2]], dict) and rules[loc[2]].get("id"):
            return ("sop", f"rules[{rules[loc[2]]['id']}]", *loc[3:])
    return loc


def _message(err: Mapping[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _resolve_env(value: Any, env: Mapping[str, str], name: str, key: str) -> Any:
    if isinstance(value, dict):
        return {k: _resolve_env(v, env, name, f"{key}.{k}" if key else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env(v, env, name, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str) and (match := _ENV_REF.match(value)):
        var = match.group(1)
        if var not in env:
            raise ConfigError(name, key, f"environment variable {var} is not set")
        return env[var]
    return value
