"""Business-calendar rules: member days, birthdays, the yearly evaluation date."""

from __future__ import annotations

import calendar
from datetime import date

from bot.config_program import MemberDaySettings, MembershipSettings


def _clamped(year: int, month: int, day: int) -> date:
    """``day`` of the month, or the month's last day when it has fewer days."""
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))


def member_day(settings: MemberDaySettings, year: int, month: int) -> date:
    """The member day of a month (day 31 falls back to the month's last day)."""
    return _clamped(year, month, settings.day)


def is_member_day(settings: MemberDaySettings, day: date) -> bool:
    """True when ``day`` is the month's member day (and member days are enabled)."""
    return settings.enabled and member_day(settings, day.year, day.month) == day


def day_multiplier(settings: MemberDaySettings, day: date) -> int:
    """The member-day multiplier (per mille) on ``day``: 1000 on other days."""
    return settings.multiplier_per_mille if is_member_day(settings, day) else 1000


def birthday_in(year: int, birthday: date) -> date:
    """The birthday's date in a year (29 February → 28 February in other years)."""
    return _clamped(year, birthday.month, birthday.day)


def next_evaluation(settings: MembershipSettings, today: date) -> date:
    """The first yearly evaluation day after ``today``."""
    month, day = (int(x) for x in settings.evaluation_day.split("-"))
    this_year = date(today.year, month, day)
    return this_year if this_year > today else date(today.year + 1, month, day)
