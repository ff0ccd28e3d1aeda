"""``/api/broadcasts``: create (segment or inline rule, optional schedule), list, status,
preview, schedule, start (enqueue in the background), pause, resume, cancel, report;
404/409/422 with codes; only managers and admins; every change audited with the token."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.appkeys import SERVICES
from bot.config_commerce import ROLES
from bot.context import Services
from bot.services.broadcast_sql import NO_WINDOW
from sop.sql import sql
from storage.models import AuditLog, Broadcast, OutboxMessage
from tests.broadcast_support import members
from tests.conftest import AppMaker, api_headers

Client = TestClient[Any, Any]

GOLD = {"all": [{"field": "tier", "in": ["gold"]}]}
PROMO = {"variables": {"headline": "双十一", "body": "8 折"}}
DRAFT = {"name": "双十一", "channel": "oa_cs", "template": "broadcast_promo", "content": PROMO}


@pytest.fixture
async def api(make_client: AppMaker) -> Client:
    return await make_client()


def _services(api: Client) -> Services:
    return api.app[SERVICES]


async def _post(api: Client, path: str, body: Any = None, role: str = "manager") -> Any:
    return await api.post(path, json=body, headers=api_headers(role))


async def _get(api: Client, path: str, role: str = "manager") -> Any:
    return await api.get(path, headers=api_headers(role))


async def _draft(api: Client, **body: Any) -> int:
    answer = await _post(api, "/api/broadcasts", {**DRAFT, "rule": GOLD, **body})
    assert answer.status == 201, await answer.text()
    return int((await answer.json())["id"])


async def _started(api: Client) -> int:
    """A sending broadcast with a pending row: a new member (earlier broadcasts may have
    used the others' customer-service slots)."""
    await members(_services(api), 1)
    broadcast_id = await _draft(api)
    assert (await _post(api, f"/api/broadcasts/{broadcast_id}/start")).status == 202
    await _services(api).background.idle()
    return broadcast_id


async def _paused(api: Client) -> int:
    broadcast_id = await _started(api)
    assert (await _post(api, f"/api/broadcasts/{broadcast_id}/pause")).status == 200
    return broadcast_id


Prepare = Callable[[Client], Awaitable[int]]
# (method, path with {id}, body, a broadcast in the state the call needs, success status)
ENDPOINTS: list[tuple[str, str, Any, Prepare | None, int]] = [
    ("POST", "/api/broadcasts", {**DRAFT, "rule": GOLD}, None, 201),
    ("GET", "/api/broadcasts", None, None, 200),
    ("GET", "/api/broadcasts/{id}", None, _draft, 200),
    ("POST", "/api/broadcasts/{id}/preview", None, _draft, 200),
    ("POST", "/api/broadcasts/{id}/schedule", {"at": "2030-01-01T10:00"}, _draft, 200),
    ("POST", "/api/broadcasts/{id}/start", None, _draft, 202),
    ("POST", "/api/broadcasts/{id}/pause", None, _started, 200),
    ("POST", "/api/broadcasts/{id}/resume", None, _paused, 200),
    ("POST", "/api/broadcasts/{id}/cancel", None, _draft, 200),
    ("GET", "/api/broadcasts/{id}/report", None, _started, 200),
]


@pytest.mark.parametrize(("method", "path", "body", "prepare", "ok"), ENDPOINTS)
async def test_only_managers_and_admins(
    api: Client, method: str, path: str, body: Any, prepare: Prepare | None, ok: int
) -> None:
    for role in (None, *ROLES):
        url = path.format(id=await prepare(api)) if prepare else path
        headers = api_headers(role) if role else {}
        answer = await api.request(method, url, json=body, headers=headers)
        await _services(api).background.idle()
        if role is None:
            assert answer.status == 401
        elif role in ("staff", "integration"):
            assert answer.status == 403, role
            assert (await answer.json())["error"] == "forbidden"
        else:
            assert answer.status == ok, (role, await answer.text())
    refused = AuditLog.filter(actor__in=("token:test-staff", "token:test-integration"))
    assert not await refused.exists()


async def test_create_from_a_saved_segment_scheduled_and_audited(api: Client) -> None:
    await _post(api, "/api/segments", {"name": "gold", "rule": GOLD})
    now = _services(api).clock.now()
    at = (now + timedelta(days=1)).isoformat()
    body = {**DRAFT, "segment": "gold", "scheduled_at": at}
    answer = await _post(api, "/api/broadcasts", body, role="admin")
    assert answer.status == 201
    made = await answer.json()
    assert (made["state"], made["segment"], made["account"]) == ("scheduled", "gold", "brand")
    assert made["created_by"] == "token:test-admin"
    audit = await AuditLog.filter(target=f"broadcast:{made['id']}").order_by("id")
    assert [(a.actor, a.action) for a in audit] == [
        ("token:test-admin", "broadcast.create"),
        ("token:test-admin", "broadcast.scheduled"),
    ]


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        ({"segment": "nope"}, 404, "not_found", "segment nope not found"),
        ({"rule": {"all": [{"field": "tier", "in": "gold"}]}}, 422, "invalid_rule", "rule.all[0]"),
        ({"rule": GOLD, "segment": "gold"}, 422, "invalid_request", "either segment or rule"),
        ({"rule": GOLD, "content": {}}, 422, "invalid_broadcast", "needs variables body"),
        ({"rule": GOLD, "channel": "fax"}, 422, "invalid_broadcast", "channel must be one of"),
        ({"rule": GOLD, "account": "x"}, 422, "invalid_broadcast", "no Official Account"),
        ({"rule": GOLD, "scheduled_at": "2020-01-01T00:00"}, 422, "invalid_request", "future"),
        ({"rule": GOLD, "content": {"variables": "ab"}}, 422, "invalid_broadcast", "variables"),
        ({"rule": GOLD, "content": {"variables": [1, 2]}}, 422, "invalid_broadcast", "variables"),
    ],
)
async def test_create_refuses_bad_input_naming_it(
    api: Client, body: dict[str, Any], status: int, code: str, message: str
) -> None:
    answer = await _post(api, "/api/broadcasts", {**DRAFT, **body})
    assert answer.status == status
    error = await answer.json()
    assert error["error"] == code
    assert message in error["message"]
    assert not await Broadcast.exists()


async def test_start_enqueues_in_the_background_and_status_shows_it(api: Client) -> None:
    await members(_services(api), 3)
    await members(_services(api), 1, wrote=None)
    broadcast_id = await _draft(api)
    preview = await (await _post(api, f"/api/broadcasts/{broadcast_id}/preview")).json()
    assert preview == {
        "channel": "oa_cs",
        "total": 4,
        "reached": 3,
        "excluded": {NO_WINDOW: 1},
    }
    answer = await _post(api, f"/api/broadcasts/{broadcast_id}/start", role="admin")
    assert answer.status == 202
    assert (await answer.json())["state"] == "sending"
    await _services(api).background.idle()
    status = await (await _get(api, f"/api/broadcasts/{broadcast_id}")).json()
    assert status["state"] == "sending"
    assert status["reach"]["enqueued"] is True
    assert status["reach"]["excluded"] == {NO_WINDOW: 1}
    assert status["rows"] == {"pending": 3, "skipped": 1}
    report = await (await _get(api, f"/api/broadcasts/{broadcast_id}/report")).json()
    assert report["channels"]["oa_cs"]["skipped"] == {"count": 1, "reasons": {NO_WINDOW: 1}}
    started = await AuditLog.get(target=f"broadcast:{broadcast_id}", action="broadcast.sending")
    assert started.actor == "token:test-admin"


async def test_a_failed_background_enqueue_is_logged_and_kept(
    api: Client, caplog: pytest.LogCaptureFixture
) -> None:
    _services(api).broadcasts.audience_for = lambda b: sql("no_such_column = {}", 1)
    broadcast_id = await _draft(api)
    with caplog.at_level(logging.ERROR, logger="bot.admin.broadcasts"):
        assert (await _post(api, f"/api/broadcasts/{broadcast_id}/start")).status == 202
        await _services(api).background.idle()
    assert "broadcast enqueue failed" in caplog.text
    status = await (await _get(api, f"/api/broadcasts/{broadcast_id}")).json()
    assert status["state"] == "sending"
    assert "no_such_column" in status["reach"]["enqueue_error"]
    assert not status["reach"].get("enqueued")


async def test_pause_resume_cancel_and_state_conflicts(api: Client) -> None:
    await members(_services(api), 2)
    broadcast_id = await _started(api)
    base = f"/api/broadcasts/{broadcast_id}"
    again = await _post(api, f"{base}/start")
    assert again.status == 409
    conflict = await again.json()
    assert conflict["error"] == "state_conflict"
    assert (
        conflict["message"]
        == f"broadcast {broadcast_id} is sending: start needs draft or scheduled"
    )
    assert conflict["details"] == [
        {"state": "sending", "action": "start", "allowed": ["draft", "scheduled"]}
    ]
    assert (await (await _post(api, f"{base}/resume")).json())["error"] == "state_conflict"
    paused = await (await _post(api, f"{base}/pause")).json()
    assert paused == {"id": broadcast_id, "state": "paused", "rows": 3}
    assert await OutboxMessage.filter(status="held").count() == 3
    resumed = await (await _post(api, f"{base}/resume", role="admin")).json()
    assert resumed == {"id": broadcast_id, "state": "sending", "rows": 3}
    cancelled = await (await _post(api, f"{base}/cancel")).json()
    assert cancelled == {"id": broadcast_id, "state": "cancelled", "rows": 3}
    late = await _post(api, f"{base}/schedule", {"at": "2030-01-01T10:00"})
    assert (late.status, (await late.json())["error"]) == (409, "state_conflict")
    actions = await AuditLog.filter(target=f"broadcast:{broadcast_id}").order_by("id")
    assert [(a.actor, a.action) for a in actions][-3:] == [
        ("token:test-manager", "broadcast.paused"),
        ("token:test-admin", "broadcast.sending"),
        ("token:test-manager", "broadcast.cancelled"),
    ]


@pytest.mark.parametrize("path", ["/api/broadcasts/999", "/api/broadcasts/x/report"])
async def test_unknown_broadcasts_are_404(api: Client, path: str) -> None:
    answer = await _get(api, path)
    assert answer.status == 404
    assert (await answer.json())["error"] == "not_found"
    missing = await _post(api, "/api/broadcasts/999/pause")
    assert (missing.status, (await missing.json())["message"]) == (404, "broadcast 999 not found")


async def test_schedule_needs_a_future_time(api: Client) -> None:
    broadcast_id = await _draft(api)
    past = await _post(api, f"/api/broadcasts/{broadcast_id}/schedule", {"at": "2020-01-01"})
    assert past.status == 422
    assert (await past.json())["details"][0]["field"] == "at"
    later = await _post(api, f"/api/broadcasts/{broadcast_id}/schedule", {"at": "2030-01-01"})
    assert (await later.json())["state"] == "scheduled"


async def test_list_pages_newest_first(api: Client) -> None:
    ids = [await _draft(api, name=f"b{n}") for n in range(3)]
    await _post(api, f"/api/broadcasts/{ids[0]}/cancel")
    page = await (await _get(api, "/api/broadcasts?limit=2")).json()
    assert [b["id"] for b in page["items"]] == [ids[2], ids[1]]
    rest = await (await _get(api, f"/api/broadcasts?before_id={page['next_before_id']}")).json()
    assert ([b["id"] for b in rest["items"]], rest["next_before_id"]) == ([ids[0]], None)
    cancelled = await (await _get(api, "/api/broadcasts?state=cancelled")).json()
    assert [b["name"] for b in cancelled["items"]] == ["b0"]
    assert (await _get(api, "/api/broadcasts?state=lost")).status == 422
    huge = await _get(api, "/api/broadcasts?before_id=99999999999999999999")  # past bigint
    assert (huge.status, (await huge.json())["error"]) == (422, "invalid_request")


async def test_the_endpoints_are_in_the_openapi_document(api: Client) -> None:
    document = await (await api.get("/api/openapi.json")).json()
    paths = {p: ops for p, ops in document["paths"].items() if p.startswith("/api/broadcasts")}
    declared = {
        (m.upper(), p[len("/api/broadcasts") :] or "/") for p, ops in paths.items() for m in ops
    }
    assert declared == {
        ("POST", "/"),
        ("GET", "/"),
        ("GET", "/{id}"),
        ("POST", "/{id}/preview"),
        ("POST", "/{id}/schedule"),
        ("POST", "/{id}/start"),
        ("POST", "/{id}/pause"),
        ("POST", "/{id}/resume"),
        ("POST", "/{id}/cancel"),
        ("GET", "/{id}/report"),
    }
    for ops in paths.values():
        for op in ops.values():
            assert op["tags"] == ["broadcasts"]
            assert set(op["x-roles"]) == {"admin", "manager"}
    start = paths["/api/broadcasts/{id}/start"]["post"]["responses"]
    assert {"202", "404", "409"} <= set(start)
