"""Broadcasts from the WeCom agent chat: ``群发`` drafts one and answers with the expected
reach and a one-time code; ``确认 <code>`` starts it (see docs/broadcasts.md, "From WeCom").

``群发 <segment> <template> [<channel>[@<account>]] [<headline> | <body>]``: a saved
segment, a ``broadcast_*`` template, the channel (default ``oa_cs``; OA channels go
through the first configured account unless ``@<account>`` names another), then the
template's fixed variables in order (``headline``, ``body``, then any other it reads),
separated by ``|``, ``｜`` or new lines; text beyond the last variable joins it. The
broadcast's kind is the template's. Per-member variables come from each member.

The code is six digits from ``secrets``, valid ``CODE_TTL`` on the business clock, bound
to the staff member and the broadcast (storage.repos.broadcast_confirmations takes it
atomically). Starting enqueues the whole audience, so it runs in the background and the
reply only says it began (WeChat waits 5 s for a reply).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.background import Background
from bot.services.broadcast_content import CHANNELS, PER_MEMBER, BroadcastError
from bot.services.broadcast_progress import ChatProgress
from bot.services.broadcast_sql import OA_CHANNELS
from bot.services.broadcasts import BroadcastService, Reach
from storage.repos import broadcast_confirmations as codes
from storage.repos import segments as segments_repo

if TYPE_CHECKING:
    from bot.context import Services

CODE_TTL = timedelta(minutes=10)
CODE_DIGITS = 6
TEMPLATE_PREFIX = "broadcast_"
SHOWN = 5  # segments or templates listed when the one asked for does not exist
FIRST = ("headline", "body")  # the order a chat user gives fixed variables in
_CODE = re.compile(r"\d{6}")
_PARTS = re.compile(r"[|｜\n]")


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed ``群发``: segment, template, channel, account and the text parts."""

    segment: str
    template: str
    channel: str = "oa_cs"
    account: str = ""
    parts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Draft:
    """What ``群发`` did: ``outcome`` is draft, usage, no_segment, no_template,
    no_channel, missing or refused; the rest fills the reply."""

    outcome: str
    broadcast_id: int = 0
    reach: Reach | None = None
    code: str = ""
    minutes: int = 0
    known: list[str] = field(default_factory=list)  # segments, templates or variables
    more: int = 0  # how many more exist than are listed
    error: str = ""


def parse(text: str) -> Command | None:
    """``<segment> <template> [<channel>] [text]`` → Command; None without both names."""
    first, _, later = text.strip().partition("\n")
    words = first.split()
    if len(words) < 2:
        return None
    segment, template, rest = words[0], words[1], words[2:]
    channel, account = "oa_cs", ""
    if rest and rest[0].partition("@")[0] in CHANNELS:
        channel, _, account = rest.pop(0).partition("@")
    remainder = " ".join(rest) + ("\n" + later if later else "")
    parts = tuple(p.strip() for p in _PARTS.split(remainder) if p.strip())
    return Command(segment, template, channel, account, parts)


def digest(staff: str, code: str) -> str:
    """SHA-256 (hex) of ``<userid>:<code>``: the only form of a code that is stored."""
    return hashlib.sha256(f"{staff}:{code}".encode()).hexdigest()


def wanted(renderer_variables: set[str]) -> list[str]:
    """The fixed variables a chat user supplies, in the order they are given."""
    fixed = renderer_variables - PER_MEMBER
    return [v for v in FIRST if v in fixed] + sorted(fixed - set(FIRST))


class ChatBroadcasts:
    """Drafts, confirms and reports broadcasts for staff in the WeCom agent chat."""

    def __init__(
        self, broadcasts: BroadcastService, background: Background, progress: ChatProgress
    ) -> None:
        self.broadcasts = broadcasts
        self.background = background
        self.progress = progress

    @classmethod
    def for_services(cls, services: Services) -> ChatBroadcasts:
        """The chat flow on these services' broadcast service and background runner."""
        return cls(services.broadcasts, services.background, ChatProgress(services.broadcasts))

    async def draft(self, staff: str, text: str, now: datetime) -> Draft:
        """Create the draft, compute its reach and issue its code (or say what is wrong)."""
        command = parse(text)
        if command is None:
            return Draft("usage")
        segment = await segments_repo.get(command.segment)
        if segment is None:
            names = [s.name for s in await segments_repo.list_all()]
            return Draft("no_segment", known=names[:SHOWN], more=max(len(names) - SHOWN, 0))
        refused = self._check(command)
        if refused is not None:
            return refused
        names = wanted(self.broadcasts.renderer.variables(command.template))
        if len(command.parts) < len(names):
            return Draft("missing", known=names)
        actor = f"staff:{staff}"
        try:
            made = await self.broadcasts.create(
                _name(command, _fill(names, command.parts)),
                command.channel,
                actor=actor,
                template=command.template,
                content={"variables": _fill(names, command.parts)},
                kind=self.broadcasts.renderer.kind(command.template),
                account=command.account or self._first_account(command.channel),
                segment_id=int(segment.id),
            )
        except BroadcastError as exc:
            return Draft("refused", error=str(exc))
        try:
            reach = await self.broadcasts.preview(int(made.id))
        except BroadcastError as exc:  # the segment's rule: no code for a draft that cannot run
            await self.broadcasts.cancel(int(made.id), actor=actor)
            return Draft("refused", error=str(exc))
        code = await self._issue(int(made.id), staff, now)
        minutes = int(CODE_TTL.total_seconds() // 60)
        return Draft("draft", int(made.id), reach, code, minutes)

    def _check(self, command: Command) -> Draft | None:
        templates = [n for n in self.broadcasts.renderer.names() if n.startswith(TEMPLATE_PREFIX)]
        if command.template not in templates:
            more = max(len(templates) - SHOWN, 0)
            return Draft("no_template", known=templates[:SHOWN], more=more)
        accounts = self.broadcasts.settings.accounts
        if command.channel in OA_CHANNELS and command.account and command.account not in accounts:
            return Draft("no_channel", known=list(accounts))
        return None

    def _first_account(self, channel: str) -> str:
        accounts = self.broadcasts.settings.accounts
        return next(iter(accounts), "") if channel in OA_CHANNELS else ""

    async def _issue(self, broadcast_id: int, staff: str, now: datetime) -> str:
        while True:  # a code unlike the staff member's other live codes
            code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
            if not await codes.live(staff, digest(staff, code), now):
                await codes.issue(broadcast_id, staff, digest(staff, code), now, CODE_TTL)
                return code

    async def confirm(self, staff: str, code: str, now: datetime) -> codes.Taken:
        """Take the code; when this call took it, start the broadcast in the background."""
        code = code.strip()
        if not _CODE.fullmatch(code):
            return codes.Taken("wrong")
        taken = await codes.take(staff, digest(staff, code), now)
        if taken.outcome == "taken":
            work = self.progress.start(taken.broadcast_id, staff)
            self.background.spawn(work, name=f"broadcast-start:{taken.broadcast_id}")
        return taken


def _fill(names: list[str], parts: tuple[str, ...]) -> dict[str, str]:
    if not names:
        return {}
    values = dict(zip(names, parts, strict=False))
    values[names[-1]] = "\n".join(parts[len(names) - 1 :])
    return values


def _name(command: Command, values: dict[str, str]) -> str:
    title = values.get("headline") or command.template
    return f"{command.segment} · {title}"[:128]
