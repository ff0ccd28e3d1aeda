"""The channel DESIGN §5 would pick for each member, as one SQL CASE (for ``channel_split``).

1. ``oa_cs``: a followed identity on the rule's Official Account with an open
   customer-service window (a message within 48 h and fewer than 5 sent since, or a
   subscribe/scan/click within 60 s and fewer than 3 sent since);
2. ``oa_template``: service rules only, a followed identity on a verified service account;
3. ``wecom``: an active relation with a staff member;
4. ``unreachable``: the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.config import Settings
from bot.config_sop import SopRule
from sop.member_sql import WECOM_CUSTOMER
from sop.sql import Sql, join, sql
from storage.models.members import OA_OPENID

OA_CS, OA_TEMPLATE, WECOM, UNREACHABLE = "oa_cs", "oa_template", "wecom", "unreachable"
CHANNELS = (OA_CS, OA_TEMPLATE, WECOM, UNREACHABLE)
MESSAGE_WINDOW, MESSAGE_QUOTA = timedelta(hours=48), 5
EVENT_WINDOW, EVENT_QUOTA = timedelta(seconds=60), 3


@dataclass(frozen=True, slots=True)
class ChannelPlan:
    """The rule's Official Account (its AppID, '' for none) and whether templates apply."""

    appid: str
    template: bool


def channel_plan(rule: SopRule, settings: Settings) -> ChannelPlan:
    """The rule's account (``account``, default the first) and its template eligibility."""
    return plan_for(rule.account, rule.kind, settings)


def plan_for(account_name: str | None, kind: str, settings: Settings) -> ChannelPlan:
    """The plan for an account name (None or '': the first) and a kind of message."""
    name = account_name or next(iter(settings.accounts), "")
    account = settings.accounts.get(name)
    if account is None:
        return ChannelPlan("", template=False)
    template = kind == "service" and account.type == "service" and account.verified
    return ChannelPlan(account.appid, template)


_FOLLOWED = (
    "EXISTS (SELECT 1 FROM identity i WHERE i.member_id = member.id AND i.kind = {} "
    "AND i.app = {} AND i.followed"
)


def _open_window(plan: ChannelPlan, now: datetime) -> Sql:
    return sql(
        _FOLLOWED + " AND ((i.last_message_at >= {} AND i.cs_sent_since_message < {}) "
        "OR (i.last_event_at >= {} AND i.cs_sent_since_event < {})))",
        OA_OPENID,
        plan.appid,
        now - MESSAGE_WINDOW,
        MESSAGE_QUOTA,
        now - EVENT_WINDOW,
        EVENT_QUOTA,
    )


_WECOM = WECOM_CUSTOMER


def split_sql(plan: ChannelPlan, now: datetime) -> Sql:
    """``SELECT <channel> AS channel, COUNT(*) AS n`` (the caller adds FROM and GROUP BY)."""
    cases: list[Sql] = []
    if plan.appid:
        cases.append(sql("WHEN ") + _open_window(plan, now) + sql(f" THEN '{OA_CS}'"))
    if plan.appid and plan.template:
        followed = sql(_FOLLOWED + ")", OA_OPENID, plan.appid)
        cases.append(sql("WHEN ") + followed + sql(f" THEN '{OA_TEMPLATE}'"))
    cases.append(sql(f"WHEN {_WECOM} THEN '{WECOM}'"))
    body = join(cases, " ")
    return sql("SELECT CASE ") + body + sql(f" ELSE '{UNREACHABLE}' END AS channel, COUNT(*) AS n")
