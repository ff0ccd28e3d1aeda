"""``wecom sync-customers``: every staff member's customers into relations and members.

get_follow_user_list, then batch/get_by_user per staff member with its cursor. Each
customer is bound to a member (identity, else the unionid's member, else a new one) and
its relation upserted with remark, add way, State and the corp tags known locally. A
second run changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from bot.services import wecom_customers
from bot.services.wecom_groups import count_progress
from storage.models.members import WECOM_EXTERNAL_USERID as EXTERNAL
from storage.repos import members as members_repo
from storage.repos import wecom_sync as repo

if TYPE_CHECKING:
    from bot.context import Services


@dataclass(frozen=True, slots=True)
class CustomerSyncCounts:
    """What ``sync_customers`` did."""

    staff: int = 0
    relations: int = 0
    created: int = 0
    updated: int = 0
    members: int = 0


def _channel(services: Services, state: str) -> str:
    wecom = services.settings.wecom
    if wecom is None or not state:
        return ""
    way = wecom.contact_ways.get(state)
    return way.channel if way is not None and way.channel else state


async def sync_customers(
    services: Services, progress: TextIO | None = None, page_size: int = 100
) -> CustomerSyncCounts:
    """Pull every relation from WeCom (idempotent); counts of what changed."""
    wecom = services.settings.wecom
    if wecom is None:
        raise LookupError("no [wecom] section in the settings")
    api = services.clients.wecom().external_contact
    staff = await api.follow_users()
    relations = created = updated = 0
    members: set[int] = set()
    for userid in staff:
        cursor = ""
        while True:
            page, cursor = await api.batch_by_user([userid], cursor=cursor, limit=page_size)
            for item in page:
                contact, follow = item.get("external_contact", {}), item.get("follow_info", {})
                ext = str(contact.get("external_userid", ""))
                if not ext or not follow.get("userid"):
                    continue
                now = services.clock.now()
                channel = _channel(services, str(follow.get("state", "")))
                unionid = str(contact.get("unionid", ""))
                member_id = await repo.bind_customer(wecom.corp_id, ext, unionid, now, channel)
                if unionid:  # a member met by an event whose contact fetch never ran
                    member_id = await _linked(services, wecom.corp_id, ext, member_id, unionid)
                change = await repo.upsert_relation(wecom.corp_id, member_id, follow, ext, now)
                relations += 1
                created += change.created
                updated += change.changed and not change.created
                members.add(member_id)
                count_progress(progress, relations, "relations", 100)
            if not cursor:
                break
    if progress is not None:
        print(f"\r  {relations:,} relations", file=progress)
    return CustomerSyncCounts(len(staff), relations, created, updated, len(members))


async def _linked(
    services: Services, corp: str, external: str, member_id: int, unionid: str
) -> int:
    """ONE-ID as the add-contact event does it (``wecom_customers.link_unionid``): the
    member gets the unionid, or is merged into the member holding it; the member now."""
    outcome = await wecom_customers.link_unionid(services, member_id, unionid, services.clock.now())
    if outcome != "merged":
        return member_id
    found = await members_repo.find_by_identity(EXTERNAL, corp, external)
    return found.id if found is not None else member_id
