"""``python -m bot tiers evaluate [--at ISO-DATETIME]``: the yearly tier evaluation."""

from __future__ import annotations

import argparse
from datetime import datetime

from bot.app import build_services
from bot.config import Settings
from bot.services.tiers import EvaluationSummary


def parse_at(value: str | None, settings: Settings) -> datetime | None:
    """--at as an aware datetime (a naive one is business time); CliError if malformed."""
    from bot.cli import CliError

    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CliError(f"--at {value!r} is not an ISO date or datetime") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=settings.tz)


async def evaluate_tiers(settings: Settings, args: argparse.Namespace) -> int:
    """Run the evaluation for the latest evaluation day on or before --at (default now)."""
    at = parse_at(args.at, settings)
    services = build_services(settings)
    try:
        summary = await services.tiers.evaluate(at or services.clock.now())
    finally:
        await services.cache.close()
    print(describe(summary, settings))
    return 0


def describe(summary: EvaluationSummary, settings: Settings) -> str:
    """The summary in a few lines."""
    names = {t.code: t.name for t in settings.membership.tiers}
    day = summary.evaluation_date.isoformat()
    head = f"evaluation {day}: already applied" if summary.already_done else f"evaluation {day}"
    lines = [f"{head}; kept {summary.kept}, dropped {summary.dropped}"]
    for tier in settings.membership.tiers:
        dropped = summary.dropped_from.get(tier.code, 0)
        count = summary.tiers.get(tier.code, 0)
        extra = f" (dropped from here: {dropped})" if dropped else ""
        lines.append(f"  {names[tier.code]} {tier.code}: {count}{extra}")
    return "\n".join(lines)
