"""``/api/orders``: create (201, 200 on a repeat, 409 on other content), read, refund, audit;
the same order posted at once through two app instances is awarded once."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient

from bot.services import points
from storage.cache import MemoryCache
from storage.models import AuditLog, GrowthEntry, Identity, Member, Order, PointsEntry, PointsLot
from tests.cli_support import HMAC_KEY, MOBILE_KEY
from tests.conftest import OA_APPID, AppMaker, api_headers, base_config, make_settings
from tests.fakes import FakeWall
from tests.test_signin_concurrency import wide_pool  # noqa: F401 (a fixture)

Client = TestClient[Any, Any]
SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 6, 10, 9, 0, tzinfo=SH)
POS = api_headers("integration")


def _settings(db_url: str) -> Any:
    return make_settings(
        base_config(db_url), security={"mobile_key": MOBILE_KEY, "mobile_hmac_key": HMAC_KEY}
    )


@pytest.fixture
async def api(make_client: AppMaker, database: str, wall: FakeWall) -> Client:
    wall.now = T0.timestamp()
    return await make_client(_settings(database))


async def _member(code: str = "APIBUY01", openid: str = "oApiBuyer") -> Member:
    made = await Member.create(code=code, created_at=T0)
    await Identity.create(
        kind="oa_openid", app=OA_APPID, value=openid, member_id=made.id, created_at=T0
    )
    return made


def _body(ext: str = "POS-1", amount: int = 12800, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "external_id": ext,
        "openid": "oApiBuyer",
        "amount_fen": amount,
        "channel": "pos",
        "store": "SH-01",
        "paid_at": "2026-06-10T09:00:00+08:00",
    }
    body.update(extra)
    return body


async def test_create_read_and_repeat(api: Client) -> None:
    m = await _member()
    created = await api.post("/api/orders", json=_body(), headers=POS)
    assert created.status == 201
    answer = await created.json()
    assert answer["member_code"] == m.code
    assert (answer["points"], answer["growth"], answer["balance"], answer["debt"]) == (
        128,
        128,
        128,
        0,
    )
    assert (answer["base"], answer["tier_multiplier"], answer["day_multiplier"]) == (
        128,
        1000,
        1000,
    )
    assert answer["duplicate"] is False
    assert answer["refunds"] == []
    again = await api.post("/api/orders", json=_body(), headers=POS)
    assert again.status == 200
    assert (await again.json())["duplicate"] is True
    other = await api.post("/api/orders", json=_body(amount=12801), headers=POS)
    assert other.status == 409
    assert (await other.json())["error"] == "order_conflict"
    shown = await api.get("/api/orders/POS-1", headers=api_headers("manager"))
    assert shown.status == 200
    assert (await shown.json())["points"] == 128
    rows = await AuditLog.filter(action="order.create").values("actor", "target")
    assert rows == [{"actor": "token:test-integration", "target": "order:POS-1"}]


async def test_refund_through_the_api(api: Client) -> None:
    await _member()
    await api.post("/api/orders", json=_body(amount=1000), headers=POS)
    url = "/api/orders/POS-1/refund"
    first = await api.post(url, json={"refund_id": "R1", "amount_fen": 400}, headers=POS)
    assert first.status == 200
    answer = await first.json()
    assert (answer["refunded_fen"], answer["points_reversed"], answer["balance"]) == (400, 4, 6)
    assert answer["refund"]["refund_id"] == "R1"
    assert answer["restored_coupons"] == []
    assert [r["refund_id"] for r in answer["refunds"]] == ["R1"]
    again = await api.post(url, json={"refund_id": "R1", "amount_fen": 400}, headers=POS)
    assert (await again.json())["duplicate"] is True
    conflict = await api.post(url, json={"refund_id": "R1", "amount_fen": 300}, headers=POS)
    assert (conflict.status, (await conflict.json())["error"]) == (409, "refund_conflict")
    over = await api.post(url, json={"refund_id": "R2", "amount_fen": 601}, headers=POS)
    assert (over.status, (await over.json())["error"]) == (409, "refund_exceeds_order")
    missing = await api.post(
        "/api/orders/NOPE/refund", json={"refund_id": "R1", "amount_fen": 1}, headers=POS
    )
    assert (missing.status, (await missing.json())["error"]) == (404, "order_not_found")
    assert await AuditLog.filter(action="order.refund", actor="token:test-integration").count() == 1


async def test_member_references_are_validated(api: Client) -> None:
    await _member()
    two = await api.post("/api/orders", json=_body(member_code="APIBUY01"), headers=POS)
    assert (two.status, (await two.json())["error"]) == (422, "invalid_request")
    none = _body()
    del none["openid"]
    assert (await api.post("/api/orders", json=none, headers=POS)).status == 422
    naive = await api.post("/api/orders", json=_body(paid_at="2026-06-10T09:00:00"), headers=POS)
    assert naive.status == 422
    zero = await api.post("/api/orders", json=_body(amount=0), headers=POS)
    assert zero.status == 422
    unknown = await api.post("/api/orders", json=_body(openid="oStranger"), headers=POS)
    assert (unknown.status, (await unknown.json())["error"]) == (404, "member_not_found")
    account = await api.post("/api/orders", json=_body(account="nope"), headers=POS)
    assert (account.status, (await account.json())["error"]) == (422, "unknown_account")
    bad_mobile = _body(mobile="12345")
    del bad_mobile["openid"]
    refused = await api.post("/api/orders", json=bad_mobile, headers=POS)
    assert (refused.status, (await refused.json())["error"]) == (422, "invalid_mobile")
    mobile = _body(ext="POS-M", mobile="13700137000")
    del mobile["openid"]
    made = await api.post("/api/orders", json=mobile, headers=POS)
    assert made.status == 201
    assert await Order.all().count() == 1


async def test_mobile_orders_need_the_keys(
    make_client: AppMaker, database: str, wall: FakeWall
) -> None:
    wall.now = T0.timestamp()
    api = await make_client(make_settings(base_config(database)))
    body = _body(mobile="13700137000")
    del body["openid"]
    answer = await api.post("/api/orders", json=body, headers=POS)
    assert (answer.status, (await answer.json())["error"]) == (503, "mobile_keys_missing")


async def test_five_posts_at_once_through_two_instances_award_once(
    make_client: AppMaker,
    wall: FakeWall,
    wide_pool: str,  # noqa: F811
) -> None:
    wall.now = T0.timestamp()
    settings = _settings(wide_pool)
    clients = [await make_client(settings, cache=MemoryCache()) for _ in range(2)]
    m = await _member()
    posts = [clients[i % 2].post("/api/orders", json=_body(), headers=POS) for i in range(5)]
    responses = await asyncio.gather(*posts)
    statuses = sorted(r.status for r in responses)
    assert statuses == [200, 200, 200, 200, 201]
    answers = [await r.json() for r in responses]
    assert {a["points"] for a in answers} == {128}
    assert sum(a["duplicate"] for a in answers) == 4
    assert await Order.all().count() == 1
    assert await PointsEntry.filter(member_id=m.id).count() == 1
    assert await PointsLot.filter(member_id=m.id).count() == 1
    assert await GrowthEntry.filter(member_id=m.id).count() == 1
    assert await AuditLog.filter(action="order.create").count() == 1
    assert (await Member.get(id=m.id)).points_balance == 128
    assert await points.reconcile() == []
