"""``orders import``: bad rows rejected with reasons, re-runs idempotent, pricing and the
ledger's rules (debt, tier upgrades) the same as one order at a time."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.cli import main
from bot.context import Services
from bot.services import points
from bot.services.order_import import OrderImporter, Row, _Parsed, check_header, parse
from bot.services.orders import MemberLookup, NewOrder
from storage.cache import Cache
from storage.keys import KeyBuilder
from storage.models import (
    AuditLog,
    GrowthEntry,
    Identity,
    Member,
    Order,
    OutboxMessage,
    PointsEntry,
)
from tests.cli_support import KEYS, with_db, write_config
from tests.fakes import FakeWall
from tests.test_orders import order_settings, services_on

SH = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 5, 1, 9, 0, tzinfo=SH)
APPID = "wx2c2769f8efd9abc2"  # tests/cli_support.write_config's account
HEADER = [
    "external_id",
    "member_code",
    "openid",
    "mobile",
    "amount_fen",
    "amount",
    "store",
    "paid_at",
]


async def _seed() -> dict[str, int]:
    basic = await Member.create(code="IMPBASIC", created_at=AT)
    silver = await Member.create(code="IMPSILVR", created_at=AT, tier="silver", growth=3000)
    await Identity.create(
        kind="oa_openid", app=APPID, value="oImport1", member_id=basic.id, created_at=AT
    )
    return {"basic": int(basic.id), "silver": int(silver.id)}


def _write(path: Path, rows: Iterable[list[str]], header: list[str] = HEADER) -> str:
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(header)
        out.writerows(rows)
    return str(path)


ROWS = [
    ["I-1", "IMPBASIC", "", "", "12800", "", "S1", "2026-06-10T09:00:00+08:00"],
    ["I-2", "", "oImport1", "", "", "25.50", "S1", "2026-06-10T10:00:00+08:00"],
    # the member day (the 8th) at 银卡: base 100 × 1.2 × 2
    ["I-3", "impsilvr", "", "", "10000", "", "S2", "2026-06-08T12:00:00+08:00"],
    ["I-4", "", "", "13800138000", "", "9.90", "WEB", "2026-06-10T11:00:00Z"],
    ["I-5", "IMPBASIC", "", "", "99", "", "S1", "2026-06-10T12:00:00+08:00"],  # 0 points
    ["I-1", "IMPBASIC", "", "", "12800", "", "S1", "2026-06-10T09:00:00+08:00"],  # same again
    ["I-1", "IMPBASIC", "", "", "12900", "", "S1", "2026-06-10T09:00:00+08:00"],  # other content
    ["B-1", "IMPBASIC", "", "", "12.5", "", "S1", "2026-06-10T09:00:00+08:00"],  # fen with dot
    ["B-2", "IMPBASIC", "", "", "", "1.234", "S1", "2026-06-10T09:00:00+08:00"],
    ["B-3", "IMPBASIC", "", "", "100", "1.00", "S1", "2026-06-10T09:00:00+08:00"],  # both
    ["B-4", "IMPBASIC", "", "", "0", "", "S1", "2026-06-10T09:00:00+08:00"],
    ["B-5", "NOBODY99", "", "", "100", "", "S1", "2026-06-10T09:00:00+08:00"],
    ["B-6", "", "oStranger", "", "100", "", "S1", "2026-06-10T09:00:00+08:00"],
    ["B-7", "IMPBASIC", "", "", "100", "", "S1", "2026-06-10 09:00:00"],  # no offset
    ["B-8", "IMPBASIC", "", "", "100", "", "S1", "yesterday"],
    ["B-9", "IMPBASIC", "oImport1", "", "100", "", "S1", "2026-06-10T09:00:00+08:00"],
    ["", "IMPBASIC", "", "", "100", "", "S1", "2026-06-10T09:00:00+08:00"],
    ["B-10", "", "", "12345", "100", "", "S1", "2026-06-10T09:00:00+08:00"],
]
REASONS = {
    "I-1": "conflicts_with_earlier_row",
    "B-1": "bad_amount",
    "B-2": "bad_amount",
    "B-3": "bad_amount",
    "B-4": "bad_amount",
    "B-5": "member_not_found",
    "B-6": "member_not_found",
    "B-7": "bad_paid_at",
    "B-8": "bad_paid_at",
    "B-9": "member_reference",
    "": "missing_external_id",
    "B-10": "invalid_mobile",
}


async def _state() -> dict[str, Any]:
    entries = await PointsEntry.filter(kind="earn").order_by("id")
    return {
        "orders": await Order.all().count(),
        "entries": [
            (e.ref, e.amount, e.base, e.tier_multiplier, e.day_multiplier) for e in entries
        ],
        "growth": await GrowthEntry.all().count(),
        "audit": await AuditLog.filter(action="order.create").count(),
        "breaks": await points.reconcile(),
        "mobile_members": await Identity.filter(kind="mobile_hash").count(),
    }


def test_import_rejects_bad_rows_and_reruns_idempotently(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url, KEYS)
    with_db(db_url, _seed, fresh=True)
    source = _write(tmp_path / "orders.csv", ROWS)
    rejects = tmp_path / "rejects.csv"
    args = ["--config", config, "orders", "import", source, "--rejects", str(rejects)]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "18/18 rows" in captured.err
    assert captured.out.startswith("imported 5, duplicates 1, rejected 12; 402 points awarded")
    assert "bad_amount 4" in captured.out
    with rejects.open(encoding="utf-8") as fh:
        refused = list(csv.DictReader(fh))
    assert {r["external_id"]: r["reason"] for r in refused} == REASONS
    assert refused[0]["amount_fen"] == "12900"  # the original row, as written
    state = with_db(db_url, _state)
    assert state["orders"] == 5
    assert state["entries"] == [
        ("I-1", 128, 128, 1000, 1000),
        ("I-2", 25, 25, 1000, 1000),
        ("I-3", 240, 100, 1200, 2000),
        ("I-4", 9, 9, 1000, 1000),
    ]
    assert (state["growth"], state["audit"], state["breaks"]) == (4, 5, [])
    assert state["mobile_members"] == 1
    # a re-run imports nothing twice: the recorded orders are duplicates
    assert main(args) == 1
    again = capsys.readouterr().out
    assert again.startswith("imported 0, duplicates 6, rejected 12; 0 points awarded")
    assert with_db(db_url, _state) == state


def test_import_conflicting_with_a_recorded_order_and_header_errors(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url, KEYS)
    with_db(db_url, _seed, fresh=True)
    first = _write(tmp_path / "a.csv", ROWS[:1])
    assert main(["--config", config, "orders", "import", first]) == 0
    changed = [["I-1", "IMPBASIC", "", "", "12801", "", "S1", "2026-06-10T09:00:00+08:00"]]
    second = _write(tmp_path / "b.csv", changed)
    assert main(["--config", config, "orders", "import", second]) == 1
    assert "rejected: order_conflict 1" in capsys.readouterr().out
    bad = _write(tmp_path / "c.csv", [], header=["external_id", "colour", "paid_at"])
    assert main(["--config", config, "orders", "import", bad]) == 2
    assert "unknown column 'colour'" in capsys.readouterr().err
    no_amount = _write(tmp_path / "d.csv", [], header=["external_id", "member_code", "paid_at"])
    assert main(["--config", config, "orders", "import", no_amount]) == 2
    assert "amount_fen or amount" in capsys.readouterr().err
    assert main(["--config", config, "orders", "import", str(tmp_path / "none.csv")]) == 2


def test_import_needs_the_mobile_keys_for_a_mobile_column(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url)
    with_db(db_url, _seed, fresh=True)
    source = _write(tmp_path / "orders.csv", ROWS[:2])
    assert main(["--config", config, "orders", "import", source]) == 2
    assert "security.mobile_key: not set" in capsys.readouterr().err


# --- the batch writer against one-at-a-time ------------------------------------------------


T0 = datetime(2026, 6, 10, 9, 0, tzinfo=SH)


@pytest.fixture
async def svc(database: str, wall: FakeWall, cache: Cache, keys: KeyBuilder) -> Services:
    wall.now = T0.timestamp()
    return services_on(order_settings(database), wall, cache, keys)


def _row(ext: str, code: str, fen: int, paid_at: str = "2026-06-10T09:00:00+08:00") -> Row:
    return {"external_id": ext, "member_code": code, "amount_fen": str(fen), "paid_at": paid_at}


async def _import(svc: Services, rows: list[Row], importer: OrderImporter | None = None) -> Any:
    refused: list[tuple[Row, str]] = []
    run = importer or OrderImporter(svc.orders, batch=3)
    summary = await run.run(rows, lambda row, why: refused.append((row, why)))
    return summary, refused


async def test_batches_settle_debt_and_raise_tiers_like_single_orders(svc: Services) -> None:
    debtor = await Member.create(code="DEBTOR01", created_at=T0)
    await points.reverse(debtor.id, 150, "seed-debt", now=T0, reason="t", source="t")
    climber = await Member.create(code="CLIMB001", created_at=T0)
    rows = [
        _row("D-1", "DEBTOR01", 10000),  # 100 points: all settle debt
        _row("D-2", "DEBTOR01", 10000),  # 100: 50 settle, 50 balance
        _row("C-1", "CLIMB001", 300000),  # 3000 points, growth 3000: 银卡 from here
        _row("C-2", "CLIMB001", 1000),  # priced at 银卡: 12
        _row("C-3", "CLIMB001", 1000),
    ]
    summary, refused = await _import(svc, rows)
    assert (summary.imported, refused) == (5, [])
    after = await Member.get(id=debtor.id)
    assert (after.points_balance, after.points_debt) == (50, 0)
    climbed = await Member.get(id=climber.id)
    assert (climbed.tier, climbed.growth, climbed.points_balance) == ("silver", 3020, 3024)
    upgrade = await AuditLog.get(action="tier.upgrade", target=f"member:{climber.id}")
    assert upgrade.detail["key"] == "order:C-1"
    assert (await svc.orders.view("C-2")).tier_multiplier == 1200
    assert await OutboxMessage.filter(member_id=climber.id).count() == 0  # no --notify-tiers
    assert await points.reconcile() == []
    # an API repeat of an imported order is a duplicate with the same answer
    again = await svc.orders.create(
        NewOrder("C-2", MemberLookup("member_code", "CLIMB001"), 1000, T0, "", ""), "t"
    )
    assert again.duplicate
    assert again.points == 12


class _Late(OrderImporter):
    """Skips the check for recorded orders, as if another writer recorded one meanwhile."""

    async def _drop_recorded(self, parsed: list[_Parsed], *_: Any) -> list[_Parsed]:
        return parsed


async def test_a_batch_racing_another_writer_falls_back_to_one_at_a_time(svc: Services) -> None:
    await Member.create(code="RACER001", created_at=T0)
    await svc.orders.create(
        NewOrder("L-2", MemberLookup("member_code", "RACER001"), 500, T0, "", ""), "api"
    )
    rows = [
        _row("L-1", "RACER001", 1000),
        _row("L-2", "RACER001", 500),  # recorded already, same content
        _row("L-3", "RACER001", 700),
        _row("L-4", "RACER001", 700, "2026-06-10T09:00:00+08:00"),
    ]
    rows.append(_row("L-2", "RACER001", 501))  # recorded already, other content
    summary, refused = await _import(svc, rows, _Late(svc.orders, batch=10))
    assert (summary.imported, summary.duplicates) == (3, 1)
    assert [why for _, why in refused] == ["conflicts_with_earlier_row"]
    assert await Order.all().count() == 4
    assert await PointsEntry.filter(kind="earn").count() == 4
    assert (await Member.get(code="RACER001")).points_balance == 10 + 5 + 7 + 7
    assert await points.reconcile() == []


async def test_two_upgrades_in_a_batch_are_one_row_and_one_notice(svc: Services) -> None:
    jumper = await Member.create(code="JUMPER01", created_at=T0)
    rows = [_row("J-1", "JUMPER01", 300000), _row("J-2", "JUMPER01", 300000)]
    summary, _ = await _import(svc, rows, OrderImporter(svc.orders, notify_tiers=True))
    assert summary.imported == 2
    assert (await Member.get(id=jumper.id)).tier == "gold"
    upgrades = await AuditLog.filter(action="tier.upgrade").values_list("detail", flat=True)
    assert upgrades == [{"from": "basic", "to": "gold", "growth": 6000, "key": "order:J-2"}]
    notices = await OutboxMessage.filter(member_id=jumper.id).values_list(
        "idempotency_key", flat=True
    )
    assert notices == [f"notify:tier:{jumper.id}:up:order:J-2"]


async def test_the_documented_sample_parses(svc: Services) -> None:
    sample = Path(__file__).parent.parent / "docs" / "samples" / "orders.csv"
    with sample.open(encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        check_header(reader.fieldnames or [])
        parsed = [parse(svc.orders, row) for row in reader]
    assert [p.order.amount_fen for p in parsed] == [12800, 25650, 9990, 4500]
    assert all(p.order.paid_at.utcoffset() is not None for p in parsed)
