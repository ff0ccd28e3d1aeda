"""``python -m bot sop list|preview|run|history`` against a real database: the birthday
gift end to end (claimed, granted and enqueued once), dry runs claim nothing, bad input
is one line and exit 2."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from bot.cli import main
from storage.models import Coupon, Identity, Member, OutboxMessage, PointsEntry, SopRun, Touchpoint
from storage.models.members import OA_OPENID
from storage.repos import members as members_repo
from tests.cli_support import with_db, write_config
from tests.conftest import OA_APPID

SOP = """
[[rewards]]
code = "C10"
name = "10元无门槛券"
cost_points = 1000
coupon_value_fen = 1000
coupon_valid_days = 30

[[sop.rules]]
id = "birthday"
kind = "service"
trigger = { cron = "0 9 * * *" }
audience = { name = "birthday_today" }
action = { template = "sop_birthday", points = 200, coupon = "C10" }
once_per = "year"

[[sop.rules]]
id = "signin_streak"
kind = "marketing"
trigger = { cron = "0 20 * * *" }
audience = { name = "signed_in_yesterday_not_today" }
action = { template = "sop_signin_streak" }
once_per = "day"
"""
AT = "2027-05-20T09:00"


async def _birthday_member(openid: str, birthday: date) -> int:
    now = datetime.now(UTC)  # the CLI's clock is the real one: a window open right now
    row = await members_repo.create_with_identity(OA_OPENID, OA_APPID, openid, now=now)
    await Member.filter(id=row.id).update(
        birthday=birthday, birth_md=birthday.month * 100 + birthday.day
    )
    await Identity.filter(member_id=row.id).update(followed=True, last_message_at=now)
    return int(row.id)


async def _seed() -> tuple[int, int]:
    gift = await _birthday_member("oBirthday1", date(1990, 5, 20))
    other = await _birthday_member("oOther0001", date(1990, 5, 21))
    return gift, other


def test_birthday_run_grants_and_enqueues_once(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url, SOP)
    gift, other = with_db(db_url, _seed, fresh=True)
    capsys.readouterr()

    assert main(["--config", config, "sop", "preview", "birthday", "--at", AT]) == 0
    out = capsys.readouterr().out
    assert "1 members selected" in out
    assert "oa_cs 1" in out
    assert "sample message:" in out
    assert with_db(db_url, lambda: Touchpoint.all().count()) == 0  # a preview claims nothing

    assert main(["--config", config, "sop", "run", "birthday", "--at", AT, "--dry-run"]) == 0
    assert "dry run" in capsys.readouterr().out
    assert with_db(db_url, lambda: SopRun.all().count()) == 0

    assert main(["--config", config, "sop", "run", "birthday", "--at", AT]) == 0
    out = capsys.readouterr().out
    assert "selected 1, claimed 1" in out
    assert "oa_cs 1" in out

    assert main(["--config", config, "sop", "run", "birthday", "--at", AT]) == 0
    assert "already done: nothing done" in capsys.readouterr().out

    async def effects() -> tuple[list[int], int, int, list[str]]:
        touched = await Touchpoint.all().values_list("member_id", flat=True)
        earned = await PointsEntry.filter(member_id=gift, reason="birthday").count()
        coupons = await Coupon.filter(member_id=gift, source="sop").count()
        rows = await OutboxMessage.filter(member_id=gift).values_list("channel", flat=True)
        return [int(m) for m in touched], earned, coupons, [str(c) for c in rows]

    touched, earned, coupons, channels = with_db(db_url, effects)
    assert touched == [gift]
    assert (earned, coupons, channels) == (1, 1, ["oa_cs"])
    assert with_db(db_url, lambda: Member.get(id=gift)).points_balance == 200
    assert with_db(db_url, lambda: Member.get(id=other)).points_balance == 0

    assert main(["--config", config, "sop", "history", "birthday"]) == 0
    out = capsys.readouterr().out
    assert "2027-05-20 09:00  done (cli)" in out
    assert "selected 1, claimed 1" in out
    assert "messages: pending 1" in out  # no server ran: the row waits for the sender


def test_list_shows_every_sop_with_its_next_fire_time(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url, SOP)
    with_db(db_url, lambda: SopRun.all().count(), fresh=True)
    capsys.readouterr()
    assert main(["--config", config, "sop", "list"]) == 0
    out = capsys.readouterr().out
    assert "birthday" in out
    assert "signin_streak" in out
    assert "cron 0 9 * * *" in out
    assert "sop_birthday.j2 + 200 points + coupon C10" in out
    assert "; next " in out


def test_bad_input_is_one_line_and_exit_2(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url, SOP)
    with_db(db_url, lambda: SopRun.all().count(), fresh=True)
    capsys.readouterr()
    assert main(["--config", config, "sop", "run", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no SOP 'nope'" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["--config", config, "sop", "preview", "birthday", "--at", "soon"]) == 2
    assert "is not an ISO date" in capsys.readouterr().err


def test_a_bad_sop_stops_start_up_naming_its_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = SOP.replace('name = "birthday_today"', 'name = "birthday_tomorrow"')
    config = write_config(tmp_path, f"sqlite://{tmp_path / 'bad.sqlite3'}", bad)
    assert main(["--config", config, "sop", "list"]) == 2
    err = capsys.readouterr().err
    assert "sop.rules[birthday]" in err
    assert "birthday_tomorrow" in err


def test_an_unknown_tier_in_a_sop_stops_start_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = SOP.replace(
        'name = "birthday_today" }', 'name = "birthday_today", params = { tiers = ["golden"] } }'
    )
    config = write_config(tmp_path, f"sqlite://{tmp_path / 'bad.sqlite3'}", bad)
    assert main(["--config", config, "sop", "list"]) == 2
    err = capsys.readouterr().err
    assert "sop.rules[birthday]" in err
    assert "golden" in err
