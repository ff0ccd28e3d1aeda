"""The report of a broadcast: its rows by channel and status with reasons, per staff.

sent / failed / unknown / skipped (and the other outbox statuses) per channel, each with
its reasons; WeCom rows (customers, or customer groups per owner) also per staff member
(a task is each staff member's to send);
mass-send rows end ``submitted`` and the platform reports totals per call, so oa_mass
reports the MASSSENDJOBFINISH totals of its MassJob rows; plus the expected reach.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STAFF_CHANNELS = frozenset({"wecom_customer", "wecom_group"})


def _add(bucket: dict[str, Any], status: str, reason: str, n: int) -> None:
    entry = bucket.setdefault(status, {"count": 0, "reasons": {}})
    entry["count"] += n
    if reason:
        entry["reasons"][reason] = entry["reasons"].get(reason, 0) + n


def build(
    status: Mapping[str, Any],
    reach: Mapping[str, Any],
    counts: list[dict[str, Any]],
    mass: Mapping[str, int] | None,
) -> dict[str, Any]:
    """The report from the status, the stored reach, the row counts and the mass totals."""
    channels: dict[str, dict[str, Any]] = {}
    staff: dict[str, dict[str, int]] = {}
    for c in counts:
        n, reason = int(c["n"]), str(c["reason"])
        _add(channels.setdefault(str(c["channel"]), {}), str(c["status"]), reason, n)
        if c["channel"] in STAFF_CHANNELS and c["staff_userid"]:
            per = staff.setdefault(str(c["staff_userid"]), {})
            per[str(c["status"])] = per.get(str(c["status"]), 0) + n
    report: dict[str, Any] = {
        **status,
        "reach": {k: v for k, v in reach.items() if k != "enqueued"},
        "channels": channels,
    }
    if staff:
        report["staff"] = {k: dict(sorted(v.items())) for k, v in sorted(staff.items())}
    if mass is not None:
        report["mass"] = dict(mass)
    return report
