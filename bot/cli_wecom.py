"""``python -m bot wecom …``: sync groups and customers, contact ways, handover, report."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from bot.app import build_services
from bot.clients.errors import ApiError, NotSent, OutcomeUnknown
from bot.config import Settings
from bot.context import Services
from bot.services import wecom_groups, wecom_handover, wecom_sync

_API_ERRORS = (ApiError, NotSent, OutcomeUnknown, aiohttp.ClientError, OSError)
MAX_STATE = 30


@asynccontextmanager
async def _services(settings: Settings) -> AsyncIterator[Services]:
    from bot.cli import CliError

    if settings.wecom is None:
        raise CliError("the settings define no [wecom] corp")
    services = build_services(settings)
    await services.clients.start()
    try:
        yield services
    except _API_ERRORS as exc:
        raise CliError(f"WeCom API: {exc}") from None
    finally:
        await services.clients.close()
        await services.cache.close()


async def sync_groups_wecom(settings: Settings, args: argparse.Namespace) -> int:
    """Every customer group and its roster (idempotent)."""
    async with _services(settings) as services:
        counts = await wecom_groups.sync_groups(services, progress=sys.stderr)
    print(
        f"{counts.groups} groups synced: {counts.changed} changed, "
        f"{counts.joined} joined, {counts.left} left"
    )
    return 0


async def sync_customers_wecom(settings: Settings, args: argparse.Namespace) -> int:
    """Every staff member's customers into relations and members (idempotent)."""
    async with _services(settings) as services:
        counts = await wecom_sync.sync_customers(services, progress=sys.stderr)
    print(
        f"{counts.relations} relations of {counts.staff} staff synced: {counts.created} new, "
        f"{counts.updated} changed, {counts.members} members"
    )
    return 0


async def contact_way_wecom(settings: Settings, args: argparse.Namespace) -> int:
    """``contact-way create``: a 联系我 QR code carrying a State."""
    from bot.cli import CliError

    state, staff = args.state, list(dict.fromkeys(args.staff))
    if not state or len(state) > MAX_STATE:
        raise CliError(f"--state must be 1..{MAX_STATE} characters")
    async with _services(settings) as services:
        config_id, qr = await wecom_handover.create_contact_way(services, state, staff, args.actor)
    print(f"contact way {config_id} for {', '.join(staff)} (State {state}): {qr}")
    return 0


async def transfer_wecom(settings: Settings, args: argparse.Namespace) -> int:
    """Hand a staff member's customers over and wait for WeCom's result."""
    from bot.cli import CliError

    if args.from_staff == args.to_staff:
        raise CliError("--from and --to must be different staff members")
    async with _services(settings) as services:
        counts = await wecom_handover.transfer_customers(
            services,
            args.from_staff,
            args.to_staff,
            resigned=args.resigned,
            actor=args.actor,
            sleep=asyncio.sleep,
            interval=args.interval,
            progress=sys.stderr,
        )
    reasons = "".join(f"; {n} {why}" for why, n in sorted(counts.reasons.items()))
    print(
        f"{counts.requested} requested ({counts.rejected} refused by WeCom): "
        f"{counts.success} taken over, {counts.failed} failed{reasons}"
    )
    return 0


async def staff_report_wecom(settings: Settings, args: argparse.Namespace) -> int:
    """Per day per staff member: customers, adds, removals and failed transfers."""
    from bot.cli import CliError

    if args.days < 1 or args.days > 366:
        raise CliError("--days must be 1..366")
    async with _services(settings) as services:
        rows = await wecom_handover.staff_report(services, args.days)
    print(f"{'day':<10}  {'staff':<16} customers  adds  by_staff  by_customer  failed_transfers")
    for r in rows:
        print(
            f"{r.day.isoformat():<10}  {r.staff:<16} {r.customers:>9}  {r.adds:>4}  "
            f"{r.removed_by_staff:>8}  {r.removed_by_customer:>11}  {r.failed_transfers:>16}"
        )
    return 0
