"""``python -m bot wecom …`` end to end against the fake platform, and its bad input."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.config import load_settings
from bot.devtools.fake.app import create_fake_app
from bot.devtools.fake.platform import FakePlatform
from storage.models import AuditLog
from storage.models.wecom import ContactWay, CustomerGroup, StaffCustomer
from tests.cli_support import with_db, write_config
from tests.conftest import WECOM_AES_KEY, WECOM_CORP_ID, WECOM_TOKEN

WECOM = (
    f"[wecom]\nname = 'corp'\ncorp_id = '{WECOM_CORP_ID}'\nagent_id = 218\n"
    "agent_secret = 'agent-secret'\ncontact_secret = 'contact-secret'\n"
    f"token = '{WECOM_TOKEN}'\nencoding_aes_key = '{WECOM_AES_KEY}'\n"
)


async def _run(config: str, *argv: str) -> int:
    return await asyncio.to_thread(main, ["--config", config, "wecom", *argv])


async def test_wecom_commands_against_the_fake(
    db_url: str, tmp_path: Path, aiohttp_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    await asyncio.to_thread(with_db, db_url, lambda: AuditLog.all().count(), fresh=True)
    platform = FakePlatform.from_settings(load_settings(write_config(tmp_path, db_url, WECOM)))
    server = await aiohttp_server(create_fake_app(platform))
    url = str(server.make_url("")).rstrip("/")
    config = write_config(tmp_path, db_url, WECOM + f"[api]\nwecom_base_url = '{url}/wecom'\n")

    assert await _run(config, "sync-customers") == 0
    out = capsys.readouterr()
    assert "4 relations of 2 staff synced: 4 new, 0 changed, 3 members" in out.out
    assert "4 relations" in out.err  # the progress count
    assert await _run(config, "sync-customers") == 0
    assert "0 new, 0 changed" in capsys.readouterr().out

    assert await _run(config, "sync-groups") == 0
    assert "1 groups synced: 1 changed, 3 joined, 0 left" in capsys.readouterr().out
    assert await _run(config, "sync-groups") == 0
    assert "1 groups synced: 0 changed" in capsys.readouterr().out

    args = ("contact-way", "create", "--state", "store-009", "--staff", "zhangsan")
    assert await _run(config, *args) == 0
    line = capsys.readouterr().out
    assert "https://wework.qq.com/q/" in line

    async def rows() -> tuple[int, int, int]:
        return (
            await ContactWay.all().count(),
            await CustomerGroup.all().count(),
            await StaffCustomer.all().count(),
        )

    assert await asyncio.to_thread(with_db, db_url, rows) == (1, 1, 4)

    assert await _run(config, "staff-report", "--days", "2") == 0
    report = capsys.readouterr().out.splitlines()
    assert report[0].startswith("day")
    assert len(report) == 1 + 2 * 2  # two days, two staff members

    platform.fail("wecom", "cgi-bin/externalcontact/groupchat/list", errcode=60011, times=5)
    assert await _run(config, "sync-groups") == 2
    assert "60011" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("contact-way", "create", "--state", "s" * 31, "--staff", "u"), "--state must be"),
        (("transfer", "--from", "u", "--to", "u"), "must be different"),
        (("staff-report", "--days", "0"), "--days must be"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...],
    message: str,
) -> None:  # fmt: skip
    config = write_config(tmp_path, db_url, WECOM)
    assert main(["--config", config, "wecom", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_without_a_wecom_section_the_command_refuses(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", write_config(tmp_path, db_url), "wecom", "sync-groups"]) == 2
    assert "no [wecom] corp" in capsys.readouterr().err
