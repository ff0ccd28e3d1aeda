"""WeCom customers: the welcome within 20 s, the relation, and ONE-ID binding.

An add (``add_external_contact`` / ``add_half_external_contact``) runs in this order:

1. claim a marker keyed by the WelcomeCode (a retry arriving while the first delivery
   is still running finds it claimed and sends nothing), then send the welcome before
   any other API call (41051: already sent, counts as sent; 41096: once more after 1 s
   through the injected sleep; no WelcomeCode: the admin console sends it);
2. synchronously, from the event alone: the member holding the external userid (or a
   new one with the State's channel) and the StaffCustomer relation;
3. in the background: externalcontact/get for the name, unionid, remark, add way and
   tags; a unionid held by another member (an OA follower) merges this member into that
   one, and a refused merge leaves them separate with a log line. A failed fetch loses
   nothing the event carried; the next edit event or a sync fills the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.clients.errors import ApiError
from bot.config import ConfigError, Settings, WeComSettings
from bot.templating import TEMPLATES_DIR
from storage.keys import Key
from storage.models import Member
from storage.models.members import WECOM_EXTERNAL_USERID as EXTERNAL
from storage.repos import binding as binding_repo
from storage.repos import members as members_repo
from storage.repos import wecom_customers as repo
from storage.repos.merge import MergeRefused

if TYPE_CHECKING:
    from bot.context import Services
    from bot.wechat.wecom_events import ExternalContactEvent

log = logging.getLogger("bot.wecom.customers")

ALREADY_SENT, CODE_NOT_READY = 41051, 41096
RETRY_AFTER = 1.0
MARKER_TTL = 86400  # a WelcomeCode lives 20 s; the marker outlives every retry
MERGE_ACTOR = "system:wecom_unionid"


def check_welcome_templates(settings: Settings, directory: Path = TEMPLATES_DIR) -> None:
    """ConfigError naming the key of any configured welcome template that does not exist."""
    wecom = settings.wecom
    if wecom is None:
        return
    named = {"wecom.default_welcome": wecom.default_welcome}
    named.update(
        {f"wecom.contact_ways.{s}.welcome": c.welcome for s, c in wecom.contact_ways.items()}
    )
    for key, name in named.items():
        if not (directory / f"{name}.j2").is_file():
            raise ConfigError("settings", key, f"no template templates/{name}.j2")


def welcome_template(wecom: WeComSettings, state: str) -> str:
    """The welcome template a State maps to (else the default)."""
    way = wecom.contact_ways.get(state)
    return way.welcome if way is not None else wecom.default_welcome


def channel_of(wecom: WeComSettings, state: str) -> str:
    """The channel a State records on members it brings (configured, else the State)."""
    way = wecom.contact_ways.get(state)
    return (way.channel if way is not None and way.channel else state)[:64]


@dataclass(frozen=True, slots=True)
class AddOutcome:
    """What an add did: the welcome (sent, by_console, failed, '' when another delivery
    owns it), the member and the relation."""

    welcome: str
    member_id: int
    relation_id: int


async def on_add(
    services: Services, event: ExternalContactEvent, *, half: bool, now: datetime
) -> AddOutcome:
    """Welcome first, then record the member and relation; details in the background."""
    wecom = _wecom(services)
    state = str(getattr(event, "state", ""))
    code = str(getattr(event, "welcome_code", ""))
    welcome = await _welcome(services, wecom, event.user_id, state, code)
    member = await _member_for(wecom.corp_id, event.external_user_id, channel_of(wecom, state), now)
    relation = await repo.open_relation(
        wecom.corp_id,
        event.user_id,
        event.external_user_id,
        member.id,
        status="pending" if half else "active",
        state=state[:64],
        now=now,
    )
    if welcome:
        await repo.set_welcome(relation.id, welcome, now)
    services.background.spawn(
        fill_from_contact(services, event.user_id, event.external_user_id, now),
        name="wecom_customer_fill",
    )
    return AddOutcome(welcome, relation.member_id, relation.id)


async def _welcome(
    services: Services, wecom: WeComSettings, staff: str, state: str, code: str
) -> str:
    if not code:
        return "by_console"
    marker = Key(f"{services.keys.prefix}:wecom-welcome:{code}", MARKER_TTL)
    if not await services.cache.claim(marker):
        return ""  # another delivery of this add sends (or sent) it
    text = services.renderer.render(welcome_template(wecom, state), staff=staff, state=state)
    api = services.clients.wecom().external_contact
    for attempt in (1, 2):
        try:
            await api.send_welcome(code, text)
            return "sent"
        except ApiError as exc:
            if exc.errcode == ALREADY_SENT:
                return "sent"
            if exc.errcode == CODE_NOT_READY and attempt == 1:
                await services.clients.sleep(RETRY_AFTER)
                continue
            log.warning("wecom welcome failed", extra={"errcode": exc.errcode})
        except Exception:
            log.exception("wecom welcome failed")
        # Let a WeChat retry try again: WeCom itself answers 41051 if it did go out.
        await services.cache.delete(marker)
        return "failed"
    return "failed"  # pragma: no cover - the loop always returns


async def _member_for(
    corp: str, external: str, channel: str, now: datetime
) -> members_repo.MemberRow:
    found = await members_repo.find_by_identity(EXTERNAL, corp, external)
    if found is not None:
        return found
    return await members_repo.create_with_identity(EXTERNAL, corp, external, now, channel=channel)


async def fill_from_contact(services: Services, staff: str, external: str, now: datetime) -> bool:
    """externalcontact/get → relation details, tags, the member's name and unionid.

    False (logged) when the fetch fails or the relation is unknown: what the event
    carried is already recorded.
    """
    wecom = _wecom(services)
    api = services.clients.wecom()
    try:
        body = await api.external_contact.get(external)
    except Exception as exc:
        log.warning("wecom contact fetch failed", extra={"error": repr(exc)})
        return False
    relation = await repo.find_relation(wecom.corp_id, staff, external)
    if relation is None:
        return False
    follow = _follow_of(body, staff)
    if follow is not None:
        await repo.fill_details(relation.id, follow, now)
        await _sync_tags(services, relation.id, follow, now)
    contact = body.get("external_contact", {})
    member_id: int = relation.member_id  # type: ignore[attr-defined]
    name = str(contact.get("name", ""))[:64]
    if name:
        await Member.filter(id=member_id, name="").update(name=name)
    unionid = str(contact.get("unionid", ""))
    if unionid:
        await link_unionid(services, member_id, unionid, now)
    return True


def _follow_of(body: Mapping[str, Any], staff: str) -> Mapping[str, Any] | None:
    for follow in body.get("follow_user", []):
        if follow.get("userid") == staff:
            return dict(follow)
    return None


async def _sync_tags(
    services: Services, relation_id: int, follow: Mapping[str, Any], now: datetime
) -> tuple[int, int]:
    wecom_ids = [str(t.get("tag_id", "")) for t in follow.get("tags", []) if t.get("type", 1) == 1]
    tags = services.clients.wecom().tags
    local = await repo.ensure_tags(wecom_ids, lambda ids: tags.list_groups(tag_ids=ids))
    set_by = str(follow.get("oper_userid", "") or follow.get("userid", ""))
    return await repo.sync_tags(relation_id, local.values(), now, set_by=set_by)


async def link_unionid(services: Services, member_id: int, unionid: str, now: datetime) -> str:
    """ONE-ID: give the member the unionid, or merge it into the member holding it.

    Returns bound, held, merged, refused or conflict (the member holds another unionid).
    """
    result = await binding_repo.bind_unionid(member_id, unionid, now, fresh=False)
    if result.outcome in ("bound", "held"):
        return result.outcome
    holder = result.holder_id
    if holder == member_id:
        log.info("wecom unionid conflict", extra={"member_id": member_id})
        return "conflict"
    # Imported late to keep the services → merge → context import edge one-way.
    from bot.services.merge import merge_members

    try:
        await merge_members(
            holder, member_id, actor=MERGE_ACTOR, reason="wecom unionid", now=now, services=services
        )
    except MergeRefused as exc:
        log.info(
            "wecom unionid merge refused, members kept separate",
            extra={"member_id": member_id, "holder_id": holder, "reason": exc.reason},
        )
        return "refused"
    return "merged"


async def on_edit(services: Services, event: ExternalContactEvent, now: datetime) -> bool:
    """Pull the relation's current remark and tags and mirror them (added and removed)."""
    wecom = _wecom(services)
    if await repo.find_relation(wecom.corp_id, event.user_id, event.external_user_id) is None:
        state = str(getattr(event, "state", ""))
        member = await _member_for(
            wecom.corp_id, event.external_user_id, channel_of(wecom, state), now
        )
        await repo.open_relation(
            wecom.corp_id,
            event.user_id,
            event.external_user_id,
            member.id,
            status="active",
            state=state[:64],
            now=now,
        )
    return await fill_from_contact(services, event.user_id, event.external_user_id, now)


async def on_end(
    services: Services, event: ExternalContactEvent, ended_by: str, now: datetime
) -> bool:
    """End the relation (the member stays); False if it was not open."""
    corp = _wecom(services).corp_id
    return await repo.end_relation(corp, event.user_id, event.external_user_id, ended_by, now)


async def on_transfer_fail(
    services: Services, event: ExternalContactEvent, reason: str, now: datetime
) -> int:
    """Record a failed handover on the relation and its CustomerTransfer row."""
    corp = _wecom(services).corp_id
    return await repo.transfer_failed(corp, event.user_id, event.external_user_id, reason, now)


def _wecom(services: Services) -> WeComSettings:
    wecom = services.settings.wecom
    if wecom is None:  # the /wecom endpoint answers 404 without the section
        raise LookupError("no [wecom] section in the settings")
    return wecom
