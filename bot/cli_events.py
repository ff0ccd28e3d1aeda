"""``python -m bot events list|replay|purge``."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from bot.app import Overrides, create_app
from bot.appkeys import INTAKE
from bot.config import Settings
from bot.replies import NO_REPLY, ImageReply, NewsReply, Reply, TextReply
from bot.wechat.inbound import Inbound
from bot.wechat.oa_parse import parse_oa
from bot.wechat.wecom_parse import parse_wecom
from storage.repos import inbound as repo


async def list_events(settings: Settings, args: argparse.Namespace) -> int:
    """Print the latest recorded callbacks."""
    for row in await repo.list_events(args.limit):
        when = row.received_at.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M:%S")
        print(
            f"{row.id:>8}  {when}  {row.platform:<5} {row.kind:<32} {row.outcome:<12} {row.sender}"
        )
    return 0


async def replay_events(settings: Settings, args: argparse.Namespace) -> int:
    """Dispatch a recorded callback again under its original dedupe key."""
    from bot.cli import CliError

    row = await repo.get_event(args.id)
    if row is None:
        raise CliError(f"no recorded event with id {args.id}")
    inbound = _inbound(settings, row.platform, row.account, row.payload)
    if inbound.dedupe_key != row.dedupe_key:
        inbound = _with_key(inbound, row.dedupe_key)
    app = create_app(settings, Overrides(manage_db=False))
    reply = await app[INTAKE].replay(inbound)
    print(f"replayed event {row.id} ({row.kind}) under key {row.dedupe_key}")
    print(f"reply: {_describe(reply)}")
    await app[INTAKE].services.cache.close()
    return 0


async def purge_events(settings: Settings, args: argparse.Namespace) -> int:
    """Delete callbacks older than the retention period."""
    cutoff = repo.retention_cutoff(datetime.now(UTC), settings.business.inbound_retention_days)
    count = await repo.purge_before(cutoff)
    print(f"purged {count} events received before {cutoff.isoformat(timespec='seconds')}")
    return 0


def _inbound(settings: Settings, platform: str, account: str, payload: str) -> Inbound:
    from bot.cli import CliError

    if platform == "oa":
        if account not in settings.accounts:
            raise CliError(f"account {account!r} is not in the settings")
        return parse_oa(account, payload)
    if settings.wecom is None:
        raise CliError("the settings have no [wecom] section")
    return parse_wecom(settings.wecom.name, settings.wecom.corp_id, payload)


def _with_key(inbound: Inbound, key: str) -> Inbound:
    from dataclasses import replace

    return replace(inbound, dedupe_key=key)


def _describe(reply: Reply) -> str:
    if reply is NO_REPLY:
        return "(no reply)"
    if isinstance(reply, TextReply):
        return reply.content
    if isinstance(reply, NewsReply):
        return f"[news] {reply.title} {reply.url}"
    if isinstance(reply, ImageReply):
        return f"[image] {reply.media_id}"
    return "[transfer to customer service]"
