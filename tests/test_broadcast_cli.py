"""``python -m bot broadcast …`` end to end: a saved segment, a broadcast sent through the
fake platform by a real sender in the CLI's process with the progress bar, the report;
pause/resume/cancel and the no-sender hint; bad input as one line with exit 2."""

from __future__ import annotations

import asyncio
import io
import json
import re
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.appkeys import SERVICES
from bot.cli import main
from bot.cli_broadcast import NO_SENDER
from bot.clock import BusinessClock, WallClock
from bot.config import load_settings
from bot.devtools.fake.app import create_fake_app
from bot.devtools.fake.platform import FakePlatform
from bot.progress import ProgressBar
from storage.models import AuditLog, Broadcast, Identity, Member, OutboxMessage
from storage.models.members import OA_OPENID
from tests.broadcast_support import members
from tests.cli_support import with_db, write_config
from tests.conftest import AppMaker, FakeServer, api_headers, base_config, make_settings
from tests.fakes import FakeWall

APPID = "wx2c2769f8efd9abc2"  # the brand account of tests.cli_support.write_config
CUSTOM = "cgi-bin/message/custom/send"
GOLD = 'all = [{ field = "tier", in = ["gold"] }]\n'
# The CLI runs on the real clock: no quiet hours, so marketing rows go whatever the hour.
QUIET = "[sop]\nquiet_hours = ''\n"
PROMO = ["--template", "broadcast_promo", "--var", "headline=双十一", "--var", "body=8 折"]


async def _seed(count: int) -> list[str]:
    """``count`` gold members following the brand account who wrote an hour ago."""
    now = datetime.now(UTC)
    openids = []
    for n in range(count):
        member = await Member.create(code=f"G{n:04d}", tier="gold", created_at=now)
        openid = f"oCli{n:04d}"
        await Identity.create(
            kind=OA_OPENID,
            app=APPID,
            value=openid,
            member_id=member.id,
            followed=True,
            last_message_at=now - timedelta(hours=1),
            created_at=now,
        )
        openids.append(openid)
    return openids


async def _run(config: str, *argv: str) -> int:
    return await asyncio.to_thread(main, ["--config", config, *argv])


def _created_id(out: str) -> int:
    found = re.search(r"broadcast (\d+) created", out)
    assert found, out
    return int(found.group(1))


async def test_create_start_send_and_report_against_the_fake(
    db_url: str, tmp_path: Path, aiohttp_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    openids = await asyncio.to_thread(with_db, db_url, lambda: _seed(3), fresh=True)
    platform = FakePlatform.from_settings(load_settings(write_config(tmp_path, db_url)))
    for openid in openids:
        platform.interaction(appid=APPID, openid=openid, kind="message")
    server = await aiohttp_server(create_fake_app(platform))
    url = str(server.make_url("")).rstrip("/")
    config = write_config(tmp_path, db_url, QUIET + f"[api]\noa_base_url = '{url}/oa'\n")
    rule = tmp_path / "gold.toml"
    rule.write_text(GOLD, encoding="utf-8")

    assert await _run(config, "segments", "save", "gold", "--rule", str(rule)) == 0
    create = ["broadcast", "create", "--name", "双十一", "--segment", "gold", "--channel", "oa_cs"]
    assert await _run(config, *create, *PROMO) == 0
    out = capsys.readouterr().out
    broadcast_id = _created_id(out)
    assert f"broadcast {broadcast_id} created (draft): oa_cs, marketing" in out
    assert "expected reach: 3 members, 3 reached" in out

    assert await _run(config, "broadcast", "preview", str(broadcast_id)) == 0
    assert "expected reach: 3 members, 3 reached" in capsys.readouterr().out

    start = ["broadcast", "start", str(broadcast_id), "--send", "--interval", "0.02"]
    assert await _run(config, *start, "--actor", "ops") == 0
    done = capsys.readouterr()
    assert f"broadcast {broadcast_id} sending: 3 members, 3 reached" in done.out
    assert done.out.splitlines()[-1] == f"broadcast {broadcast_id} done: sent 3"
    bar = done.err.splitlines()[-1]  # not a terminal: the final line of the bar only
    assert bar.startswith("  final ████████████████████████ 100% 3/3 ")
    assert bar.endswith("  sent 3")
    calls = platform.calls("oa", CUSTOM)
    assert Counter(str(c.body["touser"]) for c in calls if c.errcode == 0) == dict.fromkeys(
        openids, 1
    )
    assert all("双十一" in c.body["text"]["content"] for c in calls)

    assert await _run(config, "broadcast", "report", str(broadcast_id)) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"broadcast {broadcast_id} done",
        "reach: 3 members, 3 reached",
        "oa_cs: sent 3",
    ]
    assert await _run(config, "broadcast", "report", str(broadcast_id), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["state"], report["rows"]) == ("done", {"sent": 3})

    async def audit() -> list[tuple[str, str]]:
        rows = AuditLog.filter(target=f"broadcast:{broadcast_id}").order_by("id")
        return [(a.actor, a.action) for a in await rows]

    assert await asyncio.to_thread(with_db, db_url, audit) == [
        ("cli", "broadcast.create"),
        ("ops", "broadcast.sending"),
        ("system", "broadcast.done"),
    ]


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> str:
    with_db(db_url, lambda: _seed(2), fresh=True)
    (tmp_path / "gold.toml").write_text(GOLD, encoding="utf-8")
    return write_config(tmp_path, db_url, QUIET)


def _create(config: str, tmp_path: Path, *more: str) -> list[str]:
    rule = str(tmp_path / "gold.toml")
    base = ["--config", config, "broadcast", "create", "--name", "n", "--channel", "oa_cs"]
    return [*base, "--rule", rule, *PROMO, *more]


def test_pause_resume_cancel_and_the_no_sender_hint(
    config: str, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_create(config, tmp_path)) == 0
    broadcast_id = str(_created_id(capsys.readouterr().out))
    base = ["--config", config, "broadcast"]
    assert main([*base, "start", broadcast_id]) == 0
    assert "watch: broadcast status" in capsys.readouterr().out
    watch = [*base, "status", broadcast_id, "--watch", "--hint-after", "0", "--timeout", "0"]
    assert main(watch) == 1  # nothing sends on this database: a hint, not a silent hang
    stuck = capsys.readouterr()
    assert NO_SENDER in stuck.err
    assert "0/2" in stuck.err
    assert stuck.out.strip() == f"broadcast {broadcast_id} still sending after 0 s"

    assert main([*base, "pause", broadcast_id]) == 0
    assert main([*base, "status", broadcast_id, "--watch"]) == 0  # paused: the watch ends
    assert main([*base, "status", broadcast_id]) == 0
    assert main([*base, "resume", broadcast_id, "--actor", "ops"]) == 0
    assert main([*base, "cancel", broadcast_id]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"broadcast {broadcast_id} paused: 2 rows held",
        f"broadcast {broadcast_id} paused: held 2",
        f"broadcast {broadcast_id} 'n' (oa_cs, marketing): paused",
        "reach: 2 members, 2 reached",
        "rows: held 2",
        f"broadcast {broadcast_id} sending: 2 rows released",
        f"broadcast {broadcast_id} cancelled: 2 rows cancelled",
    ]

    async def states() -> tuple[str, Counter[str], list[str]]:
        b = await Broadcast.get(id=int(broadcast_id))
        rows = Counter(await OutboxMessage.all().values_list("status", flat=True))
        actors = await AuditLog.filter(action="broadcast.sending").values_list("actor", flat=True)
        return b.state, rows, sorted(actors)

    assert with_db(db_url, states) == ("cancelled", Counter(cancelled=2), ["cli", "ops"])


def test_the_watch_says_when_rows_wait_for_the_quiet_hours(
    config: str, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_create(config, tmp_path)) == 0
    broadcast_id = _created_id(capsys.readouterr().out)
    assert main(["--config", config, "broadcast", "start", str(broadcast_id)]) == 0
    morning = datetime(2099, 1, 2, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai

    async def postpone() -> int:  # what a sender does with marketing in the quiet hours
        return await OutboxMessage.filter(status="pending").update(
            due_at=morning, reason="quiet hours"
        )

    assert with_db(db_url, postpone) == 2
    watch = ["status", str(broadcast_id), "--watch", "--hint-after", "0", "--timeout", "0"]
    assert main(["--config", config, "broadcast", *watch]) == 1
    err = capsys.readouterr().err
    assert "2 rows wait until 2099-01-02 08:00 (quiet hours)" in err
    assert NO_SENDER not in err


def test_create_with_at_schedules_it(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_create(config, tmp_path, "--at", "2099-01-01T09:30")) == 0
    assert "created (scheduled for 2099-01-01 09:30)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pause", "999"], "no broadcast 999"),
        (["report", "999"], "no broadcast 999"),
        (["start", "seven"], "'seven' is not an id"),
        (["status", "99999999999999999999"], "'99999999999999999999' is not an id"),
        (["status", "1", "--watch", "--interval", "0"], "poll at most every 0.01 s"),
        (["start", "1", "--timeout", "soon"], "'soon' is not a number of seconds"),
        (["create", "--name", "n", "--segment", "x", "--channel", "oa_cs"], "--template"),
        (["create", "--name", "n", "--channel", "oa_cs", *PROMO], "--segment --rule"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    config: str, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        status = main(["--config", config, "broadcast", *argv])
    except SystemExit as exc:  # argparse's own errors (one line too, see bot.cli._Parser)
        status = int(str(exc.code))
    assert status == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert message in err


@pytest.mark.parametrize(
    ("more", "message"),
    [
        (["--segment", "nope"], "no saved segment named 'nope'"),
        (["--var", "oops"], "--var 'oops' is not NAME=VALUE"),
        (["--template", "nope"], "no template named"),
        (["--channel", "fax"], "channel must be one of"),
        (["--account", "elsewhere"], "no Official Account named 'elsewhere'"),
        (["--at", "2020-01-01"], "--at '2020-01-01' is not in the future"),
        (["--at", "soon"], "--at 'soon' is not an ISO date"),
        (["--actor", ""], "--actor must be 1 to 64 characters"),
    ],
)
def test_bad_create_options_name_the_problem(
    config: str, tmp_path: Path, more: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _create(config, tmp_path, *more)
    if "--segment" in more:
        argv.remove("--rule")
        argv.remove(str(tmp_path / "gold.toml"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert message in err


def test_bad_rule_files_and_states_name_the_problem(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('all = [{ field = "tier", in = "gold" }]\n', encoding="utf-8")
    argv = _create(config, tmp_path)
    argv[argv.index("--rule") + 1] = str(bad)
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(f"error: {bad}: all[0]")
    assert main(_create(config, tmp_path)) == 0
    broadcast_id = str(_created_id(capsys.readouterr().out))
    assert main(["--config", config, "broadcast", "resume", broadcast_id]) == 2
    err = capsys.readouterr().err
    assert err == f"error: broadcast {broadcast_id} is draft: resume needs paused\n"
    assert main(["--config", config, "broadcast", "status", broadcast_id, "--watch"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: broadcast {broadcast_id} is a draft: start it first (broadcast start)\n"


async def test_a_running_server_sends_what_the_cli_started(
    make_client: AppMaker, database: str, fake: FakeServer, wall: FakeWall, tmp_path: Path
) -> None:
    """``make run`` and the CLI side by side: the broadcast is created over the API, started
    by ``python -m bot broadcast start --wait`` in its own process, and the server's
    embedded sender (which polls for rows it was not woken for) delivers it."""
    wall.now = time.time()  # the fake's windows on real time, as the server's sender runs
    settings = make_settings(base_config(database), api=fake.api(), sop={"quiet_hours": ""})
    api = await make_client(
        settings, wall=WallClock(), clock=BusinessClock(settings.tz), run_sender=True
    )
    services = api.app[SERVICES]
    recipients = [openid for _, openid in await members(services, 3, fake=fake)]
    body = {
        "name": "n",
        "channel": "oa_cs",
        "rule": {"all": [{"field": "tier", "in": ["gold"]}]},
        "template": "broadcast_promo",
        "content": {"variables": {"headline": "h", "body": "b"}},
    }
    made = await api.post("/api/broadcasts", json=body, headers=api_headers("manager"))
    broadcast_id = (await made.json())["id"]
    config = write_config(tmp_path, database)
    argv = ["-m", "bot", "--config", config, "broadcast", "start", str(broadcast_id)]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        "--wait",
        "--interval",
        "0.05",
        "--timeout",
        "120",  # a bound for a broken build, not a speed assertion
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert out.decode().splitlines()[-1] == f"broadcast {broadcast_id} done: sent 3"
    assert NO_SENDER not in err.decode()  # the server's sender holds the database
    calls = fake.platform.calls("oa", CUSTOM)
    assert Counter(str(c.body["touser"]) for c in calls if c.errcode == 0) == dict.fromkeys(
        recipients, 1
    )


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_live_bar_redraws_one_line_with_the_counts() -> None:
    out, ticks = _Terminal(), iter([0.0, 1.0, 2.0, 2.0, 2.0])
    bar = ProgressBar(out, {"final": 4}, now=lambda: next(ticks))
    bar.update("final", 1, "sent 1 · pending 3")
    bar.update("final", 4, "sent 4")
    bar.close()
    frames = out.getvalue().split("\r")[1:]
    assert frames[0] == "  final ██████░░░░░░░░░░░░░░░░░░  25% 1/4 1/s  sent 1 · pending 3\x1b[K"
    assert frames[-1] == "  final ████████████████████████ 100% 4/4 4/s  sent 4\x1b[K\n"
