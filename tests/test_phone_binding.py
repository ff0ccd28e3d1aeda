"""绑定手机 / 验证: one-time codes (expiry, tries, hourly limit), the reply that never tells
whether a number is registered, and the three outcomes of a verified number."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp.test_utils import TestClient

from bot.appkeys import SERVICES
from bot.config import Settings
from bot.context import Services
from bot.services import mobile, points
from bot.services.order_types import MemberLookup, NewOrder
from bot.services.pii import MobileVault
from storage.models import AuditLog, Identity, Member, MergeRequest, Order, PhoneVerification
from tests.cli_support import HMAC_KEY, MOBILE_KEY
from tests.conftest import AppMaker, base_config, make_settings
from tests.fakes import FakeWall
from tests.helpers import oa_crypto, oa_text, post_oa, reply_fields

NUMBER = "13800138000"
SAME_MASK = "13811118000"  # masks like NUMBER: 138****8000
SECURITY = {"mobile_key": MOBILE_KEY, "mobile_hmac_key": HMAC_KEY}
VAULT = MobileVault(MOBILE_KEY, HMAC_KEY)


@dataclass
class RecordingSms:
    """An SmsSender that keeps what it was asked to send."""

    sent: list[tuple[str, str]] = field(default_factory=list)

    async def send(self, mobile: str, text: str) -> None:
        """Record the message."""
        self.sent.append((mobile, text))

    async def close(self) -> None:
        """Nothing to release."""

    def code(self, mobile: str = NUMBER) -> str:
        """The code in the latest message to ``mobile``."""
        texts = [t for m, t in self.sent if m == mobile]
        found = re.search(r"\d{6}", texts[-1])
        assert found is not None
        return found.group(0)


@dataclass
class RecordingMerger:
    """A Merger that records each call (and moves nothing)."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    refuse: str = ""

    async def __call__(
        self,
        survivor_id: int,
        merged_id: int,
        *,
        actor: str,
        reason: str,
        now: datetime,
        services: Any,
    ) -> Any:
        """Record the call; raise when told to refuse."""
        self.calls.append({"survivor": survivor_id, "merged": merged_id, "actor": actor})
        if self.refuse:
            raise RuntimeError(self.refuse)
        return None


def phone_settings(database: str, **sms: Any) -> Settings:
    """Test settings with the personal-data keys (and ``[sms]`` values)."""
    return make_settings(base_config(database), security=SECURITY, sms=sms)


@dataclass
class Chat:
    """A test app, its SMS outbox and the member's side of the conversation."""

    client: TestClient[Any, Any]
    settings: Settings
    wall: FakeWall
    sms: RecordingSms

    @property
    def services(self) -> Services:
        """The app's services."""
        services: Services = self.client.app[SERVICES]
        return services

    async def say(self, text: str, openid: str = "oMember1") -> str:
        """Send a text; the reply's text (background sends finished)."""
        self.wall.advance(1)
        xml = oa_text(text, openid=openid)
        resp = await post_oa(self.client, self.settings, xml, timestamp=int(self.wall.now))
        await self.services.background.idle()
        return str(reply_fields(oa_crypto(self.settings), await resp.text())["Content"])


async def make_chat(make_client: AppMaker, wall: FakeWall, database: str, **overrides: Any) -> Chat:
    settings = phone_settings(database)
    sms = RecordingSms()
    client = await make_client(settings, sms=sms, **overrides)
    return Chat(client, settings, wall, sms)


async def member_of(openid: str) -> Member:
    identity = await Identity.get(kind="oa_openid", value=openid)
    return await Member.get(id=identity.member_id)  # type: ignore[attr-defined]


async def mobile_only_holder(number: str, code: str = "STORE001") -> Member:
    """A member created from a store order: their only identity is the number."""
    holder = await Member.create(code=code, created_at=datetime.fromtimestamp(0).astimezone())
    await mobile.set_mobile(VAULT, holder.id, number, now=holder.created_at)
    return holder


async def chat_holder(chat: Chat, number: str, openid: str = "oOther") -> Member:
    """Another member who chats with the account and already holds the number."""
    await chat.say("帮助", openid=openid)
    holder = await member_of(openid)
    await mobile.set_mobile(VAULT, holder.id, number, now=chat.services.clock.now())
    return holder


# --- requesting a code ------------------------------------------------------------------


async def test_a_code_is_sent_and_only_its_keyed_hash_is_stored(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    chat = await make_chat(make_client, wall, database)
    reply = await chat.say(f"绑定手机 {NUMBER}")
    assert reply.startswith("验证码已发送至 138****8000，5 分钟内有效")
    assert NUMBER not in reply
    [(to, text)] = chat.sms.sent
    code = chat.sms.code()
    assert to == NUMBER
    assert "5 分钟内有效" in text
    row = await PhoneVerification.get()
    assert row.status == "pending"
    assert row.tries == 0
    assert len(row.code_hash) == 64
    assert code not in row.code_hash
    assert row.code_hash == chat.services.phone.code_hash(int(row.id), code)
    assert row.code_hash != chat.services.phone.code_hash(int(row.id) + 1, code)  # id-bound
    assert VAULT.decrypt(row.mobile_cipher) == NUMBER
    assert NUMBER not in row.mobile_cipher
    assert (row.expires_at - row.created_at).total_seconds() == 300
    member = await member_of("oMember1")
    audit = await AuditLog.get(action="phone.code_sent")
    assert audit.actor == f"member:{member.code}"
    assert NUMBER not in str(audit.detail)


async def test_bad_numbers_and_bare_commands_explain(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    chat = await make_chat(make_client, wall, database)
    assert "不是有效的中国大陆手机号" in await chat.say("绑定手机 12345")
    assert "不是有效的中国大陆手机号" in await chat.say("绑定手机 23800138000")
    assert "请回复“绑定手机 手机号”" in await chat.say("绑定手机")
    assert "请回复“验证 6位验证码”" in await chat.say("验证 12ab")
    assert "没有待验证的验证码" in await chat.say("验证 123456")
    assert chat.sms.sent == []
    assert await PhoneVerification.all().count() == 0
    assert "验证码已发送" in await chat.say("绑定手机 +86 138-0013-8000")
    assert chat.sms.sent[0][0] == NUMBER


async def test_the_reply_never_tells_whether_a_number_is_registered(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    chat = await make_chat(make_client, wall, database)
    await chat_holder(chat, NUMBER)
    await mobile_only_holder("13900139000")
    free = await chat.say(f"绑定手机 {SAME_MASK}")
    held_by_chat = await chat.say(f"绑定手机 {NUMBER}")
    held_by_store = await chat.say("绑定手机 13900139000")
    assert free == held_by_chat
    assert held_by_store == free.replace("138****8000", "139****9000")
    assert len(chat.sms.sent) == 3  # a code goes out in every case


async def test_three_codes_an_hour_then_refused_then_fine_again(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    chat = await make_chat(make_client, wall, database)
    for _ in range(3):
        assert "验证码已发送" in await chat.say(f"绑定手机 {NUMBER}")
    refused = await chat.say(f"绑定手机 {NUMBER}")
    assert refused == "获取验证码过于频繁，请一小时后再试。"
    assert len(chat.sms.sent) == 3
    assert await PhoneVerification.all().count() == 3
    assert await AuditLog.filter(action="phone.code_refused").count() == 1
    # only the latest code is pending: asking again superseded the earlier ones
    statuses = await PhoneVerification.all().order_by("id").values_list("status", flat=True)
    assert statuses == ["superseded", "superseded", "pending"]
    # codes went out at +1 s, +2 s and +3 s; each message moves the clock one second
    wall.advance(3595)
    assert "过于频繁" in await chat.say(f"绑定手机 {NUMBER}")  # +3600 s: all three count
    assert "验证码已发送" in await chat.say(f"绑定手机 {NUMBER}")  # the first is an hour old
    wall.advance(3600)
    assert "验证码已发送" in await chat.say(f"绑定手机 {NUMBER}")
    assert len(chat.sms.sent) == 5


async def test_a_superseded_code_no_longer_verifies(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    chat = await make_chat(make_client, wall, database)
    await chat.say(f"绑定手机 {NUMBER}")
    first = chat.sms.code()
    await chat.say(f"绑定手机 {NUMBER}")
    second = chat.sms.code()
    if first != second:
        assert "验证码不正确" in await chat.say(f"验证 {first}")
    assert "绑定成功" in await chat.say(f"验证 {second}")


# --- checking a code ---------------------------------------------------------------------


async def test_a_code_expires_after_five_minutes(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    chat = await make_chat(make_client, wall, database)
    await chat.say(f"绑定手机 {NUMBER}")
    wall.advance(300)  # with the second the next message takes, past the five minutes
    reply = await chat.say(f"验证 {chat.sms.code()}")
    assert reply == "验证码已过期，请回复“绑定手机 手机号”重新获取。"
    assert (await PhoneVerification.get()).status == "expired"
    assert (await member_of("oMember1")).mobile_hash is None
    assert "验证码已过期" in await chat.say(f"验证 {chat.sms.code()}")


async def test_a_code_verifies_until_its_last_second(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    chat = await make_chat(make_client, wall, database)
    await chat.say(f"绑定手机 {NUMBER}")
    wall.advance(298)
    assert "绑定成功" in await chat.say(f"验证 {chat.sms.code()}")


async def test_five_wrong_tries_lock_the_code(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    chat = await make_chat(make_client, wall, database)
    await chat.say(f"绑定手机 {NUMBER}")
    code = chat.sms.code()
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    replies = [await chat.say(f"验证 {wrong}") for _ in range(5)]
    assert replies[:4] == [f"验证码不正确，还可以再试 {n} 次。" for n in (4, 3, 2, 1)]
    assert "错误次数过多" in replies[4]
    assert "错误次数过多" in await chat.say(f"验证 {code}")  # the right code, too late
    row = await PhoneVerification.get()
    assert row.status == "failed"
    assert row.tries == 5
    assert (await member_of("oMember1")).mobile_hash is None
    assert "验证码已发送" in await chat.say(f"绑定手机 {NUMBER}")  # a new code starts over
    assert "绑定成功" in await chat.say(f"验证 {chat.sms.code()}")


async def test_tries_are_counted_by_a_conditional_update(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    chat = await make_chat(make_client, wall, database)
    await chat.say(f"绑定手机 {NUMBER}")
    row = await PhoneVerification.get()
    from storage.repos import phone as repo

    used = [await repo.take_try(int(row.id), 5) for _ in range(7)]
    assert used == [1, 2, 3, 4, 5, None, None]


# --- the three outcomes ------------------------------------------------------------------


async def test_a_free_number_is_stored_encrypted_with_its_identity(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    chat = await make_chat(make_client, wall, database)
    await chat.say(f"绑定手机 {NUMBER}")
    assert await chat.say(f"验证 {chat.sms.code()}") == "手机号 138****8000 绑定成功。"
    member = await member_of("oMember1")
    assert member.mobile_cipher
    assert NUMBER not in member.mobile_cipher
    assert VAULT.decrypt(member.mobile_cipher) == NUMBER
    assert member.mobile_hash == VAULT.lookup_hash(NUMBER)
    identity = await Identity.get(kind="mobile_hash", value=VAULT.lookup_hash(NUMBER))
    assert identity.member_id == member.id  # type: ignore[attr-defined]
    row = await PhoneVerification.get()
    assert row.status == "verified"
    assert row.verified_at is not None
    bound = await AuditLog.get(action="phone.bound")
    assert bound.actor == f"member:{member.code}"
    assert bound.detail["outcome"] == "stored"
    assert await AuditLog.filter(action="phone.code_verified").count() == 1
    assert "没有待验证的验证码" in await chat.say(f"验证 {chat.sms.code()}")  # used once


async def test_a_store_only_holder_is_merged_into_the_binding_member(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    merger = RecordingMerger()
    chat = await make_chat(make_client, wall, database, merger=merger)
    holder = await mobile_only_holder(NUMBER)
    await chat.say(f"绑定手机 {NUMBER}")
    reply = await chat.say(f"验证 {chat.sms.code()}")
    assert reply.startswith("手机号 138****8000 绑定成功，该号码的门店消费记录和积分已合并")
    member = await member_of("oMember1")
    assert merger.calls == [
        {"survivor": member.id, "merged": holder.id, "actor": f"member:{member.code}"}
    ]
    assert await MergeRequest.all().count() == 0
    bound = await AuditLog.get(action="phone.bound")
    assert bound.detail["outcome"] == "merged"
    assert bound.detail["holder"] == "STORE001"


async def test_a_prior_store_order_s_points_arrive_with_the_verified_number(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    """The real merge engine: the store-only member's order and points join the member."""
    chat = await make_chat(make_client, wall, database)  # the merger production wires
    services = chat.services
    paid = services.clock.now()
    order = NewOrder("POS-9", MemberLookup("mobile", NUMBER), 25000, paid, "pos", "SH01")
    await services.orders.create(order, "token:pos")
    holder = await Member.get(mobile_hash=VAULT.lookup_hash(NUMBER))
    await chat.say(f"绑定手机 {NUMBER}")
    reply = await chat.say(f"验证 {chat.sms.code()}")
    assert reply.startswith("手机号 138****8000 绑定成功")
    member = await member_of("oMember1")
    assert member.points_balance == 250
    assert member.mobile_hash == VAULT.lookup_hash(NUMBER)
    assert (await Order.get(external_id="POS-9")).member_id == member.id  # type: ignore[attr-defined]
    merged = await Member.get(id=holder.id)
    assert (merged.status, merged.merged_into_id, merged.points_balance) == ("merged", member.id, 0)
    assert "250" in await chat.say("积分")
    assert await MergeRequest.all().count() == 0
    assert await points.reconcile() == []


async def test_a_refused_merge_becomes_a_request(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    merger = RecordingMerger(refuse="both hold openids of one account")
    chat = await make_chat(make_client, wall, database, merger=merger)
    await mobile_only_holder(NUMBER)
    await chat.say(f"绑定手机 {NUMBER}")
    assert "提交工作人员审核" in await chat.say(f"验证 {chat.sms.code()}")
    assert len(merger.calls) == 1
    assert "both hold openids" in (await MergeRequest.get()).reason


async def test_a_chat_holder_gives_one_pending_request_and_nothing_moves(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    merger = RecordingMerger()
    chat = await make_chat(make_client, wall, database, merger=merger)
    holder = await chat_holder(chat, NUMBER)
    for _ in range(2):  # asking twice keeps one pending request
        await chat.say(f"绑定手机 {NUMBER}")
        reply = await chat.say(f"验证 {chat.sms.code()}")
        assert reply == (
            "验证成功。该手机号已关联另一个会员账户，我们已提交工作人员审核，"
            "审核通过后将合并到您的账户。"
        )
        assert holder.code not in reply
    member = await member_of("oMember1")
    request = await MergeRequest.get()
    assert request.pending_key == f"{member.id}:{holder.id}"
    assert request.status == "pending"
    assert request.member_id == member.id  # type: ignore[attr-defined]
    assert request.mobile_hash == VAULT.lookup_hash(NUMBER)
    assert merger.calls == []
    assert (await Member.get(id=member.id)).mobile_hash is None
    assert (await Member.get(id=holder.id)).mobile_hash == VAULT.lookup_hash(NUMBER)
    identity = await Identity.get(kind="mobile_hash")
    assert identity.member_id == holder.id  # type: ignore[attr-defined]
    audits = await AuditLog.filter(action="phone.merge_requested").order_by("id")
    assert [a.detail.get("duplicate", False) for a in audits] == [False, True]
    assert {a.actor for a in audits} == {f"member:{member.code}"}


async def test_the_member_who_already_holds_the_number_is_told_it_is_bound(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    chat = await make_chat(make_client, wall, database)
    for _ in range(2):
        await chat.say(f"绑定手机 {NUMBER}")
        assert "绑定成功" in await chat.say(f"验证 {chat.sms.code()}")
    assert await MergeRequest.all().count() == 0
    outcomes = await AuditLog.filter(action="phone.bound").order_by("id")
    assert [a.detail["outcome"] for a in outcomes] == ["stored", "already"]


async def test_keywords_are_configurable_and_help_names_binding(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(
        base_config(database),
        security=SECURITY,
        chat={"keywords": {"bind_phone": ["手机"], "verify": ["码"]}},
    )
    sms = RecordingSms()
    chat = Chat(await make_client(settings, sms=sms), settings, wall, sms)
    assert "回复“码 验证码”" in await chat.say(f"手机 {NUMBER}")
    assert "绑定成功" in await chat.say(f"码 {sms.code()}")
    assert "· 手机 13800138000 — 绑定手机号" in await chat.say("帮助")
