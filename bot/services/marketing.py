"""The marketing policy (DESIGN §5): quiet hours and the per-member cap.

Opt-out is the member's ``marketing_opt_out`` flag, checked by the caller; this module
answers the two questions that need a clock or the outbox: is it quiet now (and until
when), and has the member had their share of marketing messages lately. SOP touches and
broadcasts both use it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.config_sop import SopSettings
from storage.models import OutboxMessage
from storage.timeutil import utc

MARKETING = "marketing"
NOT_COUNTED = ("unreachable", "failed", "skipped", "cancelled")  # never reached the member


class MarketingPolicy:
    """Quiet hours in the business time zone and the marketing cap per member."""

    def __init__(self, sop_settings: SopSettings, tz: ZoneInfo) -> None:
        self.settings = sop_settings
        self.tz = tz

    def quiet_until(self, now: datetime) -> datetime | None:
        """The end of the quiet hours when ``now`` falls inside them, else None.

        The hours are business-local clock times; a window may cross midnight
        (22:00-08:00). The answer is aware, in the business time zone.
        """
        window = self.settings.quiet
        if window is None:
            return None
        start, end = window
        local = now.astimezone(self.tz)
        clock = local.time().replace(tzinfo=None)
        if start == end:
            return None
        if start < end:
            inside = start <= clock < end
            end_day = local.date()
        else:
            inside = clock >= start or clock < end
            end_day = local.date() + timedelta(days=1) if clock >= start else local.date()
        if not inside:
            return None
        return datetime.combine(end_day, end, self.tz)

    async def sent_recently(self, member_id: int, now: datetime) -> int:
        """Marketing outbox rows of the member within the cap's window (reached or not
        yet settled: ``unreachable``, ``failed``, ``skipped`` and ``cancelled`` rows do
        not count)."""
        since = now - timedelta(days=self.settings.marketing_cap_days)
        return (
            await OutboxMessage.filter(
                member_id=member_id, kind=MARKETING, created_at__gte=utc(since)
            )
            .exclude(status__in=NOT_COUNTED)
            .count()
        )

    async def capped(self, member_id: int, now: datetime) -> bool:
        """True when the member already had ``marketing_cap`` marketing messages within
        ``marketing_cap_days``."""
        return await self.sent_recently(member_id, now) >= self.settings.marketing_cap
