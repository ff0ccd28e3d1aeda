"""注销 through the callback: confirmation, erasure of every personal trace, a new member next."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise import Tortoise, connections, fields

from bot.appkeys import RECORDER, SERVICES
from bot.config import Settings
from bot.services import mobile, points
from bot.services.pii import MobileVault
from storage import audience
from storage.models import (
    AuditLog,
    Consent,
    Identity,
    InboundEvent,
    Member,
    OutboxMessage,
    PhoneVerification,
    PointsEntry,
    PointsLot,
)
from storage.repos.inbound import InboundRecord, InboundRecorder
from tests.cli_support import HMAC_KEY, MOBILE_KEY
from tests.conftest import AppMaker, base_config, make_settings
from tests.fakes import FakeWall
from tests.helpers import post_oa
from tests.privacy_support import click, say

OPENID = "oEraseMe000000000001"
OTHER = "oKeepMe0000000000002"
MOBILE = "13800138000"
BIRTHDAY = "1990-05-20"


def _settings(database: str) -> Settings:
    return make_settings(
        base_config(database), security={"mobile_key": MOBILE_KEY, "mobile_hmac_key": HMAC_KEY}
    )


def _vault(settings: Settings) -> MobileVault:
    return MobileVault.from_settings(settings.security)


async def _text_columns() -> list[tuple[str, str]]:
    """(table, column) of every text and JSON column of every registered model."""
    found = []
    for model in Tortoise.apps["models"].values():
        for field in model._meta.fields_map.values():
            if isinstance(field, fields.CharField | fields.TextField | fields.JSONField):
                found.append((model._meta.db_table, field.source_field or field.model_field_name))
    return found


async def _traces(needles: list[str]) -> list[str]:
    """Every (table.column, needle) where a needle appears, by raw SQL over all tables."""
    conn = connections.get("default")
    hits = []
    for table, column in await _text_columns():
        for needle in needles:
            sql = (
                f"SELECT COUNT(*) AS n FROM {table} WHERE CAST({column} AS TEXT) LIKE '%{needle}%'"  # noqa: S608
            )
            _, rows = await conn.execute_query(sql)
            if int(rows[0]["n"]):
                hits.append(f"{table}.{column}: {needle}")
    return hits


async def _populate(client: Any, settings: Settings, wall: FakeWall) -> Member:
    """A member with points, a birthday, a mobile, a code, an outbox message, a click."""
    await say(client, settings, wall, "签到", OPENID)
    await say(client, settings, wall, f"生日 {BIRTHDAY}", OPENID)
    await say(client, settings, wall, "退订", OPENID)
    wall.advance(1)
    await post_oa(client, settings, click(OPENID, "POINTS", int(wall.now)), timestamp=int(wall.now))
    await say(client, settings, wall, "签到", OTHER)
    member = await Member.get(identities__value=OPENID)
    now = client.app[SERVICES].clock.now()
    vault = _vault(settings)
    await mobile.set_mobile(vault, member.id, MOBILE, now=now)
    await PhoneVerification.create(
        member_id=member.id,
        mobile_cipher=vault.encrypt(MOBILE),
        mobile_hash=vault.lookup_hash(MOBILE),
        code_hash="x" * 64,
        expires_at=now + timedelta(minutes=5),
        created_at=now,
    )
    await OutboxMessage.create(
        idempotency_key=f"promo:{OPENID}",
        channel="oa_cs",
        account="brand",
        recipient=OPENID,
        member_id=member.id,
        source="test",
        payload={"touser": OPENID, "text": {"content": "hi"}},
        due_at=now,
    )
    await client.app[RECORDER].flush()
    await member.refresh_from_db()
    return member


async def test_erase_through_chat_leaves_no_personal_data(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = _settings(database)
    client = await make_client(settings)
    member = await _populate(client, settings, wall)
    digest = _vault(settings).lookup_hash(MOBILE)
    needles = [OPENID, MOBILE, digest, BIRTHDAY]
    before = {hit.partition(".")[0] for hit in await _traces(needles)}
    assert {"identity", "inbound_event", "member", "outbox_message", "phone_verification"} <= before
    entries = await PointsEntry.filter(member_id=member.id).count()
    balance = member.points_balance
    assert balance > 0
    assert entries > 0

    assert "确认注销" in await say(client, settings, wall, "注销", OPENID)
    assert (await Member.get(id=member.id)).status == "active"  # asking erases nothing
    assert "已注销" in await say(client, settings, wall, "确认注销", OPENID)
    await client.app[RECORDER].flush()  # the conversation's own rows, recorded afterwards
    await client.app[SERVICES].members.activity.flush()

    assert await _traces(needles) == []
    erased = await Member.get(id=member.id)
    assert (erased.status, erased.birthday, erased.birth_md, erased.name) == (
        "deleted",
        None,
        None,
        "",
    )
    assert erased.mobile_cipher is None
    assert erased.mobile_hash is None
    assert erased.deleted_at is not None
    assert not await Identity.filter(member_id=member.id).exists()
    assert not await PhoneVerification.filter(member_id=member.id).exists()
    outbox = await OutboxMessage.get(member_id=member.id)
    assert (outbox.status, outbox.recipient, outbox.payload) == ("failed", "", {})
    events = await InboundEvent.filter(member_id=member.id).values("sender", "payload")
    assert events
    assert all(e == {"sender": "", "payload": ""} for e in events)
    # The ledger, consent history and the other member stay; totals reconcile. The points
    # are forfeit by one keyed reversal, so the brand's liability no longer counts them.
    assert balance > 0
    assert await PointsEntry.filter(member_id=member.id).count() == entries + 1
    forfeit = await PointsEntry.get(idempotency_key=f"erase:{member.id}:forfeit")
    assert (forfeit.kind, forfeit.amount) == ("reverse", -balance)
    assert erased.points_balance == 0
    assert await Consent.filter(member_id=member.id).exists()
    assert await points.reconcile() == []
    assert await Identity.filter(value=OTHER).exists()
    audit = await AuditLog.get(action="member.erase", target=f"member:{member.id}")
    assert audit.actor == f"member:{member.id}"
    assert not await Member.filter(audience.service_q(), id=member.id).exists()

    # The next callback from the same openid is a new member, never the erased one.
    reply = await say(client, settings, wall, "积分", OPENID)
    assert reply
    fresh = await Member.get(identities__value=OPENID)
    assert fresh.id != member.id
    assert (fresh.status, fresh.points_balance, fresh.marketing_opt_out) == ("active", 0, False)
    assert (await Member.get(id=member.id)).status == "deleted"


async def test_confirm_without_request_or_after_expiry_does_nothing(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = _settings(database)
    client = await make_client(settings)
    assert "没有待确认的注销申请" in await say(client, settings, wall, "确认注销", OPENID)
    member = await Member.get(identities__value=OPENID)
    assert member.status == "active"
    assert "确认注销" in await say(client, settings, wall, "注销", OPENID)
    wall.advance(10 * 60 + 1)
    assert "没有待确认的注销申请" in await say(client, settings, wall, "确认注销", OPENID)
    await member.refresh_from_db()
    assert (member.status, member.deleted_at) == ("active", None)
    assert await Identity.filter(member_id=member.id).exists()
    assert not await AuditLog.filter(action="member.erase").exists()
    # Within the window it works, and only once.
    assert "确认注销" in await say(client, settings, wall, "注销", OPENID)
    wall.advance(9 * 60)
    assert "已注销" in await say(client, settings, wall, "确认注销", OPENID)
    assert await AuditLog.filter(action="member.erase").count() == 1


async def test_the_recorder_erases_rows_of_members_erased_before_its_flush(
    database: str,
) -> None:
    at = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    member = await Member.create(code="ERASED01", status="deleted", deleted_at=at, created_at=at)
    kept = await Member.create(code="KEPT0001", created_at=at)
    recorder = InboundRecorder()
    for who, sender in ((member.id, OPENID), (kept.id, OTHER)):
        recorder.add(
            InboundRecord(
                dedupe_key=f"oa:brand:evt:{sender}|1700000000|event|CLICK|POINTS|",
                platform="oa",
                account="brand",
                kind="event:click",
                sender=sender,
                member_id=who,
                outcome="replied",
                handler_ms=1,
                payload=f"<xml><FromUserName>{sender}</FromUserName></xml>",
                received_at=at,
            )
        )
    assert await recorder.flush() == 2
    assert await _traces([OPENID]) == []
    assert len(await _traces([OTHER])) == 3  # dedupe key, sender and payload of the other
    assert await InboundEvent.filter(member_id=member.id).count() == 1


async def test_erased_among_finds_the_erased_in_a_long_list(database: str) -> None:
    from storage.repos import erasure

    at = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    gone = await Member.create(code="ERASED02", status="deleted", deleted_at=at, created_at=at)
    kept = await Member.create(code="KEPT0002", created_at=at)
    # more ids than one SQLite chunk, the erased one in the last chunk, repeats
    ids = [*range(10_000, 10_700), kept.id, gone.id, gone.id]
    assert await erasure.erased_among(ids) == [gone.id]
    assert await erasure.erased_among([kept.id]) == []
    assert await erasure.erased_among([]) == []


async def test_erase_again_catches_rows_written_during_the_erasure(database: str) -> None:
    from storage.repos import erasure

    at = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    member = await Member.create(code="ERASE002", created_at=at)
    await Identity.create(kind="oa_openid", app="wx", value=OPENID, member=member, created_at=at)
    done = await erasure.erase(member.id, actor="test", now=at)
    assert done is not None
    assert done.identities == (("oa_openid", "wx", OPENID),)
    assert await erasure.erase(member.id, actor="test", now=at) is None  # once only
    # A row another process flushed before it saw the member erased:
    await InboundEvent.create(
        dedupe_key=f"oa:brand:evt:{OPENID}|1",
        platform="oa",
        account="brand",
        kind="event:click",
        sender=OPENID,
        member_id=member.id,
        outcome="replied",
        payload=OPENID,
        received_at=at,
    )
    await erasure.erase_again(member.id, done.tokens)
    assert await _traces([OPENID]) == []
    assert await PointsLot.filter(member_id=member.id).count() == 0


async def test_a_late_reply_to_an_erased_identity_leaves_no_outbox_row(database: str) -> None:
    """确认注销's reply missing the budget: the identity is gone, so no row keeps the openid."""
    from storage.models import OutboxMessage
    from storage.repos import notify, outbox

    message = outbox.NewMessage(
        idempotency_key="late:erased-1",
        channel="oa_cs",
        account="brand",
        recipient="oErasedOpenid",
        payload={"text": "已注销"},
        source="late_reply",
    )
    identity = ("oa_openid", "wx2c2769f8efd9abc2", "oErasedOpenid")
    assert await notify.enqueue_reply_counted(identity, message, datetime.now(UTC)) is None
    assert await OutboxMessage.filter(recipient="oErasedOpenid").count() == 0
