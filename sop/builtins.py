"""The built-in SOPs as rules (data), with the audiences that select their members.

The operator's ``[sop]`` rules may replace any of them by id. Triggers are cron times in
business time; the member day is a daily 10:00 trigger whose audience selects nobody
unless the date is the month's member day (a cron such as ``30,last`` would fire twice).
``welcome_series`` is an event trigger: the engine touches the subscribing member after
each delay.
"""

from __future__ import annotations

from typing import Any

from bot.config_sop import SopRule


def _rule(
    sop_id: str, kind: str, trigger: dict[str, Any], audience: str, once_per: str, **action: Any
) -> SopRule:
    name, _, params = audience.partition(":")
    return SopRule.model_validate(
        {
            "id": sop_id,
            "kind": kind,
            "trigger": trigger,
            "audience": {"name": name, "params": _params(params)},
            "action": {"template": f"sop_{sop_id}", **action},
            "once_per": once_per,
        }
    )


def _params(text: str) -> dict[str, Any]:
    """``days=30`` or ``days=30,60`` (a list when it has several values)."""
    if not text:
        return {}
    key, _, value = text.partition("=")
    numbers = [int(v) for v in value.split(",")]
    return {key: numbers if len(numbers) > 1 else numbers[0]}


DAILY_10 = {"cron": "0 10 * * *"}
BUILTIN_RULES: tuple[SopRule, ...] = (
    _rule(
        "signin_streak",
        "marketing",
        {"cron": "0 20 * * *"},
        "signed_in_yesterday_not_today",
        "day",
    ),
    _rule("birthday", "service", {"cron": "0 9 * * *"}, "birthday_today", "year", points=100),
    _rule("member_day", "marketing", DAILY_10, "member_day_active", "month"),
    _rule("reactivation", "marketing", DAILY_10, "inactive:days=30,60", "ever"),
    _rule(
        "welcome_series",
        "marketing",
        {"event": "first_subscribe", "delays": ["1d", "3d", "7d"]},
        "all",
        "ever",
    ),
    _rule("points_expiry", "service", DAILY_10, "points_expiring:days=30", "ever"),
    _rule("tier_warning", "service", DAILY_10, "tier_warning:days=30", "year"),
)


def builtin(sop_id: str) -> SopRule:
    """The built-in rule with this id (KeyError otherwise)."""
    for rule in BUILTIN_RULES:
        if rule.id == sop_id:
            return rule
    raise KeyError(sop_id)
