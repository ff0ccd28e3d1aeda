"""The SQL of a broadcast's expected reach and of its enqueue pages.

Every audience member gets one reason, computed in SQL by one ``CASE`` per channel
(empty: the member will be reached): opted out (marketing), not following the account,
no customer-service window or its quota used (``oa_cs``), the OA mass-send limit of 4 a
business month (counted from earlier ``submitted`` mass rows of the member), no active
WeCom staff relation, or the corp's WeCom receive limit (``receive_window``).
The reach counts reasons; the enqueue pages read members in id order with their reason,
openid or staff relation and per-member variables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sop.sql import Sql, day_start, in_list, join, sql
from storage.models.members import OA_OPENID

OA_CHANNELS = frozenset({"oa_cs", "oa_template", "oa_mass"})
MASS_PER_MONTH = 4
CS_MESSAGE_WINDOW, CS_MESSAGE_QUOTA = timedelta(hours=48), 5
CS_EVENT_WINDOW, CS_EVENT_QUOTA = timedelta(seconds=60), 3
NOT_REACHING = ("failed", "unreachable", "skipped", "cancelled")

OPTED_OUT = "opted out"
UNFOLLOWED = "not following the account"
NO_WINDOW = "no customer-service window, or its quota used"
MASS_LIMIT = f"OA mass send: {MASS_PER_MONTH} this month already"
NO_STAFF = "no active WeCom staff relation"
RECEIVE_PERIODS = {"month": "this month", "week": "this week", "day": "today"}
MARKETING_CAP = "marketing cap: enough marketing messages lately"
NOT_COUNTED = ("unreachable", "failed", "skipped", "cancelled")  # never reached the member


@dataclass(frozen=True, slots=True)
class Target:
    """What the reach of one broadcast depends on."""

    broadcast_id: int
    channel: str
    kind: str
    appid: str
    account: str
    corp: str
    now: datetime
    tz: ZoneInfo
    marketing_cap: int = 0  # marketing rows per member within cap_days (0: no cap)
    cap_days: int = 7
    receive_rule: str = "month"  # the corp's WeCom 群发规则: month | week | day

    @property
    def group_key(self) -> str:
        """The group of the broadcast's outbox rows."""
        return f"bc:{self.broadcast_id}"


def _joins(t: Target) -> Sql:
    # One derived table per statement (the member's first followed openid on the account,
    # its most recent active staff relation): a join, not a subquery per member.
    if t.channel in OA_CHANNELS:
        return sql(
            " LEFT JOIN (SELECT i.member_id AS member_id, MIN(i.id) AS id FROM identity i"
            " WHERE i.kind = {} AND i.app = {} AND (i.followed OR i.unfollowed_at IS NULL)"
            " GROUP BY i.member_id) pick ON pick.member_id = member.id"
            " LEFT JOIN identity oi ON oi.id = pick.id",
            OA_OPENID,
            t.appid,
        )
    return sql(
        " LEFT JOIN (SELECT s.member_id AS member_id, MAX(s.id) AS id FROM staff_customer s"
        " WHERE s.corp = {} AND s.status = 'active' GROUP BY s.member_id) pick"
        " ON pick.member_id = member.id LEFT JOIN staff_customer sc ON sc.id = pick.id",
        t.corp,
    )


def _cs_window(t: Target, alias: str) -> Sql:
    return sql(
        f"(({alias}.last_message_at > {{}} AND {alias}.cs_sent_since_message < {{}})"
        f" OR ({alias}.last_event_at > {{}} AND {alias}.cs_sent_since_event < {{}}))",
        t.now - CS_MESSAGE_WINDOW,
        CS_MESSAGE_QUOTA,
        t.now - CS_EVENT_WINDOW,
        CS_EVENT_QUOTA,
    )


def _earlier_rows(t: Target, channel: str, since: datetime, statuses: Sql) -> Sql:
    return (
        sql(
            "(SELECT COUNT(*) FROM outbox_message o WHERE o.member_id = member.id"
            " AND o.channel = {} AND o.group_key <> {} AND o.created_at >= {} AND o.status ",
            channel,
            t.group_key,
            since,
        )
        + statuses
        + sql(")")
    )


def month_start(t: Target) -> datetime:
    """The start of the business month of ``t.now``."""
    local = t.now.astimezone(t.tz).date()
    return day_start(local.replace(day=1), t.tz)


def receive_window(t: Target) -> tuple[datetime, int]:
    """The corp's WeCom receive limit (add_msg_template, doc 92135; 企业微信 → 群发助手 →
    设置群发规则): each customer and each customer group receives at most as many group
    messages a calendar month as the month has days (the default rule), or 7 a week
    (Monday on), or 1 a day. The period's start in business time, and the cap."""
    local = t.now.astimezone(t.tz).date()
    if t.receive_rule == "day":
        return day_start(local, t.tz), 1
    if t.receive_rule == "week":
        return day_start(local - timedelta(days=local.weekday()), t.tz), 7
    first = local.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return day_start(first, t.tz), (following - first).days


def receive_limit(t: Target) -> str:
    """The reason of a customer or group whose receive limit is used."""
    _, cap = receive_window(t)
    period = RECEIVE_PERIODS.get(t.receive_rule, t.receive_rule)
    return f"WeCom receive limit: {cap} group messages {period} already"


def _when(condition: Sql, reason: str) -> Sql:
    return sql(" WHEN ") + condition + sql(" THEN {text}", reason)


def _channel_whens(t: Target) -> list[Sql]:
    if t.channel == "oa_cs":
        return [
            _when(sql("oi.id IS NULL"), UNFOLLOWED),
            sql(" WHEN ") + _cs_window(t, "oi") + sql(" THEN ''"),
            sql(" WHEN 1 = 1 THEN {text}", NO_WINDOW),
        ]
    if t.channel == "oa_template":
        return [_when(sql("oi.id IS NULL"), UNFOLLOWED)]
    if t.channel == "oa_mass":
        submitted = sql("= 'submitted' AND o.account = {}", t.account)
        used = _earlier_rows(t, "oa_mass", month_start(t), submitted)
        return [
            _when(sql("oi.id IS NULL"), UNFOLLOWED),
            _when(used + sql(" >= {}", MASS_PER_MONTH), MASS_LIMIT),
        ]
    since, cap = receive_window(t)
    reaching = sql("NOT IN ") + in_list(NOT_REACHING)
    used = _earlier_rows(t, "wecom_customer", since, reaching)
    return [
        _when(sql("sc.id IS NULL"), NO_STAFF),
        _when(used + sql(" >= {}", cap), receive_limit(t)),
    ]


def _marketing_whens(t: Target) -> list[Sql]:
    # Opt-out, then the per-member cap (DESIGN §5): marketing rows of other sends within
    # the cap's window that reached the member or may still.
    if t.kind != "marketing":
        return []
    whens = [_when(sql("member.marketing_opt_out"), OPTED_OUT)]
    if t.marketing_cap > 0:
        recent = (
            sql(
                "(SELECT COUNT(*) FROM outbox_message o WHERE o.member_id = member.id"
                " AND o.kind = 'marketing' AND o.created_at >= {} AND o.group_key <> {}"
                " AND o.status NOT IN ",
                t.now - timedelta(days=t.cap_days),
                t.group_key,
            )
            + in_list(NOT_COUNTED)
            + sql(")")
        )
        whens.append(_when(recent + sql(" >= {}", t.marketing_cap), MARKETING_CAP))
    return whens


def reason_case(t: Target) -> Sql:
    """``CASE … END``: why the member is excluded, '' when the member will be reached."""
    whens = _marketing_whens(t)
    return sql("(CASE") + join([*whens, *_channel_whens(t)], "") + sql(" ELSE '' END)")


def reach_counts(t: Target, audience: Sql) -> Sql:
    """Audience members per reason ('' = reached)."""
    inner = sql("SELECT ") + reason_case(t) + sql(" AS reason FROM member") + _joins(t)
    inner += sql(" WHERE ") + audience
    return (
        sql("SELECT x.reason AS reason, COUNT(*) AS n FROM (")
        + inner
        + sql(") x GROUP BY x.reason")
    )


def _columns(t: Target) -> str:
    if t.channel in OA_CHANNELS:
        return "oi.id AS identity_id, oi.value AS recipient, '' AS staff_userid"
    return "sc.id AS identity_id, sc.external_userid AS recipient, sc.staff_userid AS staff_userid"


def page(t: Target, audience: Sql, after: int, batch: int) -> Sql:
    """The next members (id > ``after``) with no row of this broadcast yet, and why not."""
    head = sql(
        "SELECT member.id AS member_id, member.name AS member_name, member.points_balance"
        " AS points, member.tier AS tier, member.code AS code, " + _columns(t) + ", "
    )
    statement = head + reason_case(t) + sql(" AS reason FROM member") + _joins(t)
    statement += sql(" WHERE ") + audience
    # "No row yet" by the row's idempotency key (``<group>:<member>``, unique): one index
    # probe per member whatever the statistics say. By (member_id, group_key) PostgreSQL
    # reads a new broadcast's group as a few rows and rescans them for every member (each
    # page slower than the last: 14 s a page at 20,000 rows).
    statement += sql(
        " AND NOT EXISTS (SELECT 1 FROM outbox_message o"
        " WHERE o.idempotency_key = {text} || CAST(member.id AS TEXT))"
        " AND member.id > {} ORDER BY member.id LIMIT {}",
        f"{t.group_key}:",
        after,
        batch,
    )
    return statement


def claim_cs_slots(t: Target, identity_ids: list[int]) -> Sql:
    """Take one customer-service slot of each identity whose window is open; RETURNING id.

    The same conditional counter update as a single notice (both counters +1), for a page.
    """
    statement = sql(
        "UPDATE identity SET cs_sent_since_message = cs_sent_since_message + 1,"
        " cs_sent_since_event = cs_sent_since_event + 1 WHERE id IN "
    ) + in_list(identity_ids)
    statement += sql(" AND (followed OR unfollowed_at IS NULL) AND ") + _cs_window(t, "identity")
    return statement + sql(" RETURNING id")
