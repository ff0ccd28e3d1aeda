"""Broadcasts (群发): a segment's members, one channel, one content, a state machine.

draft → scheduled → sending ⇄ paused → done, and cancelled from any state before done.
Every change is a conditional update with an AuditLog row naming the actor; an illegal
change raises :class:`BroadcastStateError` naming the states. ``start`` computes the
expected reach and enqueues set-based (:mod:`bot.services.broadcast_enqueue`); the
outbound engine sends the rows. The audience is a ``sop.sql.Sql`` condition over
``member`` (base conditions included), compiled from the segment's rule (the snapshot
once sending started) by :meth:`BroadcastService.audience`; callers may pass their own.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.services import broadcast_groups, broadcast_report
from bot.services.broadcast_content import BroadcastError, Content, check
from bot.services.broadcast_enqueue import Enqueuer
from bot.services.broadcast_sql import OA_CHANNELS, Target, reach_counts
from sop import segments
from sop.sql import Sql, rows
from storage.models import Broadcast, Segment
from storage.repos import broadcasts as repo
from storage.timeutil import utc

if TYPE_CHECKING:
    from bot.clock import BusinessClock
    from bot.config import Settings
    from bot.context import Services
    from bot.templating import Renderer

SYSTEM = "system"
ENQUEUE_STALE = timedelta(minutes=5)  # an enqueue with no page this long has stopped
log = logging.getLogger("bot.broadcasts")
AudienceFor = Callable[[Broadcast], Sql]
Watcher = Callable[[datetime], Awaitable[None]]  # told after each start_due (the tick)
__all__ = ["BroadcastError", "BroadcastService", "BroadcastStateError", "Reach", "Rules"]


class BroadcastStateError(BroadcastError):
    """A change the broadcast's state does not allow."""

    def __init__(self, broadcast_id: int, state: str, action: str, allowed: tuple[str, ...]):
        """Name the broadcast, its state, and the states the action needs."""
        super().__init__(
            f"broadcast {broadcast_id} is {state}: {action} needs {' or '.join(allowed)}"
        )
        self.state, self.action, self.allowed = state, action, allowed


@dataclass(frozen=True, slots=True)
class Rules:
    """Broadcast limits: members per enqueue page (the WeCom receive limit is the corp's
    rule, ``[wecom] receive_rule``)."""

    batch: int = 500


@dataclass(frozen=True, slots=True)
class Reach:
    """Expected reach: the audience, who is excluded and why, who will be reached.

    Counts are members, or groups on ``wecom_group`` (``unit``), where ``members`` is the
    number of customers in the groups that will be reached."""

    channel: str
    total: int
    reached: int
    excluded: Mapping[str, int] = field(default_factory=dict)
    unit: str = "member"
    members: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form (stored on the broadcast)."""
        found: dict[str, Any] = {
            "channel": self.channel,
            "total": self.total,
            "reached": self.reached,
            "excluded": dict(self.excluded),
        }
        if self.unit != "member":
            found.update(unit=self.unit, members=self.members)
        return found


# action → (states it starts from, state it leads to)
MOVES = {
    "schedule": (("draft", "scheduled"), "scheduled"),
    "start": (("draft", "scheduled"), "sending"),
    "pause": (("sending",), "paused"),
    "resume": (("paused",), "sending"),
    "cancel": (("draft", "scheduled", "sending", "paused"), "cancelled"),
    "finish": (("sending",), "done"),
}


class BroadcastService:
    """Creates, previews, starts, pauses, resumes, cancels and reports broadcasts."""

    def __init__(
        self,
        settings: Settings,
        clock: BusinessClock,
        renderer: Renderer,
        *,
        rules: Rules | None = None,
        audience_for: AudienceFor | None = None,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.renderer = renderer
        self.rules = rules or Rules()
        self.audience_for = audience_for
        self.wake = wake  # the outbound sender's wake-up, set by create_app
        self.watchers: list[Watcher] = []  # e.g. chat progress (bot.services.broadcast_progress)

    @classmethod
    def for_services(cls, services: Services, **options: Any) -> BroadcastService:
        """A service on these services' settings, clock and renderer."""
        return cls(services.settings, services.clock, services.renderer, **options)

    async def create(
        self,
        name: str,
        channel: str,
        *,
        actor: str,
        template: str = "",
        content: Mapping[str, Any] | None = None,
        kind: str = "marketing",
        account: str = "",
        segment_id: int | None = None,
        rule: Mapping[str, Any] | None = None,
    ) -> Broadcast:
        """A draft broadcast (content checked: BroadcastError names the rule broken)."""
        body = dict(content or {})
        check(self.renderer, channel, kind, template, body)
        values = {
            "name": name,
            "channel": channel,
            "kind": kind,
            "template": template,
            "content": body,
            "account": self._account(channel, kind, account),
            "segment_id": segment_id,
            "rule": dict(rule or {}),
        }
        return await repo.create(values, actor, self.clock.now())

    def _account(self, channel: str, kind: str, account: str) -> str:
        if channel not in OA_CHANNELS:
            if self.settings.wecom is None:
                raise BroadcastError("no WeCom corp configured")
            return self.settings.wecom.name
        if account not in self.settings.accounts:
            raise BroadcastError(f"no Official Account named {account!r}")
        oa = self.settings.accounts[account]
        if channel == "oa_template" and not (oa.type == "service" and oa.verified):
            raise BroadcastError(f"{account}: template messages need a verified service account")
        return account

    async def get(self, broadcast_id: int) -> Broadcast:
        """The broadcast (BroadcastError when there is none)."""
        found = await Broadcast.get_or_none(id=broadcast_id)
        if found is None:
            raise BroadcastError(f"no broadcast {broadcast_id}")
        return found

    def _content(self, b: Broadcast) -> Content:
        return check(self.renderer, b.channel, b.kind, b.template, b.content)

    def _target(self, b: Broadcast, now: datetime) -> Target:
        oa = self.settings.accounts.get(b.account)
        corp = self.settings.wecom.corp_id if self.settings.wecom is not None else ""
        return Target(
            int(b.id),
            b.channel,
            b.kind,
            oa.appid if oa is not None else "",
            b.account,
            corp,
            now,
            self.settings.tz,
            self.settings.sop.marketing_cap,
            self.settings.sop.marketing_cap_days,
            self.settings.wecom.receive_rule if self.settings.wecom is not None else "month",
        )

    async def audience(self, b: Broadcast) -> Sql:
        """Who the broadcast is for: its rule (the segment's until sending starts) compiled
        for its kind at the business clock's now. BroadcastError names a bad rule."""
        if self.audience_for is not None:
            return self.audience_for(b)
        raw = dict(b.rule) if b.state not in ("draft", "scheduled") else await self._rule(b)
        try:
            rule = segments.parse_rule(raw)
        except segments.SegmentError as exc:
            raise BroadcastError(f"broadcast {b.id}: segment rule: {exc}") from exc
        return segments.compile_segment(
            rule, kind=b.kind, settings=self.settings, now=self.clock.now()
        )

    async def preview(self, broadcast_id: int, audience: Sql | None = None) -> Reach:
        """The expected reach now (content re-checked: per-member variables refused)."""
        b = await self.get(broadcast_id)
        self._content(b)
        every = await self._every_group(b, audience)
        return await self._reach(
            b, audience if audience is not None else await self.audience(b), every
        )

    async def _every_group(self, b: Broadcast, audience: Sql | None) -> bool:
        """A wecom_group broadcast whose rule has no conditions reaches every group."""
        if b.channel != broadcast_groups.CHANNEL or audience is not None:
            return False
        raw = dict(b.rule) if b.state not in ("draft", "scheduled") else await self._rule(b)
        try:
            return not segments.parse_rule(raw).items  # {"all": []}
        except segments.SegmentError:
            return False  # audience() names the problem

    async def _reach(self, b: Broadcast, audience: Sql, every: bool = False) -> Reach:
        target = self._target(b, self.clock.now())
        members = None
        if b.channel == broadcast_groups.CHANNEL:
            scope = broadcast_groups.GroupScope(target, audience, every)
            counts, members = await broadcast_groups.reach(scope)
        else:
            found = await rows(reach_counts(target, audience))
            counts = {str(r["reason"]): int(r["n"]) for r in found}
        reached = counts.pop("", 0)
        total, excluded = reached + sum(counts.values()), dict(sorted(counts.items()))
        if members is None:
            return Reach(b.channel, total, reached, excluded)
        return Reach(b.channel, total, reached, excluded, broadcast_groups.UNIT, members)

    async def _move(self, broadcast_id: int, action: str, actor: str, **values: Any) -> None:
        sources, target = MOVES[action]
        if not await repo.transition(
            broadcast_id, sources, target, actor, self.clock.now(), **values
        ):
            b = await self.get(broadcast_id)
            raise BroadcastStateError(broadcast_id, b.state, action, sources)

    async def schedule(self, broadcast_id: int, at: datetime, *, actor: str) -> None:
        """draft (or scheduled) → scheduled at ``at``; start_due starts it then."""
        await self._move(broadcast_id, "schedule", actor, scheduled_at=at)

    async def start(
        self, broadcast_id: int, audience: Sql | None = None, *, actor: str = SYSTEM
    ) -> Reach:
        """draft or scheduled → sending: snapshot the rule, store the reach, enqueue."""
        await self.begin(broadcast_id, audience, actor=actor)
        return await self.continue_enqueue(broadcast_id, audience)

    async def begin(
        self, broadcast_id: int, audience: Sql | None = None, *, actor: str = SYSTEM
    ) -> None:
        """draft or scheduled → sending with the rule snapshot, content and rule checked
        first; enqueues nothing (the caller's ``continue_enqueue`` does)."""
        b = await self.get(broadcast_id)
        self._content(b)
        rule = await self._rule(b)
        if audience is None:
            await self.audience(b)  # a bad rule fails before the state changes
        await self._move(broadcast_id, "start", actor, started_at=self.clock.now(), rule=rule)

    async def continue_enqueue(self, broadcast_id: int, audience: Sql | None = None) -> Reach:
        """Finish the enqueue of a sending broadcast whose process died while enqueueing
        (members that have a row already are left alone)."""
        b = await self.get(broadcast_id)
        if b.state not in ("sending", "paused") or b.reach.get("enqueued"):
            raise BroadcastStateError(broadcast_id, b.state, "continue", ("sending", "paused"))
        every = await self._every_group(b, audience)
        if audience is None:
            audience = await self.audience(b)
        return await self._enqueue(broadcast_id, audience, every)

    async def _enqueue(self, broadcast_id: int, audience: Sql, every: bool = False) -> Reach:
        b = await self.get(broadcast_id)
        content = self._content(b)
        reach = await self._reach(b, audience, every)
        await repo.save_reach(broadcast_id, {**reach.as_dict(), "enqueued": False})
        target, batch = self._target(b, self.clock.now()), self.rules.batch
        enqueuer = (
            broadcast_groups.GroupEnqueuer(target, content, self.renderer, batch, every)
            if b.channel == broadcast_groups.CHANNEL
            else Enqueuer(target, content, self.renderer, batch)
        )
        await enqueuer.run(audience, lambda: self._beat(broadcast_id))
        await repo.save_reach(broadcast_id, {**reach.as_dict(), "enqueued": True})
        await self._after_enqueue(broadcast_id)
        return reach

    async def _rule(self, b: Broadcast) -> dict[str, Any]:
        if b.segment_id is None:
            return dict(b.rule)
        segment = await Segment.get(id=b.segment_id)
        return dict(segment.rule)

    async def _state(self, broadcast_id: int) -> str:
        return str((await self.get(broadcast_id)).state)

    async def _beat(self, broadcast_id: int) -> str:
        # Before each enqueue page: the heartbeat (updated_at) that tells a live enqueue
        # from one whose process died (adopted by start_due), then the state.
        await repo.touch(broadcast_id, self.clock.now())
        return await self._state(broadcast_id)

    async def adopt_enqueues(self, now: datetime) -> list[int]:
        """Finish the enqueue of sending or paused broadcasts whose enqueue stopped (no
        page for ``ENQUEUE_STALE``: its process died or shut down). One adopter each: the
        heartbeat is taken by a conditional update; keys make it insert nothing twice."""
        adopted = []
        stale = await Broadcast.filter(
            state__in=("sending", "paused"), updated_at__lt=utc(now - ENQUEUE_STALE)
        ).order_by("id")
        for b in stale:
            if b.reach.get("enqueued") or not await repo.take_beat(b, now):
                continue
            log.warning("broadcast %s: its enqueue stopped; finishing it", b.id)
            try:
                await self.continue_enqueue(int(b.id))
            except BroadcastError as exc:
                log.warning("broadcast %s: enqueue not finished: %s", b.id, exc)
                continue
            adopted.append(int(b.id))
        return adopted

    async def _after_enqueue(self, broadcast_id: int) -> None:
        state = await self._state(broadcast_id)
        if state == "sending":
            await repo.release(broadcast_id)  # bundled rows: the group is complete
        elif state == "paused":
            await repo.hold(broadcast_id)  # belt and braces: nothing pending while paused
        elif state == "cancelled":
            await repo.cancel_rows(broadcast_id)  # a page written after the cancel
        if self.wake is not None:
            self.wake()
        await self.status(broadcast_id)

    async def pause(self, broadcast_id: int, *, actor: str) -> int:
        """sending → paused: pending rows held (rows already sending finish); rows held."""
        await self._move(broadcast_id, "pause", actor)
        return await repo.hold(broadcast_id)

    async def resume(self, broadcast_id: int, *, actor: str) -> int:
        """paused → sending: held rows pending again; rows released."""
        await self._move(broadcast_id, "resume", actor)
        released = await repo.release(broadcast_id)
        if self.wake is not None:
            self.wake()
        return released

    async def cancel(self, broadcast_id: int, *, actor: str) -> int:
        """→ cancelled: pending and held rows cancelled (sent rows stay sent); rows cancelled."""
        await self._move(broadcast_id, "cancel", actor, finished_at=self.clock.now())
        return await repo.cancel_rows(broadcast_id)

    async def status(self, broadcast_id: int) -> dict[str, Any]:
        """State and row counts; a sending broadcast whose rows are all final becomes done."""
        b = await self.get(broadcast_id)
        done = b.state == "sending" and b.reach.get("enqueued")
        if done and not await repo.open_rows(broadcast_id):
            now = self.clock.now()
            await repo.transition(broadcast_id, ("sending",), "done", SYSTEM, now, finished_at=now)
            b = await self.get(broadcast_id)
        counts = await repo.row_counts(broadcast_id)
        by_status: dict[str, int] = {}
        for c in counts:
            by_status[c["status"]] = by_status.get(c["status"], 0) + int(c["n"])
        return {"id": int(b.id), "state": b.state, "rows": dict(sorted(by_status.items()))}

    async def report(self, broadcast_id: int) -> dict[str, Any]:
        """sent / failed / unknown / skipped … with reasons, per channel and per staff."""
        current = await self.status(broadcast_id)
        b = await self.get(broadcast_id)
        counts = await repo.row_counts(broadcast_id)
        mass = await repo.mass_totals(broadcast_id) if b.channel == "oa_mass" else None
        return broadcast_report.build(current, b.reach, counts, mass)

    async def start_due(self, now: datetime) -> list[int]:
        """Start the scheduled broadcasts whose time came, settle finished ones, then tell
        the watchers. Ids started."""
        started = []
        due = await Broadcast.filter(state="scheduled", scheduled_at__lte=utc(now)).order_by("id")
        for b in due:
            try:
                await self.start(int(b.id))
            except BroadcastStateError:
                continue  # another process started or cancelled it first
            except BroadcastError as exc:
                log.warning("scheduled broadcast %s not started: %s", b.id, exc)
                continue
            started.append(int(b.id))
        await self.adopt_enqueues(now)
        for b in await Broadcast.filter(state="sending").only("id"):
            await self.status(int(b.id))
        for watch in self.watchers:
            try:
                await watch(now)
            except Exception:
                log.exception("broadcast watcher failed")
        return started
