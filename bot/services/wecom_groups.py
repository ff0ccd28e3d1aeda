"""Customer groups: keep the roster from change_external_chat events and the nightly sync.

Every create or update event re-fetches the group (groupchat/get) and diffs the roster,
so a replay, or events arriving out of order, leave the same state as the latest fetch.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TextIO

from bot.clients.errors import ApiError
from storage.repos import wecom_groups as repo
from storage.repos.wecom_groups import RosterChange

if TYPE_CHECKING:
    from bot.context import Services

CHAT_GONE = 40050  # groupchat/get: chatid not exist (dismissed, or never ours)


@dataclass(frozen=True, slots=True)
class GroupSyncCounts:
    """What ``sync_groups`` did."""

    groups: int = 0
    changed: int = 0
    joined: int = 0
    left: int = 0


def _corp(services: Services) -> str:
    wecom = services.settings.wecom
    if wecom is None:
        raise LookupError("no [wecom] section in the settings")
    return wecom.corp_id


async def refresh_group(
    services: Services, chat_id: str, now: datetime, quit_scene: int | None = None
) -> RosterChange | None:
    """Fetch the group and apply it; None when WeCom no longer knows it."""
    try:
        chat = await services.clients.wecom().group_chat.get(chat_id)
    except ApiError as exc:
        if exc.errcode == CHAT_GONE:
            return None
        raise
    if not chat.get("chat_id"):
        return None
    return await repo.apply_chat(_corp(services), chat, now, quit_scene)


async def dismiss_group(chat_id: str, now: datetime) -> bool:
    """The group was dismissed: mark it (known or not); True when something changed."""
    if await repo.dismiss(chat_id, now):
        return True
    return await repo.ensure_dismissed(chat_id, now)


async def sync_groups(services: Services, progress: TextIO | None = None) -> GroupSyncCounts:
    """Walk groupchat/list with its cursor and apply every group (idempotent)."""
    api = services.clients.wecom().group_chat
    groups = changed = joined = left = 0
    cursor = ""
    while True:
        page, cursor = await api.list_chats(cursor=cursor, limit=100)
        for item in page:
            result = await refresh_group(services, str(item["chat_id"]), services.clock.now())
            groups += 1
            if result is not None and result.changed:
                changed += 1
                joined += result.joined
                left += result.left
            count_progress(progress, groups, "groups", 50)
        if not cursor:
            break
    if progress is not None:
        print(file=progress)
    return GroupSyncCounts(groups, changed, joined, left)


def count_progress(stream: TextIO | None, done: int, unit: str, every: int) -> None:
    """``\r  1,200 <unit>`` on ``stream``: every item on a terminal, else every ``every``.
    The WeCom sync commands share it."""
    if stream is not None and (done % every == 0 or stream.isatty()):
        print(f"\r  {done:,} {unit}", end="", file=stream, flush=True)


def stderr_progress() -> TextIO:
    """Where the CLI's progress goes."""
    return sys.stderr
