"""Injected clocks: a wall clock for signature freshness, a business clock for rules.

The business clock may carry a dev-only offset (``/time +1d`` in the simulator) so a
newcomer can walk through streaks and expiries; it refuses to move unless the
``[dev] time_travel`` setting allows it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo


class WallClock:
    """Real time, used only to check callback timestamps."""

    def __init__(self, source: Callable[[], float] = time.time) -> None:
        self._source = source

    def time(self) -> float:
        """Seconds since the epoch."""
        return self._source()


class TimeTravelNotAllowed(RuntimeError):
    """The business clock can only move under ``[dev] time_travel = true``."""


class BusinessClock:
    """Timezone-aware 'now' in the business time zone, used by every domain rule."""

    def __init__(
        self,
        tz: ZoneInfo,
        *,
        allow_offset: bool = False,
        source: Callable[[], float] = time.time,
    ) -> None:
        self.tz = tz
        self.allow_offset = allow_offset
        self._source = source
        self._offset = timedelta(0)

    def now(self) -> datetime:
        """The current business time (aware)."""
        return datetime.fromtimestamp(self._source(), self.tz) + self._offset

    def today(self) -> date:
        """The business-local date."""
        return self.now().date()

    @property
    def offset(self) -> timedelta:
        """How far the dev offset has moved the clock."""
        return self._offset

    def shift(self, delta: timedelta) -> None:
        """Move the clock (dev only)."""
        if not self.allow_offset:
            raise TimeTravelNotAllowed("time travel needs [dev] time_travel = true")
        self._offset += delta

    def reset(self) -> None:
        """Return to real time."""
        self._offset = timedelta(0)
