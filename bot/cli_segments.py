"""``python -m bot segments preview|save|list|explain``: segments (分群) from TOML files.

A rule file holds the rule at its top level (``all = [{field = "tier", in = ["gold"]}]``;
docs/segments.md). ``preview`` counts, splits by channel and samples; ``save`` stores
the rule by name (audited); ``explain`` shows which conditions one member meets. A
missing or malformed file, or a bad rule, is one line naming the file (exit 2).
"""

from __future__ import annotations

import argparse
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.cli_tiers import parse_at
from bot.clock import BusinessClock
from bot.config import Settings
from sop import segments
from sop.segments import MemberNotFound, SegmentError, SegmentPreview, SegmentRule
from storage.repos import audit_log
from storage.repos import segments as segments_repo

__all__ = [
    "compiled_rule",
    "describe_preview",
    "explain_segments",
    "list_segments",
    "preview_segments",
    "read_rule",
    "save_segments",
]


def _fail(message: str) -> Exception:
    from bot.cli import CliError

    return CliError(message)


def _now(settings: Settings, args: argparse.Namespace) -> datetime:
    return parse_at(getattr(args, "at", None), settings) or BusinessClock(settings.tz).now()


def read_rule(path: str) -> dict[str, Any]:
    """The TOML file's top-level table (CliError naming the file when unreadable)."""
    try:
        with Path(path).open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise _fail(f"{path}: no such rule file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"{path}: cannot read the rule file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise _fail(f"{path}: not valid TOML ({exc})") from None


def compiled_rule(
    data: dict[str, Any], where: str, settings: Settings, now: datetime, kind: str
) -> SegmentRule:
    """The parsed rule, compiled once so every error is a CliError naming ``where``."""
    try:
        rule = segments.parse_rule(data)
        segments.compile_segment(rule, kind=kind, settings=settings, now=now)
    except SegmentError as exc:
        raise _fail(f"{where}: {exc}") from None
    return rule


def describe_preview(found: SegmentPreview, kind: str) -> str:
    """``3 members (marketing)``, the channel split and the sample, one per line."""
    channels = ", ".join(f"{name} {n}" for name, n in found.channels.items())
    lines = [f"{found.count} members ({kind})", f"channels: {channels}"]
    lines.append(f"sample: {', '.join(found.sample) if found.sample else '(none)'}")
    return "\n".join(lines)


async def preview_segments(settings: Settings, args: argparse.Namespace) -> int:
    """Count, channel split and sample of the rule in ``--rule FILE``."""
    now = _now(settings, args)
    rule = compiled_rule(read_rule(args.rule), args.rule, settings, now, args.kind)
    found = await segments.preview(
        rule, kind=args.kind, settings=settings, now=now, sample=args.sample
    )
    print(describe_preview(found, args.kind))
    return 0


async def save_segments(settings: Settings, args: argparse.Namespace) -> int:
    """Store the rule of ``--rule FILE`` under NAME (create or replace; audited)."""
    now = _now(settings, args)
    rule = compiled_rule(read_rule(args.rule), args.rule, settings, now, "marketing")
    data = segments.dump_rule(rule)
    async with audit_log.atomic():
        _, created = await segments_repo.save(
            args.name, data, description=args.description, actor=args.actor, now=now
        )
        action = "segment.create" if created else "segment.replace"
        detail = {"rule": data, "description": args.description}
        await audit_log.record(args.actor, action, f"segment:{args.name}", detail, now)
    print(f"segment {args.name} {'created' if created else 'replaced'}")
    return 0


async def list_segments(settings: Settings, args: argparse.Namespace) -> int:
    """Every saved segment: name, conditions, description."""
    rows = await segments_repo.list_all()
    if not rows:
        print("no saved segments")
    for row in rows:
        try:
            count = sum(1 for _ in segments.leaves(segments.parse_rule(row.rule)))
            shape = f"{count} conditions"
        except SegmentError as exc:
            shape = f"invalid rule ({exc})"
        print(f"{row.name:<24} {shape:<16} {row.description}".rstrip())
    return 0


async def explain_segments(settings: Settings, args: argparse.Namespace) -> int:
    """Each condition of segment NAME and whether MEMBER (a code) meets it."""
    now = _now(settings, args)
    row = await segments_repo.get(args.name)
    if row is None:
        raise _fail(f"no saved segment named {args.name!r}")
    rule = compiled_rule(row.rule, f"segment {args.name}", settings, now, args.kind)
    try:
        found = await segments.explain(
            rule, args.member, settings=settings, now=now, kind=args.kind
        )
    except MemberNotFound as exc:
        raise _fail(str(exc)) from None
    for result in found:
        mark = "yes" if result.met else "no "
        print(f"{mark} {result.path:<20} {result.description}")
    return 0
