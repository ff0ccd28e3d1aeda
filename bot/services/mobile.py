"""Mobile numbers of members: stored encrypted with a keyed lookup hash and identity.

Verified binding (a one-time SMS code) is built on top of ``set_mobile``; this module is
the storage primitive, also used by imports and ``members show <mobile>``.
"""

from __future__ import annotations

from datetime import datetime

from bot.services.pii import MobileVault
from storage.models import Member
from storage.repos import member_view, profile
from storage.repos.profile import MobileTaken

__all__ = ["MobileTaken", "find_member", "set_mobile"]


async def set_mobile(vault: MobileVault, member_id: int, raw: str, *, now: datetime) -> str:
    """Store the member's number (ciphertext, hash, ``mobile_hash`` identity); it masked.

    InvalidMobile for a bad number, MobileTaken if another member holds it, LookupError
    if there is no such member.
    """
    mobile = vault.normalize(raw)
    stored = await profile.set_mobile(
        member_id, vault.encrypt(mobile), vault.lookup_hash(mobile), now
    )
    if not stored:
        raise LookupError(f"no member {member_id}")
    return vault.mask(mobile)


async def find_member(vault: MobileVault, raw: str) -> Member | None:
    """The member holding this number, by its lookup hash."""
    return await member_view.member_by_mobile_hash(vault.lookup_hash(raw))
