"""Configured keyword auto-replies (``[[chat.auto_replies]]``), tried before the help hint."""

from __future__ import annotations

from collections.abc import Sequence

from bot.config_program import AutoReply


def find(rules: Sequence[AutoReply], text: str) -> AutoReply | None:
    """The first rule whose keyword matches (exact or contains, casefolded), if any."""
    said = text.strip().casefold()
    if not said:
        return None
    for rule in rules:
        words = [w.strip().casefold() for w in rule.keywords]
        if rule.match == "exact" and said in words:
            return rule
        if rule.match == "contains" and any(w and w in said for w in words):
            return rule
    return None
