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
