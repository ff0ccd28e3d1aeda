"""``members import``: bad rows rejected with reasons, idempotent re-runs, a clean ledger,
mobile numbers only encrypted, collisions and races decided by the unique keys."""

from __future__ import annotations

import asyncio
import csv
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from tortoise import Tortoise

from bot.cli import main
from bot.services import member_import, mobile, points
from bot.services.pii import MobileVault
from storage.models import AuditLog, GrowthEntry, Identity, Member, PointsEntry, PointsLot
from tests.cli_support import HMAC_KEY, KEYS, MOBILE_KEY, with_db, write_config
from tests.conftest import make_settings

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 5, 20, 9, 30, tzinfo=SH)
ROOT = Path(__file__).resolve().parent.parent
HEADER = "mobile,member_code,name,birthday,tier,points,growth,joined_at,channel,openid,unionid\n"
GOOD = (
    "13800138000,VIP001,王小明,1990-05-20,gold,12500,6800,2021-03-08,store:SH001,oImport0001,\n"
    "+86 139-0013-9000,VIP002,,1985-11-02,,3000,3200,2022-07-15T14:30:00+08:00,tmall,,uImport0002\n"
    "13700137000,,,,,0,0,,,,\n"
)
BAD = (
    "12345678901,VIP010,,,,100,0,,,,\n"  # line 5: bad mobile
    "13600136000,VIP011,,1992-02-30,,100,0,,,,\n"  # bad birthday
    "13500135000,VIP012,,,diamond,100,0,,,,\n"  # unknown tier
    "13400134000,VIP013,,,,-50,0,,,,\n"  # negative points
    "13800138000,VIP014,,,,100,0,,,,\n"  # duplicate mobile (line 2)
    "13300133000,VIP001,,,,100,0,,,,\n"  # duplicate member_code (line 2)
    "13200132000,VIP015,,1990/05/20,,1,0,,,,\n"  # birthday not YYYY-MM-DD
    ",,,,,5,0,,,,\n"  # no key at all
)


def _write(tmp_path: Path, body: str, name: str = "members.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + body, encoding="utf-8")
    return path


def _rejects(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def test_bad_rows_are_rejected_with_reasons_and_the_rest_imported(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url, KEYS)
    with_db(db_url, lambda: Member.all().count(), fresh=True)
    data, rejects = _write(tmp_path, GOOD + BAD), tmp_path / "rejects.csv"
    assert (
        main(["--config", config, "members", "import", str(data), "--rejects", str(rejects)]) == 1
    )
    out, err = capsys.readouterr()
    assert out.startswith("11 rows: imported 3 members (points 15,500, growth 10,000);")
    assert "0 already members; 8 rejected (" in out
    assert "bad mobile 1" in out
    assert "duplicate in file 2" in out
    assert "11/11 rows" in err
    assert "13800138000" not in out + err
    rows = _rejects(rejects)
    assert [r["line"] for r in rows] == [str(n) for n in range(5, 13)]
    reasons = [r["reason"] for r in rows]
    assert reasons[0] == "bad mobile: 123****8901"
    assert reasons[1] == "bad birthday: no such date"
    assert reasons[2].startswith("unknown tier: 'diamond'; configured: basic, silver, gold")
    assert reasons[3] == "negative points: -50"
    assert reasons[4] == "duplicate in file: same mobile as line 2"
    assert reasons[5] == "duplicate in file: same member_code as line 2"
    assert reasons[6] == "bad birthday: write YYYY-MM-DD"
    assert reasons[7] == "no mobile or member_code"
    assert rows[2]["mobile"] == "13500135000"
    assert rows[2]["tier"] == "diamond"
    assert list(rows[0])[-2:] == ["line", "reason"]

    async def imported() -> list[Member]:
        return await Member.all().order_by("id")

    members = with_db(db_url, imported)
    assert [m.tier for m in members] == ["gold", "silver", "basic"]  # given, else by growth
    assert [m.points_balance for m in members] == [12500, 3000, 0]
    assert members[0].birth_md == 520
    assert members[0].channel == "store:SH001"
    assert members[0].created_at == datetime(2021, 3, 8, tzinfo=SH)
    assert members[1].created_at == datetime(2022, 7, 15, 14, 30, tzinfo=SH)
    assert members[2].channel == "import"


def test_show_finds_an_imported_member_by_legacy_code_openid_unionid_and_mobile(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url, KEYS)
    with_db(db_url, lambda: Member.all().count(), fresh=True)
    assert main(["--config", config, "members", "import", str(_write(tmp_path, GOOD))]) == 0
    capsys.readouterr()
    shown = []
    for ref in ("VIP001", "oImport0001", "13800138000"):
        assert main(["--config", config, "members", "show", ref]) == 0
        shown.append(capsys.readouterr().out)
    assert shown[0] == shown[1] == shown[2]
    assert "legacy_code            app=-                    VIP001" in shown[0]
    assert "+12500  import  (import line:2)" in shown[0]
    assert main(["--config", config, "members", "show", "uImport0002"]) == 0
    assert "tier silver  growth 3200  points 3000" in capsys.readouterr().out


def test_a_second_run_imports_nothing_and_reports_duplicates(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url, KEYS)
    with_db(db_url, lambda: Member.all().count(), fresh=True)
    data = _write(tmp_path, GOOD)
    command = ["--config", config, "members", "import", str(data)]
    assert main(command) == 0
    capsys.readouterr()
    assert main(command) == 0
    out = capsys.readouterr().out
    assert out.startswith("3 rows: imported 0 members (points 0, growth 0); 3 already members;")

    async def counts() -> tuple[int, int, int, int]:
        return (
            await Member.all().count(),
            await PointsEntry.all().count(),
            await GrowthEntry.all().count(),
            await AuditLog.filter(action="members.import").count(),
        )

    assert with_db(db_url, counts) == (3, 2, 2, 1)


def test_dry_run_writes_nothing(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url, KEYS)
    with_db(db_url, lambda: Member.all().count(), fresh=True)
    data = _write(tmp_path, GOOD)
    assert main(["--config", config, "members", "import", str(data), "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("3 rows: would import 3 members")
    assert with_db(db_url, lambda: Member.all().count()) == 0


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("mobile,nickname\n13800138000,x\n", "unknown column 'nickname'"),
        ("name,points\nx,1\n", "a mobile or member_code column is required"),
        ("mobile,Mobile\n1,2\n", "column 'mobile' appears twice"),
        ("", "the file is empty"),
    ],
)
def test_a_bad_file_is_one_line_and_exit_2(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, fragment: str
) -> None:
    config = write_config(tmp_path, db_url, KEYS)
    data = tmp_path / "bad.csv"
    data.write_text(text, encoding="utf-8")
    assert main(["--config", config, "members", "import", str(data)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert fragment in err


def test_import_without_keys_names_the_setting(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url)
    data = _write(tmp_path, GOOD)
    assert main(["--config", config, "members", "import", str(data)]) == 2
    assert f"{config}: security.mobile_key: not set" in capsys.readouterr().err


# --- the service, in the test's own loop -------------------------------------------------


def _importer(batch: int = member_import.BATCH, parser: Any = None) -> member_import.Importer:
    settings = make_settings()
    vault = MobileVault(MOBILE_KEY, HMAC_KEY)
    parser = parser or member_import.RowParser(
        vault, settings.membership, SH, NOW, appid="wx2c2769f8efd9abc2"
    )
    return member_import.Importer(parser, "test", "members.csv", batch=batch)


def _file(body: str) -> member_import.CsvFile:
    return member_import.read_csv((HEADER + body).encode())


async def test_reconcile_is_clean_and_lots_expire_by_the_default_rule(database: str) -> None:
    summary = await _importer(batch=2).run(_file(GOOD + BAD))
    assert (summary.imported, len(summary.rejected)) == (3, 8)
    assert await points.reconcile() == []
    assert await points.outstanding() == 15500
    lots = await PointsLot.all().order_by("id")
    assert [lot.remaining for lot in lots] == [12500, 3000]
    assert {lot.expires_at for lot in lots} == {points.lot_expiry(NOW, SH)}
    entries = await PointsEntry.all().order_by("id").values("idempotency_key", "kind", "reason")
    assert entries[0]["idempotency_key"] == "import:member:code:VIP001:points"
    assert {(e["kind"], e["reason"]) for e in entries} == {("earn", "import")}
    growth = await GrowthEntry.all().order_by("id").values_list("idempotency_key", "amount")
    assert growth == [
        ("import:member:code:VIP001:growth", 6800),
        ("import:member:code:VIP002:growth", 3200),
    ]
    # the imported balance is a real ledger balance: it can be spent from its lot
    member = await Member.get(code__not="").filter(points_balance=12500).first()
    assert member is not None
    spent = await points.spend(member.id, 500, "t:spend", now=NOW, reason="x", source="test")
    assert spent.balance == 12000
    assert await points.reconcile() == []


async def test_a_key_only_mobile_row_is_keyed_by_the_mobile_hash(database: str) -> None:
    await _importer().run(_file("13700137000,,,,,40,0,,,,\n"))
    vault = MobileVault(MOBILE_KEY, HMAC_KEY)
    key = await PointsEntry.all().values_list("idempotency_key", flat=True)
    assert key == [f"import:member:mobile:{vault.lookup_hash('13700137000')}:points"]


async def _every_stored_text() -> str:
    """Every row of every table as text."""
    assert Tortoise.apps is not None
    dumped = []
    for model in Tortoise.apps["models"].values():
        dumped.extend(str(row) for row in await model.all().values())
    return "\n".join(dumped)


async def test_raw_mobiles_are_never_stored_in_plaintext(database: str) -> None:
    await _importer().run(_file(GOOD + BAD))
    stored = await _every_stored_text()
    for number in ("13800138000", "13900139000", "13700137000", "0013", "139-0013"):
        assert number not in stored
    member = await Member.get(code__not="", birthday__isnull=False, tier="gold")
    assert member.mobile_cipher is not None
    assert member.mobile_cipher.startswith("v1:")
    vault = MobileVault(MOBILE_KEY, HMAC_KEY)
    assert vault.decrypt(member.mobile_cipher) == "13800138000"
    found = await mobile.find_member(vault, "138 0013 8000")
    assert found is not None
    assert found.id == member.id
    assert await Identity.filter(kind="mobile_hash", member_id=member.id).count() == 1


async def test_an_existing_member_holding_the_mobile_is_a_duplicate(database: str) -> None:
    vault = MobileVault(MOBILE_KEY, HMAC_KEY)
    follower = await Member.create(code="FOLLOW01", created_at=NOW)
    await mobile.set_mobile(vault, follower.id, "13800138000", now=NOW)
    summary = await _importer().run(_file(GOOD))
    assert (summary.imported, summary.duplicates) == (2, 1)
    assert await Member.filter(mobile_hash=vault.lookup_hash("13800138000")).count() == 1
    assert await points.reconcile() == []


class _CollidingParser(member_import.RowParser):
    """Draws an existing member's code first: the batch insert fails, rows go one by one."""

    def __init__(self, *args: Any, taken: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.first = [taken]

    def _new_code(self) -> str:
        return self.first.pop() if self.first else super()._new_code()


async def test_a_code_collision_falls_back_to_rows_one_by_one(database: str) -> None:
    await Member.create(code="TAKEN001", created_at=NOW)
    settings = make_settings()
    vault = MobileVault(MOBILE_KEY, HMAC_KEY)
    parser = _CollidingParser(
        vault, settings.membership, SH, NOW, "wx2c2769f8efd9abc2", taken="TAKEN001"
    )
    summary = await _importer(parser=parser).run(_file(GOOD))
    assert (summary.imported, summary.duplicates, summary.rejected) == (3, 0, [])
    assert await Member.all().count() == 4
    assert await points.reconcile() == []
    assert await AuditLog.filter(action="members.import").count() == 3  # one per row written


async def test_two_imports_at_once_import_each_member_once(database: str) -> None:
    body = "".join(f"1380000{i:04d},L{i:05d},,,,10,5,,,,\n" for i in range(60))
    first, second = await asyncio.gather(
        _importer(batch=25).run(_file(body)), _importer(batch=25).run(_file(body))
    )
    assert first.imported + second.imported == 60
    assert first.duplicates + second.duplicates == 60
    assert await Member.all().count() == 60
    assert await PointsEntry.all().count() == 60
    assert await points.reconcile() == []


def test_the_documented_sample_imports(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url, KEYS)
    with_db(db_url, lambda: Member.all().count(), fresh=True)
    sample = ROOT / "docs" / "samples" / "members.csv"
    assert main(["--config", config, "members", "import", str(sample)]) == 1
    assert "rows: imported 3 members" in capsys.readouterr().out
