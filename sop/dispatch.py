"""Send claimed SOP touches: grants once, then the message under the marketing policy.

Per touch: a member merged away or erased is skipped; a marketing touch of an opted-out
member is skipped (``skipped: opted_out``); the action's points, coupon and tag are
credited once (``sop.grants``); then the message: a marketing message that would go out
as an OA message during quiet hours waits (the row stays pending, due at their end); a
capped marketing message is not sent (``message_skipped: cap``, the grants stand); else
``Notifier.notify`` picks the channel under the key ``sop:<touchpoint id>``, so a repeat
after a crash is a duplicate, never a second message.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from bot.config_sop import SopRule
from bot.context import Services
from bot.services.marketing import MarketingPolicy
from bot.services.notify import EVENT_QUOTA, EVENT_WINDOW, MESSAGE_QUOTA, MESSAGE_WINDOW
from sop.audiences import compile_audience
from sop.event_touches import insert_touches
from sop.grants import grant_once
from sop.variables import TouchContext, variables
from storage.models import Member, Touchpoint
from storage.repos import notify as notify_repo
from storage.repos import outbox
from storage.repos import touchpoints as repo
from storage.repos.touchpoints import Scope

ORPHANED_GROUP_AGE = timedelta(minutes=30)
log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5  # a touch failing this often is closed as skipped with the error
Progress = Callable[[Counter[str]], None]


class TouchDispatcher:
    """Claims due touchpoints and carries each out once."""

    def __init__(self, services: Services, rules: Mapping[str, SopRule]) -> None:
        self.services = services
        self.rules = rules
        self.policy = MarketingPolicy(services.settings.sop, services.settings.tz)

    async def dispatch_due(
        self,
        now: datetime,
        *,
        sop_id: str | None = None,
        run_id: int | None = None,
        batch: int = 200,
        progress: Progress | None = None,
    ) -> Counter[str]:
        """Carry out every pending touch due by ``now``; tallies by outcome.

        Rows are claimed in batches with a lease; the WeCom groups the pass wrote into
        are released at its end (one platform task per staff member and occurrence).
        """
        tally: Counter[str] = Counter()
        groups: set[str] = set()
        lease = timedelta(seconds=self.services.settings.sop.lease_seconds)
        scope = Scope(sop_id, run_id)
        await self._release_orphaned_groups()
        try:
            while rows := await repo.claim(now, self._now(now) + lease, batch, scope):
                for touch in rows:
                    # quiet hours and the cap are judged when the touch is carried out
                    tally[await self._carry_out(touch, self._now(now), groups)] += 1
                if progress is not None:
                    progress(tally)
        finally:
            for group in sorted(groups):
                try:
                    await outbox.release_group(group)
                except Exception:  # the orphan sweep of a later pass releases it
                    log.exception("releasing a WeCom group failed", extra={"group": group})
        return tally

    def _now(self, now: datetime) -> datetime:
        """The business clock as the pass goes on (never before the ``now`` asked for)."""
        return max(now, self.services.clock.now())

    async def _release_orphaned_groups(self) -> None:
        """Release SOP groups a dead pass left ``held`` (its rows were written long ago)."""
        before = datetime.now(UTC) - ORPHANED_GROUP_AGE  # created_at is the database's time
        released = await outbox.release_held_before("sop:", before)
        if released:
            log.warning("released WeCom rows a dead pass left held", extra={"count": released})

    async def on_event(self, event: str, member_id: int, at: datetime) -> int:
        """Insert the touches of the SOPs ``event`` triggers (once ever per occurrence).

        A rule whose audience is not plain ``all`` touches the member only when the
        member is in that audience at the event (its tier, tags, ... filters).
        """
        settings = self.services.settings
        admitted = []
        for rule in self.rules.values():
            if not (rule.enabled and rule.trigger.event == event):
                continue
            plain = rule.audience.name == "all" and not rule.audience.params
            if plain or await compile_audience(rule, at, settings).includes(member_id):
                admitted.append(rule)
        return await insert_touches(admitted, event, member_id, at, settings.tz)

    def group_key(self, touch: Touchpoint) -> str:
        """The outbox group of the touch's occurrence: its run, or its due business date."""
        if touch.run_id is not None:
            return f"sop:{touch.sop_id}:{touch.run_id}"
        day = touch.due_at.astimezone(self.services.settings.tz).date().isoformat()
        return f"sop:{touch.sop_id}:{day}"

    async def _carry_out(self, touch: Touchpoint, now: datetime, groups: set[str]) -> str:
        try:
            return await self._touch(touch, now, groups)
        except Exception as exc:
            log.exception("SOP touch failed", extra={"touchpoint": touch.id, "sop": touch.sop_id})
            if touch.attempts >= MAX_ATTEMPTS:
                await repo.finish(int(touch.id), repo.SKIPPED, f"failed: {exc}", now)
                return "skipped: failed"
            return "error"  # the lease lapses and a later pass tries again

    async def _touch(self, touch: Touchpoint, now: datetime, groups: set[str]) -> str:
        rule = self.rules.get(touch.sop_id)
        if rule is None:
            return await self._skip(touch, "unknown_sop", now)
        member = await Member.get_or_none(id=touch.member_id)
        if member is None or member.status != "active" or member.deleted_at is not None:
            return await self._skip(touch, "member_gone", now)
        marketing = rule.kind == "marketing"
        if marketing and member.marketing_opt_out:
            return await self._skip(touch, "opted_out", now)
        granted = await grant_once(self.services.settings, rule, touch, now)
        if not rule.action.template:
            await repo.finish(int(touch.id), repo.DONE, "granted", now)
            return "granted"
        key = f"sop:{touch.id}"
        sent_before = await notify_repo.find_message(f"notify:{key}") is not None
        if marketing and not sent_before:
            held = await self._hold(touch, rule, now)
            if held:
                return held
        member = await Member.get(id=touch.member_id)  # the balance after the grants
        context = TouchContext(self.services.settings, rule, touch, member, now)
        group = self.group_key(touch)
        groups.add(group)
        outcome = await self.services.notify.notify(
            touch.member_id,
            rule.action.template,
            await variables(context, granted),
            key=key,
            kind=rule.kind,
            account=rule.account or None,
            group_key=group,
        )
        text = f"{outcome.channel}: {outcome.reason}" if outcome.reason else outcome.channel
        await repo.finish(int(touch.id), repo.DONE, text, now, outcome.outbox_id)
        return outcome.channel

    async def _hold(self, touch: Touchpoint, rule: SopRule, now: datetime) -> str:
        """Why a marketing message is not sent now ("" when it may be)."""
        until = self.policy.quiet_until(now)
        if until is not None and await self._oa_window(touch.member_id, rule, now):
            await repo.defer(int(touch.id), until, "deferred: quiet hours")
            return "deferred"
        if await self.policy.capped(touch.member_id, now):
            await repo.finish(int(touch.id), repo.DONE, "message_skipped: cap", now)
            return "message_skipped: cap"
        return ""

    async def _oa_window(self, member_id: int, rule: SopRule, now: datetime) -> bool:
        """Would the message go out as an OA customer-service message now?"""
        activity = self.services.notify.activity
        if activity is not None:
            await activity.flush()  # the last message times are batched in memory
        accounts = self.services.settings.accounts
        names = [rule.account] if rule.account else list(accounts)
        apps = [accounts[n].appid for n in names if n in accounts]
        message = notify_repo.Window(now - MESSAGE_WINDOW, MESSAGE_QUOTA)
        event = notify_repo.Window(now - EVENT_WINDOW, EVENT_QUOTA)
        return await repo.oa_window_open(member_id, apps, message, event)

    async def _skip(self, touch: Touchpoint, why: str, now: datetime) -> str:
        outcome = f"skipped: {why}"
        await repo.finish(int(touch.id), repo.SKIPPED, why, now)
        return outcome
