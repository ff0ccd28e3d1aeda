"""``/api/segments``: save (create or replace, audited), list, preview a rule or a saved
name, explain one member; 422 names the rule path; only managers and admins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.config_commerce import ROLES
from storage.models import AuditLog, Segment
from tests.audience_support import follower, member
from tests.conftest import NOW, OA_APPID, AppMaker, api_headers
from tests.segment_support import code_of

Client = TestClient[Any, Any]

GOLD = {"all": [{"field": "tier", "in": ["gold"]}]}
ENDPOINTS = [
    ("POST", "/api/segments", {"name": "gold", "rule": GOLD}),
    ("GET", "/api/segments", None),
    ("POST", "/api/segments/preview", {"rule": GOLD}),
    ("GET", "/api/segments/gold/explain?member=S1", None),
]


@pytest.fixture
async def api(make_client: AppMaker) -> Client:
    return await make_client()


async def _save(api: Client, body: dict[str, Any], role: str = "manager") -> Any:
    return await api.post("/api/segments", json=body, headers=api_headers(role))


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
async def test_only_managers_and_admins(
    api: Client, method: str, path: str, body: dict[str, Any] | None
) -> None:
    for role in ROLES:
        answer = await api.request(method, path, json=body, headers=api_headers(role))
        if role in ("staff", "integration"):
            assert answer.status == 403, role
            assert (await answer.json())["error"] == "forbidden"
        else:
            assert answer.status != 403, role
    assert await Segment.filter(created_by="token:test-staff").count() == 0


async def test_save_creates_replaces_and_audits(api: Client) -> None:
    await member(tier="gold")
    await member(tier="gold", marketing_opt_out=True)
    created = await _save(api, {"name": "gold", "description": "金卡", "rule": GOLD})
    assert created.status == 200
    body = await created.json()
    assert (body["created"], body["rule"], body["created_by"]) == (True, GOLD, "token:test-manager")
    assert body["preview"]["count"] == 1  # marketing by default: the opted-out one is not in
    silver = {"any": [{"field": "tier", "in": ["silver"]}]}
    replaced = await _save(api, {"name": "gold", "rule": silver, "kind": "service"}, role="admin")
    again = await replaced.json()
    assert (again["created"], again["rule"], again["description"]) == (False, silver, "")
    assert again["created_by"] == "token:test-manager"
    assert await Segment.all().count() == 1
    audit = (
        await AuditLog.filter(target="segment:gold").order_by("id").values_list("actor", "action")
    )
    assert audit == [
        ("token:test-manager", "segment.create"),
        ("token:test-admin", "segment.replace"),
    ]
    await _save(api, {"name": "all_members", "rule": {"all": []}})
    listed = await (await api.get("/api/segments", headers=api_headers("manager"))).json()
    assert [(s["name"], s["rule"]) for s in listed["items"]] == [
        ("all_members", {"all": []}),
        ("gold", silver),
    ]


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"all": [GOLD["all"][0], {"field": "points", "min": "many"}]}, "rule.all[1].min"),
        ({"all": [{"any": [{"field": "tier", "in": ["platinum"]}]}]}, "rule.all[0].any[0].in"),
        ({"every": []}, "rule"),
    ],
)
async def test_a_bad_rule_is_422_with_its_path_and_saves_nothing(
    api: Client, rule: dict[str, Any], field: str
) -> None:
    answer = await _save(api, {"name": "bad", "rule": rule})
    assert answer.status == 422
    body = await answer.json()
    assert body["error"] == "invalid_rule"
    assert body["details"][0]["field"] == field
    assert body["message"].startswith(f"{field}: ")
    assert await Segment.all().count() == 0
    assert await AuditLog.all().count() == 0
    preview = await api.post(
        "/api/segments/preview", json={"rule": rule}, headers=api_headers("manager")
    )
    assert preview.status == 422
    assert (await preview.json())["details"][0]["field"] == field


async def test_preview_a_rule_or_a_saved_name(api: Client) -> None:
    now = datetime.fromtimestamp(NOW, UTC)  # the app's pinned wall clock
    fan = await member(tier="gold")
    await follower(fan, OA_APPID, last_message_at=now - timedelta(hours=1))
    await member(tier="gold", marketing_opt_out=True)
    await member(tier="silver")
    headers = api_headers("manager")
    by_rule = await api.post(
        "/api/segments/preview", json={"rule": GOLD, "kind": "service"}, headers=headers
    )
    assert by_rule.status == 200
    found = await by_rule.json()
    assert found["count"] == 2
    assert found["channels"] == {"oa_cs": 1, "oa_template": 0, "wecom": 0, "unreachable": 1}
    assert found["sample"][0] == await code_of(fan)
    missing = await api.post("/api/segments/preview", json={"name": "gold"}, headers=headers)
    assert missing.status == 404
    await _save(api, {"name": "gold", "rule": GOLD})
    by_name = await api.post(
        "/api/segments/preview", json={"name": "gold", "sample": 0}, headers=headers
    )
    assert await by_name.json() == {
        "count": 1,
        "channels": {"oa_cs": 1, "oa_template": 0, "wecom": 0, "unreachable": 0},
        "sample": [],
    }
    both = await api.post(
        "/api/segments/preview", json={"name": "gold", "rule": GOLD}, headers=headers
    )
    assert both.status == 422


async def test_explain_one_member(api: Client) -> None:
    gold = await member(tier="gold", points_balance=10)
    rule = {"all": [GOLD["all"][0], {"field": "points", "min": 100}]}
    await _save(api, {"name": "rich_gold", "rule": rule})
    code = await code_of(gold)
    headers = api_headers("manager")
    answer = await api.get(f"/api/segments/rich_gold/explain?member={code}", headers=headers)
    assert answer.status == 200
    body = await answer.json()
    assert body["holds"] is False
    assert [(c["path"], c["met"]) for c in body["conditions"]] == [
        ("all[0]", True),
        ("all[1]", False),
        ("base", True),
        ("rule", False),
    ]
    nobody = await api.get("/api/segments/rich_gold/explain?member=NOPE", headers=headers)
    assert nobody.status == 404
    unsaved = await api.get(f"/api/segments/other/explain?member={code}", headers=headers)
    assert unsaved.status == 404
    no_member = await api.get("/api/segments/rich_gold/explain", headers=headers)
    assert no_member.status == 422
