"""Notices to one member, through the outbox, on the channel DESIGN §5 allows.

1. An OA customer-service message when the member wrote within 48 h and fewer than 5
   were sent since, or subscribed/scanned/clicked within 60 s and fewer than 3 were sent
   since (WeChat answers 45015/45047 otherwise). The slot is claimed in the database.
2. Else, for service notices only, a template message on a verified service account,
   when the notice has a configured template_id and the day's template quota lasts.
3. Else WeCom through the member's staff: the member's most recent active StaffCustomer
   relation gives a ``wecom_customer`` row (recipient = external_userid), sent as one
   add_msg_template task per staff member and group (``awaiting_staff`` until the send
   result). With a ``group_key`` the row is ``held`` until the caller releases the group;
   without one the notice is its own group, pending at once. Quiet hours do not apply:
   staff choose when to send.
4. Else an ``unreachable`` outbox row with the reason (never sent).

Customer service: https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Service_Center_messages.html
Template: https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Template_Message_Interface.html
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from tortoise.exceptions import IntegrityError

from bot.clock import BusinessClock
from bot.config import OfficialAccountSettings, Settings
from bot.services.activity import ActivityRecorder
from bot.templating import Renderer
from storage.models import OutboxMessage
from storage.repos import notify as repo
from storage.repos.outbox import NewMessage

MESSAGE_WINDOW, MESSAGE_QUOTA = timedelta(hours=48), 5
EVENT_WINDOW, EVENT_QUOTA = timedelta(seconds=60), 3
CS, TEMPLATE, WECOM = "oa_cs", "oa_template", "wecom_customer"
WECOM_VARIANT = "_wecom"  # templates/<name>_wecom.j2: the one text of a WeCom group task
Kind = Literal["service", "marketing"]
GROUP_KEY_MAX = 128


class NotifyError(ValueError):
    """A notice asked for something the policy does not know (kind, account)."""


@dataclass(frozen=True, slots=True)
class NotifyOutcome:
    """Where a notice went: ``oa_cs``, ``oa_template``, ``wecom_customer`` or
    ``unreachable`` (with why)."""

    channel: str
    outbox_id: int
    account: str = ""
    reason: str = ""
    duplicate: bool = False


def _outcome(row: OutboxMessage, duplicate: bool = False) -> NotifyOutcome:
    channel = repo.UNREACHABLE if row.status == repo.UNREACHABLE else row.channel
    return NotifyOutcome(channel, int(row.id), row.account, row.reason, duplicate)


class Notifier:
    """Chooses the channel for each notice and enqueues it once per key."""

    def __init__(
        self,
        settings: Settings,
        clock: BusinessClock,
        renderer: Renderer,
        activity: ActivityRecorder | None = None,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.renderer = renderer
        self.activity = activity
        self.wake = wake
        self._wecom_variants: frozenset[str] | None = None

    async def notify(
        self,
        member_id: int,
        template: str,
        variables: Mapping[str, Any],
        *,
        key: str,
        kind: Kind = "service",
        account: str | None = None,
        group_key: str | None = None,
    ) -> NotifyOutcome:
        """Send notice ``template`` once per ``key`` on the first channel the policy allows.

        ``group_key`` bundles the WeCom rows of many notices (one SOP occurrence) into
        one task per staff member: they are written ``held`` until the caller releases
        the group. Without it a WeCom row is its own group, released at once.
        """
        if kind not in ("service", "marketing"):
            raise NotifyError(f"kind must be service or marketing, not {kind!r}")
        accounts = self._accounts(account)
        outbox_key = f"notify:{key}"
        existing = await repo.find_message(outbox_key)
        if existing is not None:
            return _outcome(existing, duplicate=True)
        if self.activity is not None:
            await self.activity.flush()  # the last message times are batched in memory
        text = self.renderer.render(template, **variables)
        notice = _Notice(
            member_id, template, text, outbox_key, kind, dict(variables), group_key or ""
        )
        try:
            outcome = await self._send(notice, accounts)
        except IntegrityError:
            row = await repo.find_message(outbox_key)
            if row is None:
                raise
            return _outcome(row, duplicate=True)
        if outcome.channel != repo.UNREACHABLE and self.wake is not None:
            self.wake()
        return outcome

    def _accounts(self, account: str | None) -> dict[str, OfficialAccountSettings]:
        if account is None:
            return dict(self.settings.accounts)
        if account not in self.settings.accounts:
            raise NotifyError(f"no Official Account named {account!r}")
        return {account: self.settings.accounts[account]}

    async def _send(
        self, notice: _Notice, accounts: dict[str, OfficialAccountSettings]
    ) -> NotifyOutcome:
        now = self.clock.now()
        by_app: dict[str, list[str]] = {}
        for name, oa in accounts.items():
            by_app.setdefault(oa.appid, []).append(name)
        identities = await repo.oa_identities(notice.member_id, list(by_app))
        targets = [(name, ident) for ident in identities for name in by_app[ident.app]]
        for name, ident in targets:
            row = await self._customer_service(notice, name, ident, now)
            if row is not None:
                return _outcome(row)
        reasons = ["no customer-service window"] if targets else ["no followed OA identity"]
        if notice.kind == "service" and targets:
            row, why = await self._template(notice, targets, now)
            if row is not None:
                return _outcome(row)
            reasons.append(why)
        elif notice.kind == "marketing":
            reasons.append("template messages never carry marketing")
        row, why = await self._wecom(notice, now)
        if row is not None:
            return _outcome(row)
        reasons.append(why)
        unreachable = notice.row("none", "", "", {"text": notice.text})
        return _outcome(await repo.record_unreachable(unreachable, now, "; ".join(reasons)))

    async def _customer_service(
        self, notice: _Notice, account: str, ident: repo.OaIdentity, now: datetime
    ) -> OutboxMessage | None:
        message = repo.Window(now - MESSAGE_WINDOW, MESSAGE_QUOTA)
        event = repo.Window(now - EVENT_WINDOW, EVENT_QUOTA)
        row = notice.row(CS, account, ident.openid, {"text": notice.text})
        return await repo.enqueue_in_window(ident.id, message, event, row, now)

    async def _template(
        self, notice: _Notice, targets: list[tuple[str, repo.OaIdentity]], now: datetime
    ) -> tuple[OutboxMessage | None, str]:
        template_id = self.settings.notify.templates.get(notice.template, "")
        if not template_id:
            return None, f"no template_id configured for {notice.template}"
        verified = [(n, i) for n, i in targets if _verified_service(self.settings.accounts[n])]
        if not verified:
            return None, "no verified service account for template messages"
        start, end = self._today(now)
        quota = self.settings.notify.template_daily_quota
        for name, ident in verified:
            if await repo.templates_between(name, start, end) >= quota:
                continue
            payload = {"template_id": template_id, "data": notice.template_data(), "url": ""}
            row = notice.row(TEMPLATE, name, ident.openid, payload)
            return await repo.enqueue_template(row, now), ""
        return None, "daily template quota used up"

    async def _wecom(self, notice: _Notice, now: datetime) -> tuple[OutboxMessage | None, str]:
        wecom = self.settings.wecom
        if wecom is None:
            return None, "no WeCom corp configured"
        relation = await repo.active_staff_customer(notice.member_id, wecom.corp_id)
        if relation is None:
            return None, "no active WeCom staff relation"
        staff, external = relation
        group = notice.group_key or _group_of(notice.key)
        row = NewMessage(
            notice.key,
            WECOM,
            wecom.name,
            external,
            {"text": self._task_text(notice)},
            "notice",
            notice.member_id,
            notice.kind,
            group_key=group,
            staff_userid=staff,
        )
        status = "held" if notice.group_key else "pending"
        return await repo.enqueue_status(row, now, status), ""

    def _task_text(self, notice: _Notice) -> str:
        """The text of a grouped WeCom row: ``<template>_wecom`` when it exists.

        One add_msg_template task carries one text for all of a staff member's customers,
        so rows are bundled by equal text; the ``_wecom`` variant of a template leaves out
        per-member variables (name, code, balance), so one occurrence is one task per staff
        member. Without a variant the personal text goes alone, one task per customer.
        """
        variant = f"{notice.template}{WECOM_VARIANT}"
        if notice.group_key and variant in self._variants():
            return self.renderer.render(variant, **notice.variables)
        return notice.text

    def _variants(self) -> frozenset[str]:
        if self._wecom_variants is None:
            names = self.renderer.names()
            self._wecom_variants = frozenset(n for n in names if n.endswith(WECOM_VARIANT))
        return self._wecom_variants

    def _today(self, now: datetime) -> tuple[datetime, datetime]:
        day = now.astimezone(self.settings.tz).date()
        start = datetime.combine(day, datetime.min.time(), self.settings.tz)
        return start, start + timedelta(days=1)


def _verified_service(oa: OfficialAccountSettings) -> bool:
    return oa.type == "service" and oa.verified


@dataclass(frozen=True, slots=True)
class _Notice:
    member_id: int
    template: str
    text: str
    key: str
    kind: Kind
    variables: dict[str, Any]
    group_key: str = ""

    def row(self, channel: str, account: str, openid: str, payload: dict[str, Any]) -> NewMessage:
        return NewMessage(
            self.key, channel, account, openid, payload, "notice", self.member_id, self.kind
        )

    def template_data(self) -> dict[str, dict[str, str]]:
        """The template's fields: the rendered notice as ``first``, each variable by name."""
        data = {"first": {"value": self.text}}
        data.update({k: {"value": _plain(v)} for k, v in self.variables.items()})
        return data


def _group_of(key: str) -> str:
    """A notice's own group: its key (hashed when longer than the column)."""
    if len(key) <= GROUP_KEY_MAX:
        return key
    return "notify#" + hashlib.sha256(key.encode()).hexdigest()[:40]


def _plain(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "、".join(str(v) for v in value)
    return str(value)
