"""Staff decisions on merge requests (a verified number another chat member holds).

Approving runs the merge engine (the same ``Merger`` protocol phone binding uses) and
then marks the request approved; rejecting only records the decision. Either clears the
request's ``pending_key`` (so the pair may ask again later) and writes an AuditLog row.
"""

from __future__ import annotations

import importlib
from datetime import datetime
from typing import Any, cast

from bot.services.phone import Merger
from storage.models import MergeRequest
from storage.repos import phone as repo

APPROVED, REJECTED = "approved", "rejected"


class RequestError(Exception):
    """No such request, or it is not pending any more."""


def engine() -> Merger:
    """The real merge engine, ``bot.services.merge.merge_members`` (imported when used).

    RequestError if this build has no merge engine yet.
    """
    try:
        module = importlib.import_module("bot.services.merge")
    except ImportError:
        raise RequestError("the merge engine (bot.services.merge) is not available") from None
    return cast(Merger, module.merge_members)


async def listed(status: str | None) -> list[dict[str, Any]]:
    """Requests in one status (None: all), oldest first."""
    return await repo.list_requests(status)


async def _pending(request_id: int) -> MergeRequest:
    row = await MergeRequest.get_or_none(id=request_id)
    if row is None:
        raise RequestError(f"no merge request {request_id}")
    if row.status != "pending":
        raise RequestError(f"merge request {request_id} is already {row.status}")
    return row


def merge_id_of(result: Any) -> int | None:
    """The MemberMerge id a MergeResult names, if it names one."""
    for name in ("merge_id", "id"):
        value = getattr(result, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


async def approve(
    request_id: int, *, actor: str, now: datetime, merger: Merger, services: Any
) -> int | None:
    """Merge the holder into the requesting member; the merge id (MergeRefused propagates)."""
    row = await _pending(request_id)
    result = await merger(
        int(row.member_id),  # type: ignore[attr-defined]
        int(row.holder_id),  # type: ignore[attr-defined]
        actor=actor,
        reason=f"merge request {request_id}",
        now=now,
        services=services,
    )
    merge_id = merge_id_of(result)
    decided = await repo.decide(
        request_id, APPROVED, actor=actor, reason="", now=now, merge_id=merge_id
    )
    if not decided:
        raise RequestError(f"merge request {request_id} was decided meanwhile")
    return merge_id


async def reject(request_id: int, *, actor: str, reason: str, now: datetime) -> None:
    """Record the rejection (nothing merges); the request keeps why it was filed."""
    row = await _pending(request_id)
    kept = f"{row.reason}; rejected: {reason}" if row.reason else f"rejected: {reason}"
    if not await repo.decide(request_id, REJECTED, actor=actor, reason=kept, now=now):
        raise RequestError(f"merge request {request_id} was decided meanwhile")
