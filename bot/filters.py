"""Small filter objects for routes: keywords, regexes, menu keys, event and change types."""

from __future__ import annotations

import re
from typing import Any

from bot.context import Ctx
from bot.routing import FilterResult


def _text(event: Any) -> str:
    content = getattr(event, "content", None)
    return content.strip() if isinstance(content, str) else ""


class Keyword:
    """Matches text equal to one of the words (synonyms), ignoring case and spaces."""

    def __init__(self, *words: str) -> None:
        self.words = frozenset(w.strip().casefold() for w in words)

    def __call__(self, event: Any, ctx: Ctx) -> FilterResult:
        """True when the whole message is one of the words."""
        return _text(event).casefold() in self.words


class Regex:
    """Matches text against a pattern and hands its named groups to the handler."""

    def __init__(self, pattern: str, flags: int = re.IGNORECASE) -> None:
        self.pattern = re.compile(pattern, flags)

    def __call__(self, event: Any, ctx: Ctx) -> FilterResult:
        """The named groups (plus ``match``) when the text matches from the start."""
        found = self.pattern.fullmatch(_text(event))
        if found is None:
            return False
        data: dict[str, Any] = {"match": found}
        data.update({k: v for k, v in found.groupdict().items() if v is not None})
        return data


class MenuKey:
    """Matches a menu click (OA ``CLICK`` or WeCom agent ``click``) by its key."""

    def __init__(self, *keys: str) -> None:
        self.keys = frozenset(keys)

    def __call__(self, event: Any, ctx: Ctx) -> FilterResult:
        """True when the event key is one of the keys."""
        return getattr(event, "key", getattr(event, "event_key", None)) in self.keys


class EventIs:
    """Matches by the callback's kind, e.g. ``event:subscribe`` or ``text``."""

    def __init__(self, *kinds: str) -> None:
        self.kinds = frozenset(k.lower() for k in kinds)

    def __call__(self, event: Any, ctx: Ctx) -> FilterResult:
        """True when the inbound kind is one of the kinds."""
        return ctx.inbound.kind.lower() in self.kinds


class ChangeType:
    """Matches WeCom 客户联系 events by ChangeType."""

    def __init__(self, *change_types: str) -> None:
        self.change_types = frozenset(c.lower() for c in change_types)

    def __call__(self, event: Any, ctx: Ctx) -> FilterResult:
        """True when the event's change type is one of them."""
        return str(getattr(event, "change_type", "")).lower() in self.change_types


class Platform:
    """Matches callbacks from one platform: ``oa`` or ``wecom``."""

    def __init__(self, platform: str) -> None:
        self.platform = platform

    def __call__(self, event: Any, ctx: Ctx) -> FilterResult:
        """True for the platform."""
        return ctx.inbound.platform == self.platform


class Command:
    """Matches a member command by its configured keywords (``[chat.keywords]``).

    ``takes_argument`` also matches ``<keyword> <argument>`` and hands ``argument`` to the
    handler (``生日 1990-05-20``); a bare keyword then hands an empty argument.
    """

    def __init__(self, command: str, *, takes_argument: bool = False) -> None:
        self.command = command
        self.takes_argument = takes_argument
        self._words: dict[int, frozenset[str]] = {}

    def _known(self, ctx: Ctx) -> frozenset[str]:
        chat = ctx.services.settings.chat
        words = self._words.get(id(chat))
        if words is None:
            words = frozenset(w.strip().casefold() for w in chat.words(self.command))
            self._words = {id(chat): words}
        return words

    def __call__(self, event: Any, ctx: Ctx) -> FilterResult:
        """True (or the argument) when the text is one of the command's keywords."""
        text = _text(event)
        words = self._known(ctx)
        if text.casefold() in words:
            return {"argument": ""} if self.takes_argument else True
        if not self.takes_argument:
            return False
        head, _, rest = text.partition(" ")
        if rest.strip() and head.casefold() in words:
            return {"argument": rest.strip()}
        return False


class CommandKey:
    """Matches a menu click whose key is one of the command's ``[chat.menu_keys]``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __call__(self, event: Any, ctx: Ctx) -> FilterResult:
        """True when the click's key belongs to the command."""
        key = getattr(event, "key", getattr(event, "event_key", None))
        return key in ctx.services.settings.chat.keys(self.command)
