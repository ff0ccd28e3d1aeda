"""``/api/rewards``: create (409 on a taken code), update what is sent, validation, roles,
audit rows; an API reward survives the start-up upsert of ``[[rewards]]``."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from storage.models import AuditLog, Reward
from tests.conftest import AppMaker, api_headers, base_config, make_settings

Client = TestClient[Any, Any]

CONFIGURED = {
    "code": "C10",
    "name": "10元无门槛券",
    "cost_points": 1000,
    "stock": 500,
    "coupon_value_fen": 1000,
}
NEW = {"code": "gift5", "name": "5元券", "cost_points": 500, "stock": 20, "coupon_value_fen": 500}


@pytest.fixture
async def api(make_client: AppMaker, database: str) -> Client:
    raw = base_config(database)
    raw["rewards"] = [CONFIGURED]
    return await make_client(make_settings(raw))


async def _create(api: Client, body: dict[str, Any]) -> Any:
    return await api.post("/api/rewards", json=body, headers=api_headers("manager"))


async def _patch(api: Client, code: str, body: dict[str, Any]) -> Any:
    return await api.patch(f"/api/rewards/{code}", json=body, headers=api_headers("manager"))


async def test_create_lists_and_audits(api: Client) -> None:
    created = await _create(api, NEW)
    assert created.status == 201
    body = await created.json()
    assert (body["code"], body["source"], body["stock"], body["active"]) == (
        "GIFT5",
        "api",
        20,
        True,
    )
    listed = await (await api.get("/api/rewards", headers=api_headers("staff"))).json()
    assert [(r["code"], r["source"]) for r in listed["items"]] == [
        ("C10", "config"),
        ("GIFT5", "api"),
    ]
    audit = await AuditLog.get(action="reward.create")
    assert (audit.actor, audit.target, audit.detail["cost_points"]) == (
        "token:test-manager",
        "reward:GIFT5",
        500,
    )
    forbidden = await api.get("/api/rewards", headers=api_headers("integration"))
    assert forbidden.status == 403
    as_staff = await api.post("/api/rewards", json=NEW, headers=api_headers("staff"))
    assert as_staff.status == 403


async def test_a_taken_code_is_409_whatever_its_case(api: Client) -> None:
    taken = await _create(api, {**NEW, "code": "c10"})
    assert taken.status == 409
    assert (await taken.json())["error"] == "reward_exists"
    assert await Reward.all().count() == 1
    assert await AuditLog.filter(action="reward.create").count() == 0


@pytest.mark.parametrize(
    "body",
    [
        {**NEW, "coupon_discount": 850},  # both kinds
        {**NEW, "coupon_value_fen": 0},  # neither
        {**NEW, "cost_points": 0},
        {**NEW, "code": "has space"},
        {**NEW, "colour": "red"},
        {
            **NEW,
            "available_from": "2027-01-02T00:00:00+08:00",
            "available_to": "2027-01-01T00:00:00+08:00",
        },
        {**NEW, "available_from": "2027-01-02T00:00:00"},  # no offset
    ],
)
async def test_create_validates(api: Client, body: dict[str, Any]) -> None:
    response = await _create(api, body)
    assert response.status == 422
    assert (await response.json())["error"] == "invalid_request"
    assert await Reward.filter(code="GIFT5").count() == 0


async def test_update_changes_what_is_sent_and_audits(api: Client) -> None:
    await _create(api, NEW)
    response = await _patch(api, "gift5", {"cost_points": 450, "stock": None, "active": False})
    assert response.status == 200
    body = await response.json()
    assert (body["cost_points"], body["stock"], body["active"], body["name"]) == (
        450,
        None,
        False,
        "5元券",
    )
    audit = await AuditLog.get(action="reward.update")
    assert audit.detail == {"cost_points": 450, "stock": None, "active": False}
    window = await _patch(api, "GIFT5", {"available_from": "2027-01-01T00:00:00+08:00", "stock": 3})
    assert (await window.json())["available_from"].startswith("2026-12-31T16:00:00")


async def test_update_refusals(api: Client) -> None:
    missing = await _patch(api, "NOPE", {"stock": 1})
    assert missing.status == 404
    both = await _patch(api, "C10", {"coupon_discount": 900})
    assert both.status == 422
    null_name = await _patch(api, "C10", {"name": None})
    assert null_name.status == 422
    unknown = await _patch(api, "C10", {"stocks": 1})
    assert unknown.status == 422
    as_staff = await api.patch("/api/rewards/C10", json={"stock": 1}, headers=api_headers("staff"))
    assert as_staff.status == 403
    reward = await Reward.get(code="C10")
    assert (reward.stock, reward.coupon_discount, reward.name) == (500, 0, "10元无门槛券")
    assert (await _patch(api, "C10", {})).status == 200
    assert await AuditLog.filter(action="reward.update").count() == 0


async def test_switching_the_coupon_kind_in_one_patch(api: Client) -> None:
    response = await _patch(api, "C10", {"coupon_value_fen": 0, "coupon_discount": 880})
    assert response.status == 200
    body = await response.json()
    assert (body["coupon_value_fen"], body["coupon_discount"]) == (0, 880)


async def test_a_restart_leaves_api_rewards_and_stock_alone(
    make_client: AppMaker, api: Client, database: str
) -> None:
    await _create(api, {**NEW, "code": "C20"})
    await _patch(api, "C10", {"stock": 7})
    raw = base_config(database)
    raw["rewards"] = [
        {**CONFIGURED, "name": "改名", "stock": 999},
        {**CONFIGURED, "code": "C20", "name": "配置的", "stock": 999},
    ]
    await make_client(make_settings(raw))  # a restart: the upsert runs on start
    c10, c20 = await Reward.get(code="C10"), await Reward.get(code="C20")
    assert (c10.name, c10.stock, c10.source) == ("改名", 7, "config")
    assert (c20.name, c20.stock, c20.source) == ("5元券", 20, "api")
