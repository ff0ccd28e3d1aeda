"""Shared set-up for the staff tagging and chat-ops tests: settings with a staff roster,
the fake corp's staff and customers, StaffCustomer rows and encrypted agent messages."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from aiohttp.test_utils import TestClient

from bot.config import Settings
from bot.devtools.fake.wecom_state import Staff as FakeStaff
from storage.models import Member, StaffCustomer
from tests.conftest import WECOM_CORP_ID, FakeServer, base_config, make_settings
from tests.helpers import post_wecom, reply_fields, wecom_crypto

MOBILE_KEY = "11" * 32
HMAC_KEY = "22" * 32
ROSTER = [
    {"userid": "zhangsan", "name": "张三", "role": "staff"},
    {"userid": "boss", "name": "老板", "role": "manager"},
]
_ids = itertools.count(20_000_000_000)
_times = itertools.count(1)


def staff_settings(
    database: str, fake: FakeServer, roster: list[dict[str, Any]] | None = None
) -> Settings:
    """Test settings on the fake platform with a staff roster and mobile keys."""
    raw = base_config(database)
    raw["wecom"]["staff"] = ROSTER if roster is None else roster
    raw["security"] = {"mobile_key": MOBILE_KEY, "mobile_hmac_key": HMAC_KEY}
    settings = make_settings(raw, api=fake.api())
    corp = fake.platform.corp()
    for item in ROSTER:
        corp.staff[item["userid"]] = FakeStaff(item["userid"], item["name"])
    return settings


def agent_text(content: str, userid: str) -> str:
    """A text message a staff member sends the self-built app."""
    return (
        f"<xml><ToUserName><![CDATA[{WECOM_CORP_ID}]]></ToUserName>"
        f"<FromUserName><![CDATA[{userid}]]></FromUserName>"
        f"<CreateTime>{1_700_000_000 + next(_times)}</CreateTime>"
        "<MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{next(_ids)}</MsgId>"
        "<AgentID>218</AgentID></xml>"
    )


def tag_event(change: str, item_id: str, tag_type: str = "tag") -> str:
    """A change_external_tag event."""
    return (
        f"<xml><ToUserName><![CDATA[{WECOM_CORP_ID}]]></ToUserName>"
        "<FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{1_700_000_000 + next(_times)}</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_tag]]></Event>"
        f"<Id><![CDATA[{item_id}]]></Id><TagType><![CDATA[{tag_type}]]></TagType>"
        f"<ChangeType><![CDATA[{change}]]></ChangeType><StrategyId>1</StrategyId></xml>"
    )


async def say(
    client: TestClient[Any, Any], settings: Settings, text: str, userid: str, now: float
) -> str:
    """Post an agent message; the reply's text."""
    resp = await post_wecom(client, settings, agent_text(text, userid), timestamp=int(now))
    assert resp.status == 200
    return str(reply_fields(wecom_crypto(settings), await resp.text())["Content"])


async def post_event(
    client: TestClient[Any, Any], settings: Settings, xml: str, now: float
) -> None:
    """Post a 客户联系 event (answered ``success``)."""
    resp = await post_wecom(client, settings, xml, timestamp=int(now))
    assert resp.status == 200


async def customer(
    fake: FakeServer,
    code: str,
    external: str,
    staff: str = "zhangsan",
    remark: str = "",
    **member: Any,
) -> tuple[Member, StaffCustomer]:
    """A member, its relation with a staff member here and in the fake corp."""
    now = datetime(2026, 11, 1, tzinfo=UTC)
    row = await Member.get_or_none(code=code) or await Member.create(
        code=code, created_at=now, **member
    )
    known = fake.platform.corp().customers.get(external)
    follows = [] if known is None else [vars(f) for f in known.follows.values()]
    follows = [f for f in follows if f["userid"] != staff] + [{"userid": staff, "remark": remark}]
    fake.platform.add_customer(external, remark or code, follow_user=follows)
    rel = await StaffCustomer.create(
        corp=WECOM_CORP_ID,
        staff_userid=staff,
        external_userid=external,
        member=row,
        remark=remark,
        created_at=now,
        updated_at=now,
    )
    return row, rel
