"""SQL building blocks over ``member`` shared by SOP audiences and segments.

Each returns one boolean condition (``Sql``) over the table alias ``member``: tiers, tags
(deleted tags are ignored), birthday months, an active WeCom relation and an OA follow.
"""

from __future__ import annotations

from collections.abc import Sequence

from sop.sql import Sql, in_list, sql
from storage.models.members import OA_OPENID

__all__ = [
    "WECOM_CUSTOMER",
    "birthday_months",
    "followed",
    "tags_all",
    "tags_any",
    "tags_none",
    "tier_in",
]

WECOM_CUSTOMER = (
    "EXISTS (SELECT 1 FROM staff_customer sc WHERE sc.member_id = member.id "
    "AND sc.status = 'active')"
)

_TAGGED = (
    "SELECT {} FROM member_tag mt JOIN tag t ON t.id = mt.tag_id "
    "WHERE mt.member_id = member.id AND NOT t.deleted AND t.name IN "
)


def _tagged(head: str, select: str, names: Sequence[str]) -> Sql:
    unique = sorted(set(names))
    return Sql(head + _TAGGED.replace("{}", select, 1)) + in_list(unique) + sql(")")


def tier_in(tiers: Sequence[str]) -> Sql:
    """The member's tier is one of ``tiers``."""
    return sql("member.tier IN ") + in_list(sorted(set(tiers)))


def tags_any(names: Sequence[str]) -> Sql:
    """The member has at least one of the tags."""
    return _tagged("EXISTS (", "1", names)


def tags_all(names: Sequence[str]) -> Sql:
    """The member has every one of the tags."""
    return _tagged("(", "COUNT(DISTINCT t.name)", names) + sql(" = {}", len(set(names)))


def tags_none(names: Sequence[str]) -> Sql:
    """The member has none of the tags."""
    return _tagged("NOT EXISTS (", "1", names)


def birthday_months(months: Sequence[int]) -> Sql:
    """A birthday in one of the months (``birth_md`` ranges, so the index serves it)."""
    ranges = [sql("member.birth_md BETWEEN {} AND {}", m * 100 + 1, m * 100 + 31) for m in months]
    return Sql("(" + " OR ".join(r.text for r in ranges) + ")", sum((r.params for r in ranges), ()))


def followed(appid: str = "") -> Sql:
    """The member follows the Official Account ``appid`` (any account when empty)."""
    head = "EXISTS (SELECT 1 FROM identity i WHERE i.member_id = member.id AND i.kind = {} "
    if appid:
        return sql(head + "AND i.app = {} AND i.followed)", OA_OPENID, appid)
    return sql(head + "AND i.followed)", OA_OPENID)
