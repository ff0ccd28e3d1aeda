"""Services (the long-lived collaborators) and the per-event, frozen ``Ctx``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from bot.clients.registry import Clients
from bot.clock import BusinessClock, WallClock
from bot.config import Settings
from bot.replies import Reply, TextReply
from bot.templating import Renderer
from bot.wechat.inbound import Inbound
from storage.cache import Admission, Cache, Held
from storage.keys import KeyBuilder

if TYPE_CHECKING:
    from bot.background import Background
    from bot.services.binding import BindingService
    from bot.services.broadcasts import BroadcastService
    from bot.services.events import EventHub
    from bot.services.mall import MallService
    from bot.services.members import MemberService
    from bot.services.notify import Notifier
    from bot.services.orders import OrderService
    from bot.services.phone import PhoneService
    from bot.services.referrals import ReferralService
    from bot.services.signin import SignInService
    from bot.services.tiers import TierService


@dataclass(frozen=True, slots=True)
class MemberRef:
    """The member a callback belongs to, as far as intake needs to know it."""

    id: int
    code: str = ""
    created: bool = False


class MemberResolver(Protocol):
    """Finds (or creates) the member behind a callback's sender."""

    async def __call__(
        self, inbound: Inbound, cached: str | None = None, now: datetime | None = None
    ) -> MemberRef | None:
        """The member, or None for senders that are not members (staff, the platform).

        ``cached`` is the sender's identity-cache value when the caller already read it
        (the sender gate reads it with its admission); None: look it up. ``now``: the
        callback's time (its handlers' ``Ctx.now``), the activity time it notes.
        """


async def no_member(
    inbound: Inbound, cached: str | None = None, now: datetime | None = None
) -> MemberRef | None:
    """Resolver used until a member service is wired: nobody is a member yet."""
    return None


LateReplyHook = Callable[[Inbound, Reply], Awaitable[None]]


@dataclass(slots=True)
class Trace:
    """Mutable notes a callback gathers on its way through the middlewares."""

    outcome: str = "replied"
    member_id: int | None = None
    late: bool = False
    identity: str | None = None  # the sender's identity-cache value, read by the sender gate
    # Intake releases the sender's lock with the reply cache write (one round trip): while
    # ``hand_lock`` is set the sender gate leaves its lock held, in ``held``, on exit.
    hand_lock: bool = False
    held: Held | None = None
    # The sender gate's first cache step, made by intake in its dedupe claim's round trip;
    # the gate takes it (sets None) and holds its lock. Still set when dispatch ends: the
    # gate never ran, and intake releases the lock itself.
    admission: Admission | None = None


@dataclass(frozen=True, slots=True)
class Services:
    """Everything handlers and middlewares may use; built once by ``create_app``."""

    settings: Settings
    clock: BusinessClock
    wall: WallClock
    cache: Cache
    keys: KeyBuilder
    renderer: Renderer
    clients: Clients
    members: MemberService
    background: Background
    binding: BindingService
    referrals: ReferralService
    notify: Notifier
    tiers: TierService
    signin: SignInService
    mall: MallService
    orders: OrderService
    phone: PhoneService
    events: EventHub
    broadcasts: BroadcastService
    resolve_member: MemberResolver = no_member


@dataclass(frozen=True, slots=True)
class Ctx:
    """What one handler invocation sees."""

    inbound: Inbound
    services: Services
    now: datetime
    trace: Trace
    member: MemberRef | None = None
    match: Mapping[str, Any] = field(default_factory=dict)

    def with_member(self, member: MemberRef) -> Ctx:
        """This context for the sender's member (what ``dataclasses.replace`` would build,
        without its per-call field introspection: this is on every callback's path)."""
        return self._but(member, self.match)

    def with_match(self, match: Mapping[str, Any]) -> Ctx:
        """This context with the matched route's filter data."""
        return self._but(self.member, match)

    def _but(self, member: MemberRef | None, match: Mapping[str, Any]) -> Ctx:
        return Ctx(
            inbound=self.inbound,
            services=self.services,
            now=self.now,
            trace=self.trace,
            member=member,
            match=match,
        )

    @property
    def event_key(self) -> str:
        """The callback's dedupe key; downstream idempotency keys derive from it."""
        return self.inbound.dedupe_key

    def render(self, template: str, **variables: Any) -> TextReply:
        """Render a message template into a text reply."""
        return TextReply(self.services.renderer.render(template, **variables))
