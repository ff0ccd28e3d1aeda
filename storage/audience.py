"""Who may be sent what: the building block every audience and segment query starts from.

Marketing (promotions, member-day offers, broadcasts) goes only to members who are active
(not merged away), not erased (注销) and not opted out (退订); service messages (points,
tier and order notices) to members who are active and not erased. Use ``marketing_q()`` /
``service_q()`` with the ORM, or ``marketing_sql()`` / ``service_sql()`` inside compiled
raw SQL (constants only, nothing to bind).
"""

from __future__ import annotations

from tortoise.expressions import Q

ACTIVE = "active"

__all__ = ["ACTIVE", "marketing_q", "marketing_sql", "service_q", "service_sql"]


def service_q() -> Q:
    """Members who may receive service messages: active and not erased."""
    return Q(status=ACTIVE, deleted_at__isnull=True)


def marketing_q() -> Q:
    """Members who may receive marketing: active, not erased, not opted out."""
    return Q(service_q(), Q(marketing_opt_out=False))


def _alias(alias: str) -> str:
    if not alias.isidentifier():
        raise ValueError(f"not a table alias: {alias!r}")
    return alias


def service_sql(alias: str = "member") -> str:
    """The service condition for raw SQL over ``member`` (or its alias)."""
    a = _alias(alias)
    return f"({a}.status = '{ACTIVE}' AND {a}.deleted_at IS NULL)"


def marketing_sql(alias: str = "member") -> str:
    """The marketing condition for raw SQL over ``member`` (or its alias)."""
    a = _alias(alias)
    return f"({service_sql(a)} AND NOT {a}.marketing_opt_out)"
