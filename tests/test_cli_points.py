"""``points expire`` across a year boundary, ``points reconcile`` (recorded, exit 1 on a
planted break), and the ``scrm_points_breaks`` gauge on /metrics."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from tortoise import connections

from bot.cli import main
from bot.services import points, points_report
from storage.models import AuditLog, Member, PointsEntry
from tests.cli_support import with_db, write_config
from tests.conftest import AppMaker, base_config, make_settings
from tests.fakes import FakeWall

SH = ZoneInfo("Asia/Shanghai")
EARNED = datetime(2025, 3, 1, 12, tzinfo=SH)
NEW_YEAR = datetime(2027, 1, 1, tzinfo=SH)  # the default expiry of points earned in 2025


async def _seed() -> int:
    member = await Member.create(code="CLIPTS01", created_at=EARNED)
    await points.earn(
        member.id, 40, "a", now=EARNED, expires_at=NEW_YEAR, reason="signin", source="t"
    )
    await points.earn(
        member.id, 25, "b", now=EARNED, expires_at=NEW_YEAR, reason="purchase", source="t"
    )
    later = datetime(2028, 1, 1, tzinfo=SH)
    await points.earn(member.id, 10, "c", now=EARNED, expires_at=later, reason="signin", source="t")
    await points.spend(member.id, 5, "s", now=EARNED, reason="redeem", source="mall")
    return int(member.id)


def test_expire_across_the_year_boundary(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url)
    member = with_db(db_url, _seed, fresh=True)
    capsys.readouterr()
    assert main(["--config", config, "points", "expire", "--at", "2026-12-31T23:59:59"]) == 0
    assert "expired 0 points in 0 entries" in capsys.readouterr().out
    assert main(["--config", config, "points", "expire", "--at", "2027-01-01"]) == 0
    assert "expired 60 points in 2 entries" in capsys.readouterr().out  # 40 − 5 spent, 25
    assert main(["--config", config, "points", "expire", "--at", "2027-01-01T00:00:00+08:00"]) == 0
    assert "expired 0 points in 0 entries" in capsys.readouterr().out
    assert with_db(db_url, lambda: points.repo.totals(member)) == (10, 0)
    kinds = with_db(db_url, lambda: PointsEntry.filter(kind="expire").count())
    assert kinds == 2
    runs = with_db(db_url, lambda: AuditLog.filter(action="points.expire").order_by("id"))
    assert [(r.detail["entries"], r.detail["points"]) for r in runs] == [(0, 0), (2, 60), (0, 0)]
    assert runs[1].detail["due"] == "2027-01-01T00:00:00+08:00"
    assert main(["--config", config, "points", "expire", "--at", "next year"]) == 2
    assert "is not an ISO date" in capsys.readouterr().err


async def _plant_break(member: int) -> None:
    await connections.get("default").execute_query(
        f"UPDATE member SET points_balance = points_balance + 7 WHERE id = {member}"  # noqa: S608
    )


async def _reconcile_rows() -> list[AuditLog]:
    return await AuditLog.filter(action="points.reconcile").order_by("id")


def test_reconcile_records_and_fails_on_a_planted_break(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url, "[points]\npoints_per_yuan_value = 10\n")
    member = with_db(db_url, _seed, fresh=True)
    start, _ = points_report.next_month(datetime.now(SH), SH)
    capsys.readouterr()
    assert main(["--config", config, "points", "reconcile"]) == 0
    out = capsys.readouterr().out
    assert "0 breaks" in out
    assert "outstanding 70 points (liability ¥7.00)" in out
    assert f"expiring in {start:%Y-%m}:" in out
    with_db(db_url, lambda: _plant_break(member))
    assert main(["--config", config, "points", "reconcile", "--actor", "ops"]) == 1
    out = capsys.readouterr().out
    assert f"break member {member}: balance 77 debt 0 open lots 70 entries 70" in out
    assert "1 breaks" in out
    clean, broken = with_db(db_url, _reconcile_rows)
    assert clean.detail["breaks"] == 0
    assert clean.actor == "cli"
    assert broken.detail == {
        "breaks": 1,
        "members": [member],
        "outstanding": 77,
        "next_month_expiry": broken.detail["next_month_expiry"],
    }
    assert broken.actor == "ops"
    assert broken.target == "points"


async def test_metrics_export_the_latest_recorded_breaks(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)

    async def scrape() -> str:
        resp = await client.get("/metrics")
        lines = [
            ln for ln in (await resp.text()).splitlines() if ln.startswith("scrm_points_breaks ")
        ]
        return lines[0]

    assert await scrape() == "scrm_points_breaks 0.0"  # never reconciled
    member = await Member.create(code="METRIC01", created_at=EARNED)
    await points.earn(
        member.id, 5, "m", now=EARNED, expires_at=NEW_YEAR, reason="signin", source="t"
    )
    await _plant_break(member.id)
    await points_report.reconcile(EARNED, SH, "test")
    wall.advance(61)
    assert await scrape() == "scrm_points_breaks 1.0"
    await Member.filter(id=member.id).update(points_balance=5)
    await points_report.reconcile(EARNED, SH, "test")
    assert await scrape() == "scrm_points_breaks 1.0"  # read at most once a minute
    wall.advance(61)
    assert await scrape() == "scrm_points_breaks 0.0"
