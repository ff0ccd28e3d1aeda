"""``scrm_points_breaks``: the breaks of the latest recorded ``points reconcile``.

Read from the newest ``points.reconcile`` AuditLog row when /metrics is scraped, at most
once per ``every`` seconds (scrapes come every 15–60 s; a reconcile runs daily), so a
scrape costs at most one indexed query and a database outage never fails the scrape.
"""

from __future__ import annotations

import logging

from bot.metrics import Metrics
from bot.services import points_report

log = logging.getLogger("bot.metrics")
REFRESH_SECONDS = 60.0


async def refresh_points_breaks(
    metrics: Metrics, now: float, every: float = REFRESH_SECONDS
) -> None:
    """Set the gauge from the latest recorded reconcile unless read within ``every`` s."""
    last = metrics.points_breaks_read_at
    if last is not None and now - last < every:
        return
    metrics.points_breaks_read_at = now
    try:
        breaks = await points_report.latest_breaks()
    except Exception:  # the scrape must still answer; the old value stays
        log.exception("could not read the latest points reconcile")
        return
    metrics.points_breaks.set(breaks or 0)
