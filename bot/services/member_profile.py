"""A member's whole record for operators (``members show``, ``GET /api/members/{code}``).

Found by public code, legacy (imported) member code, mobile number or any identity value;
the record is the whole story: identities, ledger, lots, tags, consent, and the commerce
rows other services write (orders, refunds, redemptions, coupons).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.services import mobile, wecom_tags
from bot.services.pii import BadToken, InvalidMobile, MissingKey, MobileVault, normalize
from storage.models import Member
from storage.models.members import LEGACY_CODE
from storage.repos import member_story, member_view

LEDGER_LINES = 20
STORY_LINES = 20
MAX_CODE = 16  # Member.code


@dataclass(frozen=True, slots=True)
class Profile:
    """Everything ``members show`` prints."""

    member: Member
    mobile: str
    identities: list[dict[str, Any]]
    entries: list[dict[str, Any]]
    lots: list[dict[str, Any]]
    tags: list[dict[str, Any]]
    consents: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    order_totals: dict[str, int]
    refunds: list[dict[str, Any]]
    redemptions: list[dict[str, Any]]
    coupons: list[dict[str, Any]]
    # Every tag the member carries: corp tags on active staff relations, then local ones.
    all_tags: list[dict[str, Any]] = field(default_factory=list)


def is_mobile(ref: str) -> bool:
    """True when the reference reads as a mainland mobile number."""
    try:
        normalize(ref)
    except InvalidMobile:
        return False
    return True


async def find(ref: str, vault: MobileVault) -> Member | None:
    """The member by mobile number (needs the keys), public or legacy code, or identity."""
    if is_mobile(ref):
        return await mobile.find_member(vault, ref)
    return (
        await by_code(ref)
        or await member_view.member_by_identity(ref)
        or await member_view.member_by_identity(ref.strip(), (LEGACY_CODE,))
    )


async def by_code(ref: str) -> Member | None:
    """The member with this public code; None for anything longer than a code can be
    (an openid is 28 characters: the ORM refuses to compare it with the code column)."""
    code = ref.strip()
    if not 0 < len(code) <= MAX_CODE:
        return None
    return await member_view.member_by_code(code)


def masked_mobile(member: Member, vault: MobileVault) -> str:
    """The member's number masked (138****8000), or why it cannot be shown."""
    if not member.mobile_cipher:
        return ""
    try:
        return vault.mask(vault.decrypt(member.mobile_cipher))
    except MissingKey:
        return "(encrypted; security.mobile_key not configured)"
    except BadToken:
        return "(does not decrypt under the configured key)"


async def load(member: Member, vault: MobileVault) -> Profile:
    """The member's identities, ledger, open lots, tags, consent and commerce story."""
    return Profile(
        member=member,
        mobile=masked_mobile(member, vault),
        identities=await member_view.identities(member.id),
        entries=await member_view.recent_entries(member.id, LEDGER_LINES),
        lots=await member_view.open_lots(member.id),
        tags=await member_view.tags(member.id),
        consents=await member_view.consents(member.id),
        orders=await member_story.orders(member.id, STORY_LINES),
        order_totals=await member_story.order_totals(member.id),
        refunds=await member_story.refunds(member.id, STORY_LINES),
        redemptions=await member_story.redemptions(member.id, STORY_LINES),
        coupons=await member_story.coupons(member.id, STORY_LINES),
        all_tags=await wecom_tags.member_tags(member.id),
    )
