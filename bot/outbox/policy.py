"""How a call's answer settles its rows (DESIGN §5): the outbound engine's error policy.

- rate codes (OA 45011, -1; WeCom 45009, 45033, -1) → pending, due shortly, reason
  ``rate: <code>``, on every API: an error answer proves nothing was sent;
- a daily quota (OA 45009, also the template quota; the API is paused) → pending, due at
  the next business midnight, reason ``quota: <code>``;
- the request never left (connection refused) → pending, due later;
- an unknown outcome (timeout, 5xx) → ``unknown`` (never re-sent), except on idempotent
  channels, which are tried again up to ``MAX_ATTEMPTS``;
- any other error answer → ``failed`` with the code and message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.clients.caller import OA_POLICY, WECOM_POLICY
from bot.clients.errors import ApiError, NotSent, OutcomeUnknown, QuotaExhausted
from bot.config_outbound import OutboundSettings

log = logging.getLogger("bot.outbox")
RATE_CODES = {"oa": OA_POLICY.backoff_codes, "wecom": WECOM_POLICY.backoff_codes}
MAX_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class Outcome:
    """How the rows of one call end: a final status, or pending again at ``retry_at``."""

    status: str
    reason: str = ""
    retry_at: datetime | None = None


SENT = Outcome("sent")


def next_midnight(now: datetime) -> datetime:
    """The next business midnight after ``now`` (in ``now``'s time zone)."""
    return datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo)


def classify(
    exc: BaseException,
    platform: str,
    now: datetime,
    settings: OutboundSettings,
    idempotent: bool = False,
    attempts: int = 1,
) -> Outcome:
    """The outcome of a call that raised ``exc`` (see the module docstring)."""
    if isinstance(exc, QuotaExhausted):
        return Outcome("pending", f"quota: {exc.errcode}", next_midnight(now))
    if isinstance(exc, ApiError):
        if exc.errcode in RATE_CODES.get(platform, frozenset()):
            later = now + timedelta(seconds=settings.rate_retry_seconds)
            return Outcome("pending", f"rate: {exc.errcode}", later)
        return Outcome("failed", f"{exc.errcode} {exc.errmsg}")
    if isinstance(exc, NotSent):
        later = now + timedelta(seconds=settings.not_sent_retry_seconds)
        return Outcome("pending", str(exc), later)
    if isinstance(exc, OutcomeUnknown):
        if idempotent and attempts < MAX_ATTEMPTS:
            later = now + timedelta(seconds=settings.rate_retry_seconds)
            return Outcome("pending", f"retry: {exc}", later)
        return Outcome("unknown", str(exc))
    log.error("outbox send failed", exc_info=exc)
    return Outcome("failed", f"internal: {type(exc).__name__}")
