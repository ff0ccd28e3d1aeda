"""Chinese labels for broadcast states, channels, row statuses and reasons, and the view
of a reach, a status or a report that the chat templates (staff_broadcast*) format.

Reasons are the service's own English strings (``bot.services.broadcast_sql``, outbox
errors); known ones read in Chinese, anything else is shown as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.services.broadcast_sql import (
    MARKETING_CAP,
    MASS_LIMIT,
    NO_STAFF,
    NO_WINDOW,
    OPTED_OUT,
    RECEIVE_PERIODS,
    UNFOLLOWED,
)
from storage.repos.broadcasts import OPEN

STATES = {
    "draft": "草稿",
    "scheduled": "已定时",
    "sending": "发送中",
    "paused": "已暂停",
    "done": "已完成",
    "cancelled": "已取消",
}
CHANNELS = {
    "oa_cs": "公众号客服消息",
    "oa_template": "公众号模板消息",
    "oa_mass": "公众号群发",
    "wecom_customer": "企业微信客户群发",
    "wecom_group": "企业微信客户群群发",
}
STATUSES = {
    "sent": "已送达",
    "failed": "失败",
    "unknown": "结果未知",
    "skipped": "跳过",
    "submitted": "已提交群发",
    "cancelled": "已取消",
    "unreachable": "无法触达",
    "awaiting_staff": "待员工确认",
    "pending": "待发送",
    "held": "暂停中",
    "sending": "发送中",
}
REASONS = {
    OPTED_OUT: "已退订",
    UNFOLLOWED: "未关注公众号",
    NO_WINDOW: "没有客服消息窗口或额度已用完",
    MASS_LIMIT: "本月 4 次群发已用完",
    NO_STAFF: "没有在职的跟进员工",
    MARKETING_CAP: "近期营销消息已达上限",
    "cancelled": "群发已取消",
}
# The order report lines follow: what reached members first.
_ORDER = ("sent", "submitted", "awaiting_staff", "failed", "unknown", "skipped", "unreachable")


def label(table: Mapping[str, str], key: str) -> str:
    """The Chinese label of ``key``, or ``key`` itself."""
    return table.get(key, key)


_PERIODS_ZH = {"this month": "本月", "this week": "本周", "today": "今天"}
_RECEIVE = re.compile(r"^WeCom receive limit: (\d+) group messages (.+) already$")


def reason_label(reason: str) -> str:
    """A reason in Chinese: the fixed ones from REASONS, the WeCom receive limit with its
    cap and period (``broadcast_sql.receive_limit``, e.g. 本周已收到 7 条企业群发)."""
    found = _RECEIVE.match(reason)
    if found is not None and found.group(2) in RECEIVE_PERIODS.values():
        return f"{_PERIODS_ZH[found.group(2)]}已收到 {found.group(1)} 条企业群发，已达上限"
    return label(REASONS, reason)


@dataclass(frozen=True, slots=True)
class Line:
    """One status (or exclusion) with its count and reasons, labelled."""

    name: str
    count: int
    reasons: list[tuple[str, int]] = field(default_factory=list)


def reasons(found: Mapping[str, int]) -> list[tuple[str, int]]:
    """(label, n) of each reason, the largest first."""
    ordered = sorted(found.items(), key=lambda kv: (-int(kv[1]), kv[0]))
    return [(reason_label(r), int(n)) for r, n in ordered]


def progress(rows: Mapping[str, int]) -> tuple[int, int]:
    """(rows settled, rows to send): skipped rows never were to send."""
    open_rows = sum(int(rows.get(s, 0)) for s in OPEN)
    settled = sum(int(n) for s, n in rows.items() if s not in OPEN and s != "skipped")
    return settled, settled + open_rows


def percent(rows: Mapping[str, int]) -> int:
    """Settled rows as a whole percentage of the rows to send (100 when there are none)."""
    settled, total = progress(rows)
    return 100 if total == 0 else settled * 100 // total


def status_lines(rows: Mapping[str, int]) -> list[Line]:
    """Row counts per status, labelled, in report order."""
    keys = sorted(rows, key=lambda s: (_ORDER.index(s) if s in _ORDER else len(_ORDER), s))
    return [Line(label(STATUSES, s), int(rows[s])) for s in keys if rows[s]]


def channel_view(report: Mapping[str, Any]) -> list[tuple[str, list[Line]]]:
    """Per channel: its statuses with their reasons (from ``BroadcastService.report``)."""
    out = []
    for channel, statuses in sorted(report.get("channels", {}).items()):
        keys = sorted(statuses, key=lambda s: (_ORDER.index(s) if s in _ORDER else 99, s))
        lines = [
            Line(label(STATUSES, s), int(statuses[s]["count"]), reasons(statuses[s]["reasons"]))
            for s in keys
        ]
        out.append((label(CHANNELS, channel), lines))
    return out


def staff_view(report: Mapping[str, Any]) -> list[tuple[str, list[Line]]]:
    """WeCom rows per staff member (their tasks), labelled."""
    return [(userid, status_lines(rows)) for userid, rows in report.get("staff", {}).items()]
