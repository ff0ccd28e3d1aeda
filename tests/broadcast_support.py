"""Helpers for the broadcast tests: members in bulk, audiences, services and senders."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from bot.context import Services
from bot.services.broadcasts import BroadcastService, Rules
from sop.sql import Sql, join, sql
from storage.audience import marketing_sql, service_sql
from storage.models import Identity, Member, StaffCustomer
from storage.models.members import OA_OPENID
from storage.repos.member_import import refresh_statistics
from tests.conftest import OA_APPID, WECOM_CORP_ID, FakeServer

ACTOR = "test-operator"
_codes = itertools.count(1)


def gold(kind: str = "marketing") -> Sql:
    """The audience of the tests: gold members (marketing or service base conditions)."""
    base = marketing_sql() if kind == "marketing" else service_sql()
    return join([sql(base), sql("member.tier = {}", "gold")], " AND ")


def service(services: Services, batch: int = 500) -> BroadcastService:
    """A broadcast service on these services."""
    return BroadcastService.for_services(services, rules=Rules(batch=batch))


async def members(
    services: Services,
    count: int,
    *,
    fake: FakeServer | None = None,
    wrote: timedelta | None = timedelta(hours=1),
    **values: Any,
) -> list[tuple[int, str]]:
    """``count`` gold members following the brand account; (member id, openid) each.

    ``wrote``: how long ago each member messaged (None: never); with ``fake`` the fake
    platform opens the same customer-service windows.
    """
    now = services.clock.now()
    values.setdefault("tier", "gold")
    made = [
        Member(code=f"B{next(_codes):08d}", created_at=now, name=f"会员{i}", **values)
        for i in range(count)
    ]
    await Member.bulk_create(made, batch_size=1000)
    codes = [m.code for m in made]
    ids = await Member.filter(code__in=codes).order_by("id").values_list("id", flat=True)
    last = now - wrote if wrote is not None else None
    identities = [
        Identity(
            kind=OA_OPENID,
            app=OA_APPID,
            value=f"oBc{member_id}",
            member_id=member_id,
            followed=True,
            last_message_at=last,
            created_at=now,
        )
        for member_id in ids
    ]
    await Identity.bulk_create(identities, batch_size=1000)
    await refresh_statistics()  # as a member import does after loading in bulk
    if fake is not None and wrote is not None:
        for member_id in ids:
            fake.platform.interaction(appid=OA_APPID, openid=f"oBc{member_id}", kind="message")
    return [(int(i), f"oBc{i}") for i in ids]


async def relation(member_id: int, staff: str = "alice", status: str = "active") -> str:
    """A WeCom relation of the member with ``staff``; the external userid."""
    now = datetime(2026, 1, 1)
    external = f"wm{member_id}"
    await StaffCustomer.create(
        corp=WECOM_CORP_ID,
        staff_userid=staff,
        external_userid=external,
        member_id=member_id,
        status=status,
        created_at=now,
        updated_at=now,
    )
    return external
