"""``python -m bot wecom sync-tags``: mirror the WeCom corp tag library (idempotent)."""

from __future__ import annotations

import argparse

import aiohttp

from bot.app import build_services
from bot.clients.errors import ApiError, NotSent, OutcomeUnknown
from bot.config import Settings
from bot.services import wecom_tags


async def sync_tags(settings: Settings, args: argparse.Namespace) -> int:
    """Fetch get_corp_tag_list into TagGroup/Tag; print what it saw."""
    from bot.cli import CliError

    if settings.wecom is None:
        raise CliError("the settings define no [wecom] section")
    services = build_services(settings)
    await services.clients.start()
    try:
        result = await wecom_tags.sync_tags(services.clients.wecom().tags)
    except (ApiError, NotSent, OutcomeUnknown, aiohttp.ClientError, OSError) as exc:
        raise CliError(f"tag sync failed: {exc}") from None
    finally:
        await services.clients.close()
        await services.cache.close()
    print(f"synced {result.groups} tag groups, {result.tags} tags; {result.deleted} marked deleted")
    return 0
