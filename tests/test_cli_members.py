"""``members show`` / ``members adjust-points`` and ``oa menu publish`` through ``bot.cli.main``."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.cli import main
from bot.config import load_settings
from bot.devtools.fake import FakePlatform, create_fake_app
from bot.services import mobile, points
from bot.services.pii import MobileVault
from storage.models import (
    AuditLog,
    Consent,
    Identity,
    Member,
    MemberTag,
    OutboxMessage,
    PointsEntry,
    Tag,
    TagGroup,
)
from tests.cli_support import HMAC_KEY, KEYS, MOBILE_KEY, with_db, write_config

SH = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 5, 20, 9, 30, tzinfo=SH)
MENU = """
[[oa.menu]]
name = "签到"
type = "click"
key = "SIGNIN"
[[oa.menu]]
name = "会员"
[[oa.menu.sub_button]]
name = "我的积分"
type = "click"
key = "POINTS"
[[oa.menu.sub_button]]
name = "商城"
type = "view"
url = "https://shop.example.com/"
"""


async def _seed() -> int:
    member = await Member.create(code="SHOWME01", created_at=AT, channel="qr:spring", tier="silver")
    await Identity.create(
        kind="oa_openid",
        app="wx2c2769f8efd9abc2",
        value="oShow1",
        member_id=member.id,
        followed=True,
        followed_at=AT,
        created_at=AT,
    )
    vault = MobileVault(MOBILE_KEY, HMAC_KEY)
    await mobile.set_mobile(vault, member.id, "13800138000", now=AT)
    await points.earn(
        member.id,
        30,
        "e1",
        now=AT,
        expires_at=datetime(2028, 1, 1, tzinfo=SH),
        reason="signin",
        source="signin",
    )
    group = await TagGroup.create(name="兴趣")
    tag = await Tag.create(group=group, name="咖啡")
    await MemberTag.create(
        member_id=member.id, tag=tag, source="staff", set_by="zhangsan", created_at=AT
    )
    await Consent.create(
        member_id=member.id, purpose="marketing", granted=True, channel="oa", at=AT
    )
    return int(member.id)


def test_show_by_code_openid_and_mobile(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url, KEYS)
    member = with_db(db_url, _seed, fresh=True)
    capsys.readouterr()
    outputs = []
    for ref in ("showme01", "oShow1", "+86 138-0013-8000"):
        assert main(["--config", config, "members", "show", ref]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] == outputs[2]
    out = outputs[0]
    assert f"member {member}  code SHOWME01  status active" in out
    assert "tier silver  growth 0  points 30  debt 0" in out
    assert "channel qr:spring" in out
    assert "mobile 138****8000" in out
    assert "13800138000" not in out
    assert "oa_openid" in out
    assert "oShow1  followed  followed_at=2026-05-20 09:30:00" in out
    assert "mobile_hash            app=-                    138****8000" in out
    assert "signin" in out
    assert "+30" in out
    assert "remaining       30 of 30" in out
    assert "expires 2028-01-01 00:00:00" in out
    assert "兴趣/咖啡  (staff by zhangsan)" in out
    assert "marketing        granted" in out
    assert main(["--config", config, "members", "show", "NOBODY99"]) == 2
    assert capsys.readouterr().err.strip() == "error: no member matches 'NOBODY99'"
    assert main(["--config", config, "members", "show", "13900139000"]) == 2
    assert "no member matches 139****9000" in capsys.readouterr().err


def test_mobile_lookup_without_keys_names_the_setting(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url)
    with_db(db_url, lambda: Member.all().count(), fresh=True)
    assert main(["--config", config, "members", "show", "13800138000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {config}: security.mobile_key: not set")
    assert len(err.strip().splitlines()) == 1


async def _notices() -> list[OutboxMessage]:
    return await OutboxMessage.filter(source="notice").order_by("id")


async def _audits() -> list[AuditLog]:
    return await AuditLog.filter(action="points.adjust").order_by("id")


def test_adjust_points_is_audited_idempotent_and_may_leave_debt(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url, KEYS)
    member = with_db(db_url, _seed, fresh=True)
    capsys.readouterr()
    base = ["--config", config, "members", "adjust-points"]
    assert main([*base, "SHOWME01", "100", "--reason", "门店补录", "--actor", "li"]) == 0
    out = capsys.readouterr().out
    assert "adjusted +100; balance 130, debt 0; key adjust:" in out
    assert main([*base, "oShow1", "-200", "--reason", "误发", "--key", "fix-1"]) == 0
    assert "adjusted -200; balance 0, debt 70; key fix-1" in capsys.readouterr().out
    assert main([*base, "oShow1", "-200", "--reason", "误发", "--key", "fix-1"]) == 0
    assert "already applied" in capsys.readouterr().out
    assert main([*base, "oShow1", "1", "--reason", "静默", "--key", "quiet", "--silent"]) == 0
    assert "notice:" not in capsys.readouterr().out
    notices = with_db(db_url, _notices)
    assert len(notices) == 2  # one per applied adjust: not the repeat, not the silent one
    assert notices[0].idempotency_key.startswith("notify:points:adjust:")
    assert notices[1].idempotency_key == "notify:points:fix-1"
    assert all(n.member_id == member for n in notices)
    assert "-200 积分" in notices[-1].payload["text"]
    assert "另有 70 积分" in notices[-1].payload["text"]
    first, second, silent = with_db(db_url, _audits)
    assert silent.detail["key"] == "quiet"  # audited all the same
    assert (first.actor, first.target, first.detail["delta"], first.detail["reason"]) == (
        "li",
        f"member:{member}",
        100,
        "门店补录",
    )
    assert (second.actor, second.detail["key"], second.detail["debt"]) == ("cli", "fix-1", 70)
    entry = with_db(db_url, lambda: PointsEntry.get(idempotency_key="fix-1"))
    assert (entry.kind, entry.amount, entry.reason, entry.ref) == ("adjust", -200, "误发", "cli")
    assert main([*base, "SHOWME01", "5", "--reason", "  "]) == 2
    assert "--reason is required" in capsys.readouterr().err
    assert main([*base, "SHOWME01", "0", "--reason", "x"]) == 2
    assert "delta must not be 0" in capsys.readouterr().err
    assert main([*base, "SHOWME01", "-5", "--reason", "other", "--key", "fix-1"]) == 2
    assert "adjust refused" in capsys.readouterr().err
    assert main([*base, "NOBODY99", "5", "--reason", "x"]) == 2
    assert main([*base, "SHOWME01", "5", "--reason", "x", "--actor", "a" * 65]) == 2
    assert "--actor must be 1 to 64 characters" in capsys.readouterr().err
    assert len(with_db(db_url, _audits)) == 3


async def test_menu_publish_reaches_the_fake_platform(
    db_url: str, tmp_path: Path, aiohttp_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    await asyncio.to_thread(with_db, db_url, lambda: AuditLog.all().count(), fresh=True)
    settings = load_settings(write_config(tmp_path, db_url, MENU))
    platform = FakePlatform.from_settings(settings)
    server = await aiohttp_server(create_fake_app(platform))
    url = str(server.make_url("")).rstrip("/")
    api = f"[api]\noa_base_url = '{url}/oa'\nmp_base_url = '{url}/mp'\n"
    config = write_config(tmp_path, db_url, MENU + api)
    assert await asyncio.to_thread(main, ["--config", config, "oa", "menu", "publish"]) == 0
    assert "published 2 menu buttons to brand" in capsys.readouterr().out
    assert platform.world.accounts["wx2c2769f8efd9abc2"].menu == [
        {"name": "签到", "type": "click", "key": "SIGNIN"},
        {
            "name": "会员",
            "sub_button": [
                {"name": "我的积分", "type": "click", "key": "POINTS"},
                {"name": "商城", "type": "view", "url": "https://shop.example.com/"},
            ],
        },
    ]
    audit = await asyncio.to_thread(with_db, db_url, lambda: AuditLog.get(action="oa.menu.publish"))
    assert (audit.actor, audit.target, len(audit.detail["buttons"])) == ("cli", "oa:brand", 2)
    platform.fail("oa", "cgi-bin/menu/create", errcode=40016)
    assert await asyncio.to_thread(main, ["--config", config, "oa", "menu", "publish"]) == 2
    err = capsys.readouterr().err
    assert "menu publish to brand failed" in err
    assert "40016" in err
    assert (
        await asyncio.to_thread(
            main, ["--config", config, "oa", "menu", "publish", "--account", "x"]
        )
        == 2
    )
    assert "no Official Account named 'x'" in capsys.readouterr().err


async def test_an_adjust_whose_audit_row_fails_is_rolled_back(database: str) -> None:
    from tortoise.exceptions import ValidationError

    from bot.services import operator

    member = await Member.create(code="ATOMIC01", created_at=AT)
    with pytest.raises(ValidationError):  # AuditLog.actor holds 64 characters
        await operator.adjust_points(
            member.id, 50, reason="test", actor="x" * 100, key="atomic", now=AT, tz=SH
        )
    await member.refresh_from_db()
    assert member.points_balance == 0
    assert not await PointsEntry.exists(idempotency_key="atomic")
    assert await AuditLog.all().count() == 0


def test_menu_publish_to_an_unreachable_platform_is_one_line(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = "[api]\noa_base_url = 'http://127.0.0.1:9/oa'\n"  # port 9: refused at once
    config = write_config(tmp_path, db_url, MENU + api)
    assert main(["--config", config, "oa", "menu", "publish"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "menu publish to brand failed" in err
