"""The daily jobs under the scheduler: each fire time once, with its counts in SopRun."""

from __future__ import annotations

import tomllib
from datetime import datetime, timedelta
from pathlib import Path

from bot.app import Overrides, build_services
from bot.config_sop import DEFAULT_JOBS
from bot.context import Services
from bot.services import points
from bot.services.points_report import EXPIRE_ACTION, RECONCILE_ACTION
from sop.jobs import daily_jobs, evaluation_cron
from sop.leader import LocalLeadership
from sop.schedule import SopScheduler
from storage.cache import MemoryCache
from storage.models import AuditLog, Member, SopRun, StaffCustomer
from storage.models.members import Tag
from tests.conftest import base_config, make_settings
from tests.fakes import FakeWall
from tests.test_sop_schedule import SH

NEW_YEAR = datetime(2027, 1, 1, 4, 0, tzinfo=SH)  # after every job's fire time that night


async def test_the_daily_jobs_run_once_each_and_record_counts(
    services: Services, wall: FakeWall
) -> None:
    earned = datetime(2025, 6, 1, 10, 0, tzinfo=SH)
    member = await Member.create(code="MJOBS01", created_at=earned)
    await points.earn(
        member.id, 100, "o1", now=earned, expires_at=points.lot_expiry(earned, SH),
        reason="order", source="test",
    )  # fmt: skip
    wall.now = NEW_YEAR.timestamp()
    scheduler = SopScheduler(None, services, LocalLeadership(), daily_jobs(services))
    assert await scheduler.keep_lease()

    first = await scheduler.tick(services.clock.now())
    again = await scheduler.tick(services.clock.now() + timedelta(minutes=30))
    daily = [s for s, _ in first.fired if s != "job:wecom_tasks"]
    # every 15 minutes: one run covers the quarter hours the catch-up found
    assert [s for s, _ in first.fired].count("job:wecom_tasks") == 1
    covered = await SopRun.filter(sop_id="job:wecom_tasks", status="missed").count()
    assert covered == await SopRun.filter(note__startswith="covered by").count() > 0
    assert sorted(daily) == [
        "job:coupons_expire",
        "job:points_expire",
        "job:points_reconcile",
        "job:tiers_evaluate",
        "job:wecom_sync",
    ]
    assert {s for s, _ in again.fired} == {"job:wecom_tasks"}
    rows = {r.sop_id: r for r in await SopRun.filter(status__not="missed")}
    assert {r.status for r in rows.values()} == {"done"}
    assert rows["job:points_expire"].counts == {"entries": 1, "points": 100}
    assert rows["job:coupons_expire"].counts == {"expired": 0}
    assert rows["job:wecom_tasks"].counts == {"settled": 0}
    assert rows["job:points_reconcile"].counts["breaks"] == 0
    assert rows["job:tiers_evaluate"].counts["already_done"] == 0
    sync = rows["job:wecom_sync"].counts
    assert sync["tags"] == await Tag.filter(wecom_tag_id__not="").count() > 0
    assert sync["customers_relations"] == await StaffCustomer.all().count() > 0
    assert sync["groups_groups"] == 1
    assert rows["job:points_expire"].fire_time == datetime(2027, 1, 1, 0, 5, tzinfo=SH)
    actions = await AuditLog.filter(actor="scheduler").values_list("action", flat=True)
    assert sorted(actions) == sorted([EXPIRE_ACTION, RECONCILE_ACTION])


def test_jobs_follow_the_settings(services: Services) -> None:
    names = {j.name: j.cron for j in daily_jobs(services)}
    assert names["tiers_evaluate"] == "20 0 1 1 *"
    raw = base_config()
    del raw["wecom"]
    settings = make_settings(
        raw,
        sop={"jobs": {"coupons_expire": "", "points_reconcile": "0 4 * * 1"}},
        membership={"evaluation_day": "04-01"},
    )
    assert evaluation_cron(settings.membership) == "20 0 1 4 *"
    made = build_services(settings, Overrides(cache=MemoryCache()))
    assert {j.name: j.cron for j in daily_jobs(made)} == {
        "points_expire": "5 0 * * *",
        "tiers_evaluate": "20 0 1 4 *",
        "points_reconcile": "0 4 * * 1",
    }


def test_the_example_settings_document_the_job_defaults() -> None:
    text = (Path(__file__).parent.parent / "config.example.toml").read_text(encoding="utf-8")
    block = text.split("# [sop.jobs]\n", 1)[1].split("\n\n", 1)[0]
    documented = tomllib.loads("\n".join(line[2:] for line in block.splitlines() if "=" in line))
    assert documented == DEFAULT_JOBS
