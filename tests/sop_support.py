"""Helpers of the SOP dispatch tests: rules, members with OA identities, hand-made rows."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.config import Settings
from bot.config_sop import SopRule
from bot.context import Services
from sop.dispatch import TouchDispatcher
from storage.cache import Cache
from storage.keys import KeyBuilder
from storage.models import Touchpoint
from storage.repos import members as members_repo
from storage.timeutil import utc
from tests.conftest import OA_APPID, base_config, make_settings, started_services
from tests.fakes import FakeWall

SHANGHAI = ZoneInfo("Asia/Shanghai")
C10 = {
    "code": "C10",
    "name": "10元无门槛券",
    "cost_points": 1000,
    "stock": 5,
    "coupon_value_fen": 1000,
    "coupon_valid_days": 30,
}


def rule(
    sop_id: str, kind: str = "marketing", audience: str = "member_day_active", **action: Any
) -> SopRule:
    """A cron SOP whose action is ``action`` (default: the member-day template)."""
    return SopRule.model_validate(
        {
            "id": sop_id,
            "kind": kind,
            "trigger": {"cron": "0 10 * * *"},
            "audience": {"name": audience},
            "action": action or {"template": "sop_member_day"},
        }
    )


def welcome_rule() -> SopRule:
    """The welcome series: days 1, 3 and 7 after the first subscribe."""
    return SopRule.model_validate(
        {
            "id": "welcome_series",
            "kind": "marketing",
            "trigger": {"event": "first_subscribe", "delays": ["1d", "3d", "7d"]},
            "audience": {"name": "all"},
            "action": {"template": "sop_welcome"},
        }
    )


def sop_settings(database: str, fake_api: Mapping[str, str]) -> Settings:
    """Fake-platform settings with the C10 reward."""
    raw = base_config(database)
    raw["rewards"] = [C10]
    return make_settings(raw, api=dict(fake_api))


@asynccontextmanager
async def dispatching(
    settings: Settings, wall: FakeWall, cache: Cache, keys: KeyBuilder, *rules: SopRule
) -> AsyncIterator[tuple[Services, TouchDispatcher]]:
    """Services and a dispatcher of ``rules``."""
    async with started_services(settings, wall, cache, keys) as services:
        yield services, TouchDispatcher(services, {r.id: r for r in rules})


def at(wall: FakeWall, moment: datetime) -> datetime:
    """Set the wall clock to ``moment``; the same instant in UTC (a UTC server clock)."""
    wall.now = moment.timestamp()
    return moment.astimezone(ZoneInfo("UTC"))


async def member(services: Services, openid: str) -> int:
    """A member with an OA identity of the brand account."""
    row = await members_repo.create_with_identity(
        "oa_openid", OA_APPID, openid, now=services.clock.now()
    )
    return int(row.id)


def wrote(services: Services, member_id: int, openid: str, when: datetime) -> None:
    """The member sent a message at ``when`` (opens the 48 h window)."""
    identity = ("oa_openid", OA_APPID, openid)
    services.members.activity.touch(identity, member_id, when, message=True)


def clicked(services: Services, member_id: int, openid: str, when: datetime) -> None:
    """The member clicked a menu at ``when`` (opens the 60 s window only)."""
    identity = ("oa_openid", OA_APPID, openid)
    services.members.activity.touch(identity, member_id, when, message=False, event=True)


async def touch(
    sop_id: str, member_id: int, due: datetime, occurrence: str = "2023-11", **extra: Any
) -> Touchpoint:
    """A hand-made pending touchpoint."""
    return await Touchpoint.create(
        sop_id=sop_id,
        member_id=member_id,
        occurrence=occurrence,
        due_at=utc(due),
        created_at=utc(due),
        **extra,
    )
