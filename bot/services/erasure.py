"""注销 (PIPL): a member asks, confirms within a window, and their personal data is erased.

The request is an AuditLog row (``member.erase_requested``), so a pending confirmation
survives a restart and is visible to staff; ``确认注销`` erases only when such a row is
younger than ``[privacy] erase_confirm_minutes`` by the business clock. The erasure itself
walks the registry (storage/repos/erasure.py), removes every identity and clears the
identity → member cache for each, so the next callback from the same openid creates a new
member that is never linked to the erased one. Ledger rows and orders stay (anonymous),
so the ledger still reconciles.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.services import points
from bot.services.pii import BadToken, MissingKey, MobileVault
from storage.cache import Cache
from storage.keys import KeyBuilder
from storage.models import AuditLog, Member
from storage.repos import audit_log
from storage.repos import erasure as repo
from storage.repos import points as points_repo
from storage.timeutil import utc

log = logging.getLogger("bot.erasure")

REQUEST_ACTION = "member.erase_requested"

__all__ = ["REQUEST_ACTION", "ErasureResult", "confirm", "erase_member", "request"]


@dataclass(frozen=True, slots=True)
class ErasureResult:
    """``erased`` when this call erased the member; ``reason`` otherwise."""

    erased: bool
    reason: str = ""
    identities: int = 0


def _target(member_id: int) -> str:
    return f"member:{member_id}"


async def request(member_id: int, *, channel: str, now: datetime) -> None:
    """Record that the member asked to be erased (they must confirm within the window)."""
    async with audit_log.atomic():
        await audit_log.record(
            f"member:{member_id}", REQUEST_ACTION, _target(member_id), {"channel": channel}, now
        )


async def _pending(member_id: int, now: datetime, window: timedelta) -> bool:
    return await AuditLog.filter(
        action=REQUEST_ACTION,
        target=_target(member_id),
        at__gte=utc(now - window),
        at__lte=utc(now),
    ).exists()


async def confirm(
    member_id: int,
    *,
    window: timedelta,
    vault: MobileVault,
    cache: Cache,
    keys: KeyBuilder,
    now: datetime,
) -> ErasureResult:
    """Erase the member if they asked within ``window``; else nothing happens."""
    if not await _pending(member_id, now, window):
        return ErasureResult(False, "no_request")
    return await erase_member(
        member_id, actor=f"member:{member_id}", vault=vault, cache=cache, keys=keys, now=now
    )


async def erase_member(
    member_id: int,
    *,
    actor: str,
    vault: MobileVault,
    cache: Cache,
    keys: KeyBuilder,
    now: datetime,
) -> ErasureResult:
    """Erase now (audited ``member.erase``); also for operators. Idempotent."""
    extra = await _plain_mobile(member_id, vault)
    erased = await repo.erase(member_id, actor=actor, now=now, extra_secrets=extra)
    if erased is None:
        return ErasureResult(False, "not_found")
    for identity in erased.identities:
        await cache.delete(keys.identity(*identity))
    await repo.erase_again(member_id, erased.tokens)
    await _forfeit(member_id, now)
    log.info("member erased", extra={"member_id": member_id})
    return ErasureResult(True, identities=len(erased.identities))


async def _plain_mobile(member_id: int, vault: MobileVault) -> list[str]:
    """The member's number in clear, so copies of it are scrubbed too (when decryptable)."""
    cipher = await Member.filter(id=member_id).values_list("mobile_cipher", flat=True)
    if not cipher or not cipher[0]:
        return []
    try:
        return [vault.decrypt(str(cipher[0]))]
    except (MissingKey, BadToken):
        return []


async def _forfeit(member_id: int, now: datetime) -> None:
    """The erased member's points are forfeit (the 注销 prompt says so): one keyed
    reversal of the balance, so the brand's liability no longer counts them and the
    ledger still reconciles. Debt, if any, stays on the record."""
    totals = await points_repo.totals(member_id)
    if totals is None or totals[0] <= 0:
        return
    await points.reverse(
        member_id,
        totals[0],
        f"erase:{member_id}:forfeit",
        now=now,
        reason="erased",
        source="erasure",
    )
