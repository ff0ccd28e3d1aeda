"""Finding the customer a staff member names in the agent chat: by remark among the
staff member's own relations, by mobile number (HMAC lookup) or by member code."""

from __future__ import annotations

from dataclasses import dataclass

from bot.services import member_profile, mobile
from bot.services.pii import MobileVault, PiiError
from storage.models import Member, StaffCustomer


@dataclass(frozen=True, slots=True)
class Candidate:
    """A member the reference may mean, and the acting staff member's relation with them."""

    member: Member
    relation: StaffCustomer | None


async def find_customers(userid: str, ref: str, vault: MobileVault) -> list[Candidate]:
    """Every member the reference may mean (one: found; several: ambiguous; none)."""
    ref = ref.strip()
    own = await StaffCustomer.filter(staff_userid=userid, status="active", remark=ref)
    found: dict[int, Candidate] = {}
    for rel in own:
        member_id = int(rel.member_id)  # type: ignore[attr-defined]
        found.setdefault(member_id, Candidate(await Member.get(id=member_id), rel))
    member: Member | None = None
    if member_profile.is_mobile(ref):
        try:
            member = await mobile.find_member(vault, ref)
        except PiiError:
            member = None
    else:
        member = await member_profile.by_code(ref)
    if member is not None and member.id not in found:
        mine = (
            await StaffCustomer.filter(staff_userid=userid, member_id=member.id, status="active")
            .order_by("id")
            .first()
        )
        found[member.id] = Candidate(member, mine)
    return list(found.values())


async def owners(member_id: int) -> list[str]:
    """The staff members with an active relation with the member."""
    rows = await StaffCustomer.filter(member_id=member_id, status="active").order_by("id")
    return list(dict.fromkeys(r.staff_userid for r in rows))
