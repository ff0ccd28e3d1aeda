"""Chat features, one router each. ``ROUTERS`` is the dispatch order; fallback last."""

from __future__ import annotations

from bot.routing import Router
from handlers import (
    birthday,
    consent,
    dev,
    erase,
    fallback,
    follow,
    help,
    invite,
    mall,
    mass,
    phone,
    points,
    signin,
    tier,
    wecom_broadcast,
    wecom_customers,
    wecom_groups,
    wecom_staff,
    wecom_tags,
)

ROUTERS: tuple[Router, ...] = (
    follow.router,
    mass.router,
    wecom_tags.router,
    wecom_staff.router,
    wecom_broadcast.router,
    signin.router,
    help.router,
    points.router,
    tier.router,
    birthday.router,
    invite.router,
    mall.router,
    phone.router,
    consent.router,
    erase.router,
    wecom_groups.router,
    dev.router,
    wecom_customers.router,
    fallback.router,
)
