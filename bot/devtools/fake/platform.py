"""``FakePlatform``: all state and rules of the fake WeChat/WeCom platform, HTTP aside.

API calls go through :meth:`FakePlatform.handle` (see ``dispatch``); each API group's rules
live in its own module. The control operations tests and the simulator use are methods
here, so Python tests can call them without HTTP.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from bot.devtools.fake import dispatch, oa_mass, oa_messages, oa_users, wecom_contacts, wecom_groups
from bot.devtools.fake.common import ApiRequest
from bot.devtools.fake.state import (
    Call,
    Delivery,
    Failure,
    Hold,
    OAAccount,
    OAUser,
    RateLimit,
    World,
)
from bot.devtools.fake.tokens import TokenBook
from bot.devtools.fake.wecom_state import CorpState, Customer

if TYPE_CHECKING:
    from bot.config import Settings

Clock = Callable[[], float]


class FakePlatform:
    """The fake WeChat (OA) and WeCom platform: state, rules, call log, deliveries."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self.offset = 0.0
        self.world = World()
        self.tokens = TokenBook()
        self._seq = itertools.count(1)
        self._accounts: list[tuple[str, str, str, bool]] = []
        self._corps: list[tuple[str, int, str, str]] = []
        self._fixtures = False
        # Called with each call as it is recorded (before it is answered): tests use it to
        # stop a sender mid-call.
        self.observers: list[Callable[[Call], None]] = []

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock = time.time) -> FakePlatform:
        """A platform knowing every configured account and the corp, with fixture data."""
        platform = cls(clock)
        for acc in settings.accounts.values():
            if acc.appid not in platform.world.accounts:  # same appid twice: the first wins
                platform.add_account(acc.appid, acc.secret, acc.type, acc.verified)
        if settings.wecom is not None:
            w = settings.wecom
            platform.add_corp(w.corp_id, w.agent_id, w.agent_secret, w.contact_secret)
        platform.load_fixtures()
        return platform

    # --- time, sequence, registration ---------------------------------------------

    def now(self) -> float:
        """The fake's time: the injected clock plus the offset moved by ``advance``."""
        return self.clock() + self.offset

    def advance(self, seconds: float) -> float:
        """Move the fake's clock forward (or back); returns the new time."""
        self.offset += seconds
        return self.now()

    def next_seq(self) -> int:
        """The next sequence number (calls and deliveries share one; never reset)."""
        return next(self._seq)

    def add_account(
        self, appid: str, secret: str, type: str = "subscription", verified: bool = False
    ) -> OAAccount:
        """Register an Official Account (kept across ``reset``)."""
        self._accounts.append((appid, secret, type, verified))
        account = OAAccount(appid, secret, type, verified)
        self.world.accounts[appid] = account
        return account

    def add_corp(
        self, corp_id: str, agent_id: int, agent_secret: str, contact_secret: str
    ) -> CorpState:
        """Register the WeCom corp (kept across ``reset``)."""
        self._corps.append((corp_id, agent_id, agent_secret, contact_secret))
        corp = CorpState(corp_id, agent_id, agent_secret, contact_secret)
        self.world.corps[corp_id] = corp
        return corp

    def load_fixtures(self) -> None:
        """Add the fixture users, staff, customers, tags and group (again after ``reset``)."""
        from bot.devtools.fake.fixtures import seed

        self._fixtures = True
        seed(self)

    def reset(self) -> None:
        """Back to the registered accounts and corp (and fixtures): no tokens, calls, jobs."""
        accounts, corps = self._accounts, self._corps
        self._accounts, self._corps = [], []
        self.world, self.tokens, self.offset = World(), TokenBook(), 0.0
        for appid, secret, kind, verified in accounts:
            self.add_account(appid, secret, kind, verified)
        for corp_id, agent_id, agent_secret, contact_secret in corps:
            self.add_corp(corp_id, agent_id, agent_secret, contact_secret)
        if self._fixtures:
            self.load_fixtures()

    # --- what the API groups share ------------------------------------------------------

    async def handle(self, req: ApiRequest) -> dispatch.Answer:
        """Answer one API call (recorded; injected failures and token rules applied)."""
        return await dispatch.handle(self, req)

    def account_of(self, req: ApiRequest) -> OAAccount:
        """The Official Account whose token made this call."""
        return self.world.accounts[req.app_id]

    def corp_of(self, req: ApiRequest) -> CorpState:
        """The corp whose token made this call."""
        return self.world.corps[req.app_id]

    def deliver(self, to: str, channel: str, text: str, via: str = "", **data: Any) -> Delivery:
        """Record something delivered to a member, customer, group or staff member."""
        item = Delivery(self.next_seq(), to, channel, text, self.now(), via, dict(data))
        self.world.deliveries.append(item)
        return item

    # --- control operations -------------------------------------------------------------

    def fail(
        self,
        platform: str,
        api: str = "*",
        errcode: int = 0,
        times: int = 1,
        delay: float = 0.0,
        errmsg: str = "injected failure",
    ) -> Failure:
        """The next ``times`` calls of ``api`` (``*``: any) answer ``errcode`` / wait ``delay``."""
        failure = Failure(platform, api, times, errcode, errmsg, delay)
        self.world.failures.append(failure)
        return failure

    def rate_limit(self, platform: str, api: str, per_second: float) -> RateLimit | None:
        """At most ``per_second`` calls a second of ``api`` (``*``: all); 0 lifts the limit.

        Calls above it answer the platform's rate code (OA 45011, WeCom 45009).
        """
        if per_second <= 0:
            self.world.rate_limits.pop((platform, api), None)
            return None
        burst = max(1.0, per_second)
        limit = RateLimit(platform, api, per_second, burst, self.now())
        self.world.rate_limits[(platform, api)] = limit
        return limit

    def hold(self, platform: str, api: str) -> Hold:
        """Calls of ``api`` wait until the returned hold is released (a slow platform)."""
        hold = Hold(platform, api)
        self.world.holds.append(hold)
        return hold

    def expire_tokens(self) -> None:
        """Every token expires now (calls answer 42001 until a new token is fetched)."""
        self.tokens.expire_all(self.now())

    def token_count(self, platform: str, app_id: str, secret: str | None = None) -> int:
        """How many tokens were issued to an appid (OA) or (corp, secret) (WeCom)."""
        return self.tokens.count(platform, app_id, secret)

    def calls(self, platform: str = "", api: str = "", since: int = 0) -> list[Call]:
        """Recorded API calls after ``since``, optionally of one platform and api."""
        return [
            c
            for c in self.world.calls
            if c.seq > since and platform in ("", c.platform) and api in ("", c.api)
        ]

    def messages(
        self, openid: str = "", userid: str = "", external_userid: str = "", since: int = 0
    ) -> list[Delivery]:
        """Deliveries after ``since`` to a member, to (or via) a staff member, or a customer."""
        wanted = {w for w in (openid, external_userid) if w}
        return [
            d
            for d in self.world.deliveries
            if d.seq > since and (d.to in wanted or (userid and userid in (d.to, d.via)))
        ]

    def interaction(self, appid: str, openid: str, kind: str, scene: str = "") -> OAUser:
        """A member messaged, subscribed, scanned or clicked: opens customer-service windows."""
        return oa_messages.record_interaction(self, appid, openid, kind, scene)

    def add_user(
        self, appid: str, openid: str, unionid: str = "", nickname: str = "", subscribe: int = 1
    ) -> OAUser:
        """Add or update a follower of an account."""
        return oa_users.put_user(self, appid, openid, unionid, nickname, subscribe)

    def set_template_quota(self, appid: str, quota: int) -> None:
        """Set an account's daily template-message quota."""
        self.world.accounts[appid].template_quota = quota

    def mass_finish_xml(self, msg_id: int) -> str:
        """The MASSSENDJOBFINISH event (plaintext XML) for a mass-send job."""
        return oa_mass.finish_xml(self, msg_id)

    def add_customer(
        self,
        external_userid: str,
        name: str,
        unionid: str = "",
        follow_user: Iterable[Mapping[str, Any]] = (),
        corp_id: str = "",
    ) -> Customer:
        """Add or replace a WeCom customer with its follow relations (tags as tag ids)."""
        corp = self.corp(corp_id)
        return wecom_contacts.put_customer(self, corp, external_userid, name, unionid, follow_user)

    def mint_welcome_code(self, userid: str, external_userid: str, corp_id: str = "") -> str:
        """A WelcomeCode (single use, 20 s), as an add_external_contact event carries."""
        return wecom_contacts.mint_welcome_code(self, self.corp(corp_id), userid, external_userid)

    def confirm_groupmsg(self, msgid: str, userid: str, corp_id: str = "") -> int:
        """Staff confirm a group-message task: its pending recipients get it; returns how many."""
        return wecom_groups.confirm(self, self.corp(corp_id), msgid, userid)

    def corp(self, corp_id: str = "") -> CorpState:
        """The corp by id (``""``: the only one); KeyError if unknown."""
        if not corp_id and len(self.world.corps) == 1:
            return next(iter(self.world.corps.values()))
        return self.world.corps[corp_id]
