"""Once-per windows as occurrence keys: the third column of a Touchpoint's unique key.

Calendar windows name the bucket of the business date (``2027-05-20``, ``2027-W20``,
``2027-05``, ``2027``, ``ever``). A sliding ``N days`` window keys on the date itself, and
the audience adds ``NOT EXISTS`` on the SOP's touchpoints created on the last N business
days (the fire date included).
Some audiences override the key (reactivation: the last active date and the step;
points expiry: the lots' expiry date).
"""

from __future__ import annotations

from datetime import date

from bot.config_sop import SopRule


def bucket(rule: SopRule, day: date) -> str:
    """The occurrence key of ``rule``'s once-per window holding business date ``day``."""
    window = rule.once_per
    if window == "day" or rule.sliding_days is not None:
        return day.isoformat()
    if window == "week":
        iso = day.isocalendar()
        return f"{iso.year}-W{iso.week:02d}"
    if window == "month":
        return f"{day.year}-{day.month:02d}"
    if window == "year":
        return str(day.year)
    return "ever"
