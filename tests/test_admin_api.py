"""The admin API base: every guarded route answers 401 without a token and 403 for a
wrong role, errors are JSON with a code, and the OpenAPI document lists the routes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.admin import endpoints
from bot.admin.api import Actor, authenticate, permits
from bot.config_commerce import ROLES, AdminSettings
from tests.conftest import API_TOKENS, AppMaker, api_headers

Client = TestClient[Any, Any]


@pytest.fixture
async def api(make_client: AppMaker) -> Client:
    return await make_client()


def _concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", "1", path)


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, ops in document["paths"].items()
        for method, op in ops.items()
    ]


async def test_openapi_is_public_and_lists_every_declared_route(api: Client) -> None:
    response = await api.get("/api/openapi.json")
    assert response.status == 200
    document = await response.json()
    assert document["openapi"].startswith("3.")
    listed = {(m, p) for m, p, _ in _operations(document)}
    declared = {(e.method, e.path) for e in endpoints()}
    assert listed == declared
    assert ("GET", "/api/openapi.json") not in listed


async def test_every_route_refuses_no_token_and_a_wrong_role(api: Client) -> None:
    document = await (await api.get("/api/openapi.json")).json()
    operations = _operations(document)
    assert operations, "no guarded routes declared"
    for method, path, op in operations:
        url = _concrete(path)
        anonymous = await api.request(method, url, json={})
        assert anonymous.status == 401, (method, path)
        assert (await anonymous.json())["error"] == "unauthorized"
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
        bad = await api.request(method, url, json={}, headers={"Authorization": "Bearer nope"})
        assert bad.status == 401, (method, path)
        wrong = [role for role in ROLES if role not in op["x-roles"]]
        assert wrong, f"{method} {path}: every role may call it"
        for role in wrong:
            refused = await api.request(method, url, json={}, headers=api_headers(role))
            assert refused.status == 403, (method, path, role)
            assert (await refused.json())["error"] == "forbidden"


async def test_unknown_api_paths_and_methods_answer_json(api: Client) -> None:
    missing = await api.get("/api/nothing-here", headers=api_headers("admin"))
    assert missing.status == 404
    assert (await missing.json())["error"] == "not_found"
    wrong_method = await api.delete("/api/audit-log", headers=api_headers("admin"))
    assert wrong_method.status == 405
    assert (await wrong_method.json())["error"] == "method_not_allowed"


async def test_query_validation_names_the_field(api: Client) -> None:
    response = await api.get("/api/audit-log?limit=0", headers=api_headers("admin"))
    assert response.status == 422
    body = await response.json()
    assert body["error"] == "invalid_request"
    assert body["details"][0]["field"] == "limit"
    unknown = await api.get("/api/audit-log?colour=red", headers=api_headers("admin"))
    assert unknown.status == 422


async def test_audit_log_pages_newest_first(api: Client) -> None:
    from storage.repos import audit_log

    for n in range(5):
        await audit_log.record("token:x", "test.action", f"t{n}", {"n": n}, _now())
    first = await api.get("/api/audit-log?limit=2", headers=api_headers("manager"))
    page = await first.json()
    assert [row["target"] for row in page["items"]] == ["t4", "t3"]
    second = await api.get(
        f"/api/audit-log?limit=2&before_id={page['next_before_id']}", headers=api_headers("admin")
    )
    assert [row["target"] for row in (await second.json())["items"]] == ["t2", "t1"]
    filtered = await api.get("/api/audit-log?target=t0", headers=api_headers("manager"))
    assert [row["detail"] for row in (await filtered.json())["items"]] == [{"n": 0}]


def test_permits_is_one_rule_for_tokens_and_staff() -> None:
    assert permits("admin", ())
    assert permits("manager", ("manager",))
    assert not permits("staff", ("manager", "integration"))


def test_authenticate_matches_tokens_exactly() -> None:
    settings = AdminSettings.model_validate(
        {"tokens": [{"name": "pos", "role": "integration", "token": API_TOKENS["integration"]}]}
    )
    assert authenticate(settings, f"Bearer {API_TOKENS['integration']}") == Actor(
        "token:pos", "integration"
    )
    assert authenticate(settings, f"Bearer {API_TOKENS['integration']}x") is None
    assert authenticate(settings, API_TOKENS["integration"]) is None
    assert authenticate(settings, None) is None


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
