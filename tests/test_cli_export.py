"""``members export``: the member's data as JSON, the mobile decrypted, audited."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.cli import main
from bot.services import consent, mobile, points
from bot.services.pii import MobileVault
from storage.models import AuditLog, Identity, Member, MemberTag, Tag, TagGroup
from tests.cli_support import HMAC_KEY, KEYS, MOBILE_KEY, with_db, write_config

SH = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 5, 20, 9, 30, tzinfo=SH)


async def _seed() -> int:
    member = await Member.create(code="EXPORT01", created_at=AT, name="王小明")
    other = await Member.create(code="OTHER001", created_at=AT)
    for who, openid in ((member, "oExport1"), (other, "oOther1")):
        await Identity.create(
            kind="oa_openid", app="wx2c2769f8efd9abc2", value=openid, member=who, created_at=AT
        )
    await mobile.set_mobile(MobileVault(MOBILE_KEY, HMAC_KEY), member.id, "13800138000", now=AT)
    expires = datetime(2028, 1, 1, tzinfo=SH)
    for who, key, amount in ((member, "e1", 30), (member, "e2", 12), (other, "e3", 99)):
        await points.earn(
            who.id, amount, key, now=AT, expires_at=expires, reason="signin", source="signin"
        )
    await points.spend(member.id, 5, "s1", now=AT, reason="redeem", source="mall")
    await consent.opt_out(member.id, "oa_chat", "2026-12", now=AT)
    group = await TagGroup.create(name="兴趣")
    tag = await Tag.create(group=group, name="咖啡")
    await MemberTag.create(member_id=member.id, tag=tag, source="staff", created_at=AT)
    return int(member.id)


def test_export_to_stdout_and_file_is_audited(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url, KEYS)
    member_id = with_db(db_url, _seed, fresh=True)
    capsys.readouterr()
    assert main(["--config", config, "members", "export", "oExport1"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["member"] == {"code": "EXPORT01", "status": "active", "mobile": "13800138000"}
    assert document["tags"] == ["兴趣/咖啡"]
    data = document["data"]
    assert [row["code"] for row in data["Member"]] == ["EXPORT01"]
    assert data["Member"][0]["name"] == "王小明"
    assert "mobile_cipher" not in data["Member"][0]
    assert [row["amount"] for row in data["PointsEntry"]] == [30, 12, -5]
    assert sum(row["remaining"] for row in data["PointsLot"]) == 37
    assert len(data["PointsAllocation"]) == 1  # the spend's allocation, via its entry
    assert [(c["purpose"], c["granted"]) for c in data["Consent"]] == [("marketing", False)]
    assert [(i["kind"], i["value"]) for i in data["Identity"]] == [
        ("oa_openid", "oExport1"),
        ("mobile_hash", "13800138000"),
    ]
    assert "mobile_hash" not in data["Member"][0]
    assert {"Order", "Coupon", "MemberTag", "Redemption"} <= set(data)
    assert "InboundEvent" not in data  # not exported (registry: export=False)
    text = json.dumps(document)
    assert "oOther1" not in text
    assert MobileVault(MOBILE_KEY, HMAC_KEY).lookup_hash("13800138000") not in text

    out = tmp_path / "export.json"
    assert main(["--config", config, "members", "export", "EXPORT01", "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith("member EXPORT01: exported ")
    assert json.loads(out.read_text(encoding="utf-8"))["data"] == data

    async def audits() -> list[tuple[str, str, str]]:
        rows = await AuditLog.filter(action="member.export").order_by("id")
        return [(r.actor, r.target, r.detail["out"]) for r in rows]

    assert with_db(db_url, audits) == [
        ("cli", f"member:{member_id}", "stdout"),
        ("cli", f"member:{member_id}", "file"),
    ]
    assert main(["--config", config, "members", "export", "NOBODY99"]) == 2
    assert capsys.readouterr().err.strip() == "error: no member matches 'NOBODY99'"
    bad = str(tmp_path / "missing" / "x.json")
    assert main(["--config", config, "members", "export", "EXPORT01", "--out", bad]) == 2
    assert with_db(db_url, audits)[-1][2] == "file"
    assert len(with_db(db_url, audits)) == 2  # a failed write is not an export


def test_export_without_the_key_names_the_setting(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url)
    with_db(db_url, _seed, fresh=True)
    capsys.readouterr()
    assert main(["--config", config, "members", "export", "EXPORT01"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {config}: security.mobile_key: not set")
