"""Member profile writes: the birthday (set once) and the encrypted mobile number."""

from __future__ import annotations

from datetime import date, datetime

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from storage.models import Identity, Member
from storage.models.members import MOBILE_HASH
from storage.timeutil import utc


class MobileTaken(Exception):
    """Another member already holds this mobile number."""


async def set_birthday_once(member_id: int, birthday: date, birth_md: int) -> bool:
    """Set the birthday if none is stored yet (a conditional update); True if it was set."""
    changed = await Member.filter(id=member_id, birthday__isnull=True).update(
        birthday=birthday, birth_md=birth_md
    )
    return bool(changed)


async def birthday_of(member_id: int) -> date | None:
    """The stored birthday, if any."""
    rows = await Member.filter(id=member_id).values("birthday")
    born = rows[0]["birthday"] if rows else None
    return born if isinstance(born, date) else None


async def set_mobile(member_id: int, cipher: str, digest: str, now: datetime) -> bool:
    """Store the ciphertext and hash, and the ``mobile_hash`` identity, in one transaction.

    A previous number's identity is removed. False if there is no such member;
    MobileTaken if another member holds the number (the unique keys decide).
    """
    try:
        async with in_transaction():
            changed = await Member.filter(id=member_id).update(
                mobile_cipher=cipher, mobile_hash=digest
            )
            if not changed:
                return False
            stale = Identity.filter(member_id=member_id, kind=MOBILE_HASH).exclude(value=digest)
            await stale.delete()
            if not await Identity.exists(kind=MOBILE_HASH, app="", value=digest):
                await Identity.create(
                    kind=MOBILE_HASH, app="", value=digest, member_id=member_id, created_at=utc(now)
                )
    except IntegrityError:
        raise MobileTaken("this mobile number belongs to another member") from None
    return True
