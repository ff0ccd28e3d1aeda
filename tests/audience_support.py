"""Crafted members, tags, sign-ins, lots and reachability for the SOP audience tests."""

from __future__ import annotations

import itertools
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.config import Settings
from bot.config_sop import SopRule
from sop.audiences import Audience, compile_audience
from storage.models import (
    Identity,
    Member,
    MemberTag,
    PointsEntry,
    PointsLot,
    SignIn,
    StaffCustomer,
    Tag,
    TagGroup,
    Touchpoint,
)
from storage.models.members import OA_OPENID

SH = ZoneInfo("Asia/Shanghai")
JOINED = datetime(2020, 1, 1, tzinfo=SH)
_codes = itertools.count(1)


def rule(
    audience: str,
    params: dict[str, Any] | None = None,
    *,
    kind: str = "marketing",
    once_per: str = "year",
    sop_id: str = "t_sop",
) -> SopRule:
    """A rule with this audience (a cron trigger and a template action)."""
    return SopRule.model_validate(
        {
            "id": sop_id,
            "kind": kind,
            "trigger": {"cron": "0 9 * * *"},
            "audience": {"name": audience, "params": params or {}},
            "action": {"template": "sop_test"},
            "once_per": once_per,
        }
    )


async def member(**values: Any) -> int:
    """A member (joined 2020, active, no birthday) with these columns set."""
    values.setdefault("created_at", JOINED)
    if isinstance(values.get("birthday"), date):
        day: date = values["birthday"]
        values.setdefault("birth_md", day.month * 100 + day.day)
    made = await Member.create(code=f"S{next(_codes):08d}", **values)
    return int(made.id)


async def selected(settings: Settings, sop: SopRule, at: datetime) -> list[int]:
    """The audience's member ids at fire time ``at`` (all pages)."""
    return await compile_audience(sop, at, settings).member_ids(0, 10_000)


def audience(settings: Settings, sop: SopRule, at: datetime) -> Audience:
    """The compiled audience."""
    return compile_audience(sop, at, settings)


async def tag(member_id: int, name: str, *, deleted: bool = False) -> None:
    """Put a (new or existing) local tag on a member."""
    group, _ = await TagGroup.get_or_create(name="test")
    found, _ = await Tag.get_or_create(group=group, name=name, defaults={"deleted": deleted})
    await MemberTag.create(member_id=member_id, tag=found, source="local", created_at=JOINED)


async def signed(member_id: int, *days: date) -> None:
    """Sign-ins on these business dates."""
    for day in days:
        at = datetime(day.year, day.month, day.day, 9, tzinfo=SH)
        await SignIn.create(member_id=member_id, day=day, streak=1, points=5, created_at=at)


_lots = itertools.count(1)


async def lot(
    member_id: int, expires_at: datetime, remaining: int = 100, closed: bool = False
) -> None:
    """An earned lot of 100 points expiring at ``expires_at``."""
    entry = await PointsEntry.create(
        member_id=member_id,
        idempotency_key=f"test:lot:{next(_lots)}",
        kind="earn",
        amount=100,
        created_at=JOINED,
    )
    await PointsLot.create(
        member_id=member_id,
        entry=entry,
        amount=100,
        remaining=remaining,
        expires_at=expires_at,
        closed_at=expires_at if closed else None,
        created_at=JOINED,
    )


async def follower(member_id: int, app: str, **values: Any) -> None:
    """An OA identity of the member on ``app`` (followed unless told otherwise)."""
    values.setdefault("followed", True)
    await Identity.create(
        kind=OA_OPENID,
        app=app,
        value=f"o{member_id}-{app}",
        member_id=member_id,
        created_at=JOINED,
        **values,
    )


async def staff_customer(member_id: int, status: str = "active") -> None:
    """A WeCom relation of the member with staff ``alice``."""
    await StaffCustomer.create(
        corp="corp",
        staff_userid="alice",
        external_userid=f"wm{member_id}",
        member_id=member_id,
        status=status,
        created_at=JOINED,
        updated_at=JOINED,
    )


async def occurrences(sop_id: str = "t_sop") -> dict[int, str]:
    """member id → occurrence key of the SOP's touchpoints."""
    rows = await Touchpoint.filter(sop_id=sop_id).values_list("member_id", "occurrence")
    return {int(m): str(o) for m, o in rows}
