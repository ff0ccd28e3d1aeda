"""``/api/coupons``: use at the till (idempotent on the order, one winner in a race),
refusals with stable codes, restore on refund, listing, lookup, void; the expiry command."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.cli import main
from storage.models import AuditLog, Coupon, Member
from storage.repos import coupons
from tests.cli_support import with_db, write_config
from tests.conftest import NOW, AppMaker, api_headers

Client = TestClient[Any, Any]
AT = datetime.fromtimestamp(NOW, UTC)  # the pinned wall clock


@pytest.fixture
async def api(make_client: AppMaker) -> Client:
    return await make_client()


async def _coupon(
    code: str,
    *,
    member: str = "MCOUPON1",
    value_fen: int = 1000,
    discount: int = 0,
    start: timedelta = timedelta(days=-1),
    end: timedelta = timedelta(days=10),
) -> Coupon:
    owner, _ = await Member.get_or_create(code=member, defaults={"created_at": AT})
    return await coupons.issue(
        member_id=int(owner.id),
        name="10元券",
        value_fen=value_fen,
        discount=discount,
        valid_from=AT + start,
        valid_to=AT + end,
        now=AT,
        code=lambda: code,
    )


async def _use(api: Client, code: str, order: str, **body: Any) -> Any:
    return await api.post(
        f"/api/coupons/{code}/redeem",
        json={"order_id": order, **body},
        headers=api_headers("integration"),
    )


async def test_use_marks_the_coupon_used_once_per_order(api: Client, database: str) -> None:
    await _coupon("AAAA2222BB")
    first = await _use(api, "aaaa2222bb", "POS-1", store="S01", amount_fen=800)
    assert first.status == 200
    body = await first.json()
    assert body["duplicate"] is False
    assert body["discount_fen"] == 800  # a 10-yuan coupon on an 8-yuan order
    assert body["coupon"]["state"] == "used"
    assert body["coupon"]["used_order_id"] == "POS-1"
    again = await _use(api, "AAAA2222BB", "POS-1", amount_fen=800)
    assert again.status == 200
    repeat = await again.json()
    assert repeat["duplicate"] is True
    assert repeat["coupon"] == body["coupon"]
    other = await _use(api, "AAAA2222BB", "POS-2")
    assert other.status == 409
    assert (await other.json())["error"] == "coupon_used"
    audits = await AuditLog.filter(action="coupon.use")
    assert [(a.actor, a.target, a.detail["order_id"], a.detail["store"]) for a in audits] == [
        ("token:test-integration", "coupon:AAAA2222BB", "POS-1", "S01")
    ]


async def test_a_discount_coupon_reports_what_it_takes_off(api: Client, database: str) -> None:
    await _coupon("DDDD2222EE", value_fen=0, discount=850)
    body = await (await _use(api, "DDDD2222EE", "POS-9", amount_fen=10_001)).json()
    assert body["discount_fen"] == 1500  # 15 % of 100.01 yuan, rounded down
    assert body["coupon"]["discount"] == 850


async def test_refusals_have_stable_codes(api: Client, database: str) -> None:
    await _coupon("EXPD2222AA", end=timedelta(seconds=0))
    await _coupon("SOON2222AA", start=timedelta(hours=1))
    voided = await _coupon("VOID2222AA")
    await Coupon.filter(id=voided.id).update(state="voided")
    cases = {
        "EXPD2222AA": (409, "coupon_expired"),
        "SOON2222AA": (409, "coupon_not_yet_valid"),
        "VOID2222AA": (409, "coupon_voided"),
        "NONE2222AA": (404, "not_found"),
    }
    for code, (status, error) in cases.items():
        response = await _use(api, code, "POS-3")
        assert (response.status, (await response.json())["error"]) == (status, error), code
    assert await Coupon.filter(state="used").count() == 0


async def test_use_validates_its_body_and_role(api: Client, database: str) -> None:
    await _coupon("BODY2222AA")
    empty = await _use(api, "BODY2222AA", "")
    assert empty.status == 422
    extra = await _use(api, "BODY2222AA", "POS-4", discount=5)
    assert extra.status == 422
    as_staff = await api.post(
        "/api/coupons/BODY2222AA/redeem", json={"order_id": "POS-4"}, headers=api_headers("staff")
    )
    assert as_staff.status == 403
    assert (await Coupon.get(code="BODY2222AA")).state == "issued"


async def test_two_tills_racing_for_one_coupon_one_wins(api: Client, database: str) -> None:
    await _coupon("RACE2222AA")
    responses = await asyncio.gather(*(_use(api, "RACE2222AA", f"POS-{n}") for n in range(10)))
    statuses = sorted(r.status for r in responses)
    assert statuses == [200] + [409] * 9
    assert await AuditLog.filter(action="coupon.use").count() == 1


async def test_a_refund_restores_the_coupon_for_another_order(api: Client, database: str) -> None:
    await _coupon("RFND2222AA")
    assert (await _use(api, "RFND2222AA", "POS-7")).status == 200
    assert await coupons.restore_for_order("POS-7", AT) == ["RFND2222AA"]
    restored = await Coupon.get(code="RFND2222AA")
    assert (restored.state, restored.used_order_id) == ("issued", None)
    assert (await _use(api, "RFND2222AA", "POS-8")).status == 200


async def test_list_filters_and_pages(api: Client, database: str) -> None:
    for n in range(3):
        await _coupon(f"LIST{n}222AA", member="MLIST001")
    await _coupon("OTHR2222AA", member="MLIST002")
    await _use(api, "LIST0222AA", "POS-L")
    first = await api.get("/api/coupons?member_code=MLIST001&limit=2", headers=api_headers("staff"))
    page = await first.json()
    assert [c["code"] for c in page["items"]] == ["LIST2222AA", "LIST1222AA"]
    more = await api.get(
        f"/api/coupons?member_code=MLIST001&before_id={page['next_before_id']}",
        headers=api_headers("manager"),
    )
    rest = await more.json()
    assert [c["code"] for c in rest["items"]] == ["LIST0222AA"]
    assert rest["next_before_id"] is None
    used = await (await api.get("/api/coupons?state=used", headers=api_headers("staff"))).json()
    assert [(c["code"], c["member_code"]) for c in used["items"]] == [("LIST0222AA", "MLIST001")]
    bad = await api.get("/api/coupons?state=lost", headers=api_headers("staff"))
    assert bad.status == 422
    refused = await api.get("/api/coupons", headers=api_headers("integration"))
    assert refused.status == 403


async def test_show_one_coupon(api: Client, database: str) -> None:
    await _coupon("SHOW2222AA")
    shown = await api.get("/api/coupons/show2222aa", headers=api_headers("integration"))
    assert shown.status == 200
    body = await shown.json()
    assert (body["code"], body["state"], body["member_code"]) == (
        "SHOW2222AA",
        "issued",
        "MCOUPON1",
    )
    missing = await api.get("/api/coupons/NOPE", headers=api_headers("manager"))
    assert missing.status == 404


async def test_void_is_audited_once_and_refuses_used_coupons(api: Client, database: str) -> None:
    await _coupon("VOID3333AA")
    await _coupon("USED3333AA")
    await _use(api, "USED3333AA", "POS-V")
    for _ in range(2):
        voided = await api.post("/api/coupons/VOID3333AA/void", headers=api_headers("manager"))
        assert voided.status == 200
        assert (await voided.json())["state"] == "voided"
    assert await AuditLog.filter(action="coupon.void").count() == 1
    used = await api.post("/api/coupons/USED3333AA/void", headers=api_headers("manager"))
    assert (used.status, (await used.json())["error"]) == (409, "coupon_used")
    assert (await _use(api, "VOID3333AA", "POS-X")).status == 409


# --- python -m bot coupons expire ------------------------------------------------------


async def _seed_expiry() -> None:
    await _coupon("PAST2222AA", end=timedelta(days=-1))
    await _coupon("LIVE2222AA", end=timedelta(days=5))
    used = await _coupon("USED2222AA", end=timedelta(days=-1))
    await Coupon.filter(id=used.id).update(state="used", used_order_id="o1")


def test_expire_command_is_set_based_idempotent_and_audited(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url)
    with_db(db_url, _seed_expiry, fresh=True)
    capsys.readouterr()
    at = AT.isoformat()
    assert main(["--config", config, "coupons", "expire", "--at", at]) == 0
    assert "expired 1 coupons" in capsys.readouterr().out
    assert main(["--config", config, "coupons", "expire", "--at", at]) == 0
    assert "expired 0 coupons" in capsys.readouterr().out

    async def states() -> dict[str, str]:
        return dict(await Coupon.all().values_list("code", "state"))  # type: ignore[arg-type]

    assert with_db(db_url, states) == {
        "PAST2222AA": "expired",
        "LIVE2222AA": "issued",
        "USED2222AA": "used",
    }
    later = (AT + timedelta(days=6)).isoformat()
    assert main(["--config", config, "coupons", "expire", "--at", later]) == 0
    assert "expired 1 coupons" in capsys.readouterr().out
    runs = with_db(db_url, lambda: AuditLog.filter(action="coupons.expire").order_by("id"))
    assert [r.detail["coupons"] for r in runs] == [1, 0, 1]
    assert main(["--config", config, "coupons", "expire", "--at", "soon"]) == 2
    assert "is not an ISO date" in capsys.readouterr().err
