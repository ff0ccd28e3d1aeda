"""What a member sees about their points: balance, debt, soon-expiring points, history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.services import points
from storage.repos import member_view
from storage.repos import points as points_repo

RECENT = 5
# Reason codes (and, failing those, entry kinds) in member-facing words.
REASONS = {
    "signin": "签到",
    "sign_in": "签到",
    "purchase": "消费",
    "order": "消费",
    "referral": "邀请奖励",
    "invite": "邀请奖励",
    "birthday": "生日礼",
    "member_day": "会员日",
    "refund": "退款",
    "redeem": "兑换",
    "redemption": "兑换",
    "welcome": "新会员礼",
}
KINDS = {
    "earn": "获得",
    "spend": "使用",
    "reverse": "退款",
    "adjust": "调整",
    "expire": "过期",
}
_BY_KIND_ONLY = ("adjust", "expire")  # operator reasons are internal notes


@dataclass(frozen=True, slots=True)
class EntryLine:
    """One ledger entry as the member reads it."""

    label: str
    amount: int
    day: date


@dataclass(frozen=True, slots=True)
class PointsSummary:
    """Balance, debt, points expiring within ``window_days``, the latest entries."""

    balance: int
    debt: int
    expiring: int
    window_days: int
    entries: tuple[EntryLine, ...]


def label(kind: str, reason: str) -> str:
    """The human word for an entry: 签到, 消费, 邀请奖励, 过期, 调整, 退款 …"""
    if kind in _BY_KIND_ONLY:
        return KINDS[kind]
    return REASONS.get(reason.split(":", 1)[0], KINDS.get(kind, "其他"))


def window_end(now: datetime, tz: ZoneInfo, days: int) -> datetime:
    """The end of business day ``today + days``: a lot expiring at that midnight counts.

    ``expiring_between`` is half-open, so the bound is one microsecond past midnight.
    """
    last = now.astimezone(tz).date() + timedelta(days=days + 1)
    return datetime.combine(last, time(), tz) + timedelta(microseconds=1)


async def summary(member_id: int, now: datetime, tz: ZoneInfo, days: int) -> PointsSummary:
    """The member's points at ``now`` (the 积分 reply)."""
    totals = await points_repo.totals(member_id)
    balance, debt = totals if totals is not None else (0, 0)
    expiring = await points.expiring_between(now, window_end(now, tz, days), member_id)
    rows = await member_view.recent_entries(member_id, RECENT)
    return PointsSummary(balance, debt, expiring, days, tuple(_line(r, tz) for r in rows))


def _line(row: dict[str, Any], tz: ZoneInfo) -> EntryLine:
    at: datetime = row["created_at"]
    return EntryLine(
        label(row["kind"], row["reason"]), int(row["amount"]), at.astimezone(tz).date()
    )
