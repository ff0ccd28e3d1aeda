"""The WeCom staff roster: seeded from ``[[wecom.staff]]``, and the actor staff act as."""

from __future__ import annotations

from collections.abc import Sequence

from bot.admin.api import Actor, permits
from bot.config_commerce import Role
from bot.config_wecom import StaffSeed
from storage.models import Staff


async def seed_staff(seeds: Sequence[StaffSeed]) -> int:
    """Upsert every configured staff member (active, with its role and name); staff no
    longer configured become inactive. Returns how many are configured."""
    for seed in seeds:
        updated = await Staff.filter(userid=seed.userid).update(
            name=seed.name, role=seed.role, active=True
        )
        if not updated:
            # Two processes starting together: the loser's create raises, the row exists.
            _, created = await Staff.get_or_create(
                userid=seed.userid, defaults={"name": seed.name, "role": seed.role}
            )
            if not created:
                await Staff.filter(userid=seed.userid).update(
                    name=seed.name, role=seed.role, active=True
                )
    await Staff.exclude(userid__in=[s.userid for s in seeds]).update(active=False)
    return len(seeds)


async def staff_actor(userid: str) -> Actor | None:
    """The actor a registered, active staff member acts as (``staff:<userid>``), or None."""
    row = await Staff.get_or_none(userid=userid, active=True)
    if row is None or row.role not in ("staff", "manager", "admin"):
        return None
    role: Role = row.role  # type: ignore[assignment]
    return Actor(f"staff:{userid}", role)


def may(actor: Actor, allowed: Sequence[str]) -> bool:
    """The admin API's permission check, for a staff actor."""
    return permits(actor.role, allowed)
