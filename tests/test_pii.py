"""Mobile numbers at rest: AES-GCM round trip, tamper and key checks, keyed lookup hash."""

from __future__ import annotations

import base64
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from tortoise import connections

from bot.services import mobile
from bot.services.pii import BadToken, InvalidMobile, MissingKey, MobileVault, mask, normalize
from storage.models import Identity, Member

KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
HMAC_KEY = base64.b64encode(bytes(range(32))).decode()
OTHER = "ff" * 32
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


@pytest.fixture
def vault() -> MobileVault:
    """A vault with a hex AES key and a base64 HMAC key."""
    return MobileVault(KEY, HMAC_KEY)


@pytest.mark.parametrize(
    "raw",
    ["13800138000", "+86 138 0013 8000", "138-0013-8000", "0086 13800138000", "8613800138000"],
)
def test_normalize_accepts_prefixes_spaces_and_dashes(raw: str) -> None:
    assert normalize(raw) == "13800138000"


@pytest.mark.parametrize(
    "raw", ["12800138000", "1380013800", "138001380001", "abc", "", "+1 13800138000"]
)
def test_normalize_refuses_what_is_not_a_mainland_mobile(raw: str) -> None:
    with pytest.raises(InvalidMobile):
        normalize(raw)


def test_mask() -> None:
    assert mask("13800138000") == "138****8000"


def test_round_trip_uses_a_fresh_nonce(vault: MobileVault) -> None:
    one, two = vault.encrypt("+86 13800138000"), vault.encrypt("13800138000")
    assert one.startswith("v1:")
    assert one != two
    assert vault.decrypt(one) == vault.decrypt(two) == "13800138000"
    assert "13800138000" not in one


def test_tampering_is_detected(vault: MobileVault) -> None:
    token = vault.encrypt("13800138000")
    blob = bytearray(base64.b64decode(token[3:]))
    blob[-1] ^= 1
    with pytest.raises(BadToken):
        vault.decrypt("v1:" + base64.b64encode(bytes(blob)).decode())
    with pytest.raises(BadToken):
        vault.decrypt("v2:" + token[3:])
    with pytest.raises(BadToken):
        vault.decrypt("v1:not base64!")


def test_a_wrong_key_fails(vault: MobileVault) -> None:
    token = vault.encrypt("13800138000")
    with pytest.raises(BadToken):
        MobileVault(OTHER, HMAC_KEY).decrypt(token)


def test_the_lookup_hash_is_keyed_and_normalised(vault: MobileVault) -> None:
    digest = vault.lookup_hash("13800138000")
    assert len(digest) == 64
    assert vault.lookup_hash("+86 138-0013-8000") == digest
    assert MobileVault(KEY, OTHER).lookup_hash("13800138000") != digest
    assert vault.lookup_hash("13800138001") != digest


def test_missing_keys_are_named_when_used() -> None:
    empty = MobileVault("", "")
    with pytest.raises(MissingKey, match=r"security\.mobile_key"):
        empty.encrypt("13800138000")
    with pytest.raises(MissingKey, match=r"security\.mobile_hmac_key"):
        MobileVault(KEY, "").require()


async def test_set_mobile_stores_only_ciphertext_hash_and_identity(
    database: str, vault: MobileVault
) -> None:
    member = await Member.create(code="MOBILE01", created_at=NOW)
    assert await mobile.set_mobile(vault, member.id, "138 0013 8000", now=NOW) == "138****8000"
    await member.refresh_from_db()
    assert member.mobile_cipher is not None
    assert vault.decrypt(member.mobile_cipher) == "13800138000"
    assert member.mobile_hash == vault.lookup_hash("13800138000")
    identity = await Identity.get(member_id=member.id, kind="mobile_hash")
    assert (identity.app, identity.value) == ("", member.mobile_hash)
    found = await mobile.find_member(vault, "+8613800138000")
    assert found is not None
    assert found.id == member.id
    await _assert_plain_number_nowhere("13800138000")


async def test_a_new_number_replaces_the_old_identity_and_a_taken_one_is_refused(
    database: str, vault: MobileVault
) -> None:
    one = await Member.create(code="MOBILE02", created_at=NOW)
    two = await Member.create(code="MOBILE03", created_at=NOW)
    await mobile.set_mobile(vault, one.id, "13800138000", now=NOW)
    await mobile.set_mobile(vault, one.id, "13900139000", now=NOW)
    await mobile.set_mobile(vault, one.id, "13900139000", now=NOW)  # again: no change
    values = await Identity.filter(kind="mobile_hash").values_list("value", flat=True)
    assert values == [vault.lookup_hash("13900139000")]
    with pytest.raises(mobile.MobileTaken):
        await mobile.set_mobile(vault, two.id, "139 0013 9000", now=NOW)
    await two.refresh_from_db()
    assert two.mobile_hash is None
    assert two.mobile_cipher is None
    with pytest.raises(LookupError):
        await mobile.set_mobile(vault, 999_999, "13700137000", now=NOW)
    with pytest.raises(InvalidMobile):
        await mobile.set_mobile(vault, one.id, "12345", now=NOW)


async def _assert_plain_number_nowhere(number: str) -> None:
    """No text column of member or identity holds the plain number."""
    conn = connections.get("default")
    for table in ("member", "identity"):
        rows = await conn.execute_query_dict(f"SELECT * FROM {table}")  # noqa: S608 - fixed names
        assert rows
        assert all(number not in str(value) for row in rows for value in row.values())
