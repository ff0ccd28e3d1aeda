"""``python -m bot orders import FILE [--rejects FILE]``: bulk order imports (docs/imports.md)."""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from bot.config import ConfigError, Settings
from bot.services.order_import import BadHeader, ImportSummary, OrderImporter, check_header
from bot.services.pii import MissingKey

MAX_ACTOR = 64  # AuditLog.actor


def _rows(path: Path) -> tuple[list[str], Iterator[dict[str, str | None]], int]:
    """The header, the rows (streamed: the file opens when they are read) and their count."""
    from bot.cli import CliError

    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            lines = csv.reader(fh)
            names = next(lines, [])
            total = sum(1 for _ in lines)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CliError(f"{path} is not a UTF-8 CSV file: {exc}") from None
    try:
        header = check_header(names)
    except BadHeader as exc:
        raise CliError(f"{path}: {exc}") from None

    def stream() -> Iterator[dict[str, str | None]]:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            next(reader, None)
            for cells in reader:
                yield dict(zip(header, cells, strict=False))

    return header, stream(), total


class _Progress:
    """``\\r  12,000/100,000 rows`` on stderr: while running on a terminal, always at the end."""

    def __init__(self, total: int, out: TextIO) -> None:
        self.total = total
        self.out = out
        self.live = out.isatty()

    def __call__(self, done: int) -> None:
        if self.live:
            self.out.write(f"\r  {done:,}/{self.total:,} rows")
            self.out.flush()

    def end(self, done: int) -> None:
        self.out.write(f"\r  {done:,}/{self.total:,} rows\n")
        self.out.flush()


def describe(summary: ImportSummary) -> str:
    """The one-line summary (reasons by count, most frequent first)."""
    line = (
        f"imported {summary.imported}, duplicates {summary.duplicates}, "
        f"rejected {summary.rejected}; {summary.points} points awarded"
    )
    if summary.reasons:
        reasons = ", ".join(f"{why} {n}" for why, n in summary.reasons.most_common())
        line += f" (rejected: {reasons})"
    return line


async def import_orders(settings: Settings, args: argparse.Namespace) -> int:
    """Import a CSV of orders; rejected rows (with a reason) go to --rejects. Exit 1 if any."""
    from bot.app import build_services
    from bot.cli import CliError, resolve_config_path

    if not 0 < len(args.actor) <= MAX_ACTOR:
        raise CliError(f"--actor must be 1 to {MAX_ACTOR} characters")
    header, rows, total = _rows(Path(args.file))
    services = build_services(settings)
    if "mobile" in header:
        try:
            services.orders.vault.require()
        except MissingKey as exc:
            path = resolve_config_path(args.config)
            raise ConfigError(path, exc.key, f"{exc.reason}; needed for mobile numbers") from None
    rejects_path = Path(args.rejects) if args.rejects else None
    rejects_file = rejects_path.open("w", encoding="utf-8", newline="") if rejects_path else None
    writer = csv.writer(rejects_file) if rejects_file else None
    if writer is not None:
        writer.writerow([*header, "reason"])

    def reject(row: dict[str, str | None], reason: str) -> None:
        if writer is not None:
            writer.writerow([*(row.get(name) or "" for name in header), reason])

    progress = _Progress(total, sys.stderr)
    importer = OrderImporter(
        services.orders, batch=args.batch, actor=args.actor, notify_tiers=args.notify_tiers
    )
    try:
        summary = await importer.run(rows, reject, progress)  # type: ignore[arg-type]
    finally:
        if rejects_file is not None:
            rejects_file.close()
        await services.cache.close()
    progress.end(summary.rows)
    print(describe(summary))
    if summary.rejected and rejects_path is not None:
        print(f"rejected rows with their reason: {rejects_path}")
    return 1 if summary.rejected else 0
