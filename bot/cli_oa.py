"""``python -m bot oa menu publish``: push ``[oa.menu]`` to the Official Account."""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp

from bot.app import build_services
from bot.clients.errors import ApiError, NotSent, OutcomeUnknown
from bot.config import Settings
from bot.config_program import MenuButton
from storage.repos import audit_log


def menu_payload(buttons: tuple[MenuButton, ...]) -> list[dict[str, Any]]:
    """The menu/create ``button`` list: only the fields each button sets."""
    return [_button(b) for b in buttons]


def _button(button: MenuButton) -> dict[str, Any]:
    if button.sub_button:
        return {"name": button.name, "sub_button": [_button(s) for s in button.sub_button]}
    fields = {"type": button.type, "key": button.key, "url": button.url}
    fields.update(appid=button.appid, pagepath=button.pagepath)
    return {"name": button.name, **{k: v for k, v in fields.items() if v}}


async def publish_menu(settings: Settings, args: argparse.Namespace) -> int:
    """Replace the account's custom menu with the configured one."""
    from bot.cli import CliError

    if not settings.oa.menu:
        raise CliError("the settings define no [[oa.menu]] buttons")
    account = args.account or next(iter(settings.accounts), "")
    if account not in settings.accounts:
        raise CliError(f"no Official Account named {account!r} in the settings")
    services = build_services(settings)
    now = services.clock.now()
    await services.clients.start()
    try:
        await services.clients.oa(account).menu.create(menu_payload(settings.oa.menu))
    except (ApiError, NotSent, OutcomeUnknown, aiohttp.ClientError, OSError) as exc:
        raise CliError(f"menu publish to {account} failed: {exc}") from None
    finally:
        await services.clients.close()
        await services.cache.close()
    detail = {"buttons": menu_payload(settings.oa.menu)}
    await audit_log.record(args.actor, "oa.menu.publish", f"oa:{account}", detail, now)
    print(f"published {len(settings.oa.menu)} menu buttons to {account}")
    return 0
