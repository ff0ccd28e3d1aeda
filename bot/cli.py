"""``python -m bot …``: serve, migrate, events and the other operator commands.

Errors are one line on stderr and exit status 2. On the embedded default (SQLite) every
command applies pending migrations first, so a fresh clone just works.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from bot.config import ConfigError, Settings, load_settings

DEFAULT_CONFIGS = ("config.toml", "config.example.toml")


class CliError(Exception):
    """A user-facing command failure: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line and exit 2 instead of argparse's usage dump."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def resolve_config_path(given: str | None, env: dict[str, str] | None = None) -> str:
    """--config, else $SCRM_CONFIG, else config.toml, else config.example.toml."""
    env = dict(os.environ) if env is None else env
    if given:
        return given
    if env.get("SCRM_CONFIG"):
        return env["SCRM_CONFIG"]
    for name in DEFAULT_CONFIGS:
        if Path(name).exists():
            return name
    return DEFAULT_CONFIGS[-1]


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(resolve_config_path(args.config))


def build_parser() -> argparse.ArgumentParser:
    """The command tree."""
    parser = _Parser(prog="python -m bot", description="Private-domain SCRM bot server")
    parser.add_argument("--config", help="settings file (default: $SCRM_CONFIG, config.toml)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("serve", help="run the HTTP server (callbacks, health, metrics)")
    sub.add_parser("worker", help="run the outbound sender alone")
    chat = sub.add_parser("chat", help="play a member (or staff member) against a running server")
    chat.add_argument("--server", help="server URL (default: from the settings)")
    chat.add_argument("--account", help="Official Account name (default: the first)")
    chat.add_argument("--openid", default="oSimulator0001", help="the member's openid")
    chat.add_argument("--wecom", action="store_true", help="play a WeCom staff member")
    chat.add_argument("--staff", default="zhangsan", help="the staff member's WeCom userid")
    chat.add_argument("--say", action="append", help="send this line (repeatable); else stdin")
    sub.add_parser("migrate", help="apply pending database migrations")
    sub.add_parser("makemigrations", help="write a migration for model changes (developers)")
    events = sub.add_parser("events", help="inspect and replay recorded callbacks")
    ev = events.add_subparsers(dest="events_command", required=True, parser_class=_Parser)
    ls = ev.add_parser("list", help="the latest recorded callbacks")
    ls.add_argument("--limit", type=int, default=20)
    replay = ev.add_parser("replay", help="dispatch a recorded callback again under its key")
    replay.add_argument("id", type=record_id)
    ev.add_parser("purge", help="delete callbacks older than inbound_retention_days")
    tiers = sub.add_parser("tiers", help="tiers: the yearly evaluation")
    tr = tiers.add_subparsers(dest="tiers_command", required=True, parser_class=_Parser)
    evaluate = tr.add_parser("evaluate", help="apply the latest yearly evaluation (once per day)")
    evaluate.add_argument("--at", help="ISO date or datetime (default: now; naive = business)")
    _points_parser(sub)
    _members_parser(sub)
    _orders_parser(sub)
    _oa_parser(sub)
    _wecom_parser(sub)
    _coupons_parser(sub)
    _wecom_tags_parser(sub)
    _sop_parser(sub)
    _segments_parser(sub)
    _broadcast_parser(sub)
    for sp in (sub.choices[c] for c in sub.choices):
        sp.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def _sop_parser(sub: Any) -> None:
    sop = sub.add_parser("sop", help="SOPs: list, preview, run, history")
    cmd = sop.add_subparsers(dest="sop_command", required=True, parser_class=_Parser)
    cmd.add_parser("list", help="every SOP with its trigger, audience, action and next run")
    preview = cmd.add_parser("preview", help="audience size, channel split, a sample message")
    preview.add_argument("id", help="the SOP id")
    preview.add_argument("--at", help="fire time, ISO (default now; naive = business time)")
    run = cmd.add_parser("run", help="run one fire time now (claims and enqueues, once)")
    run.add_argument("id", help="the SOP id")
    run.add_argument("--at", help="fire time, ISO (default now; naive = business time)")
    run.add_argument("--dry-run", action="store_true", help="preview only: claim nothing")
    history = cmd.add_parser("history", help="per fire time: sent, skipped, failed, unknown")
    history.add_argument("id", help="the SOP id")
    history.add_argument("--limit", type=int, default=10, help="fire times to show")


def _segments_parser(sub: Any) -> None:
    seg = sub.add_parser("segments", help="segments (分群): preview, save, list, explain")
    cmd = seg.add_subparsers(dest="segments_command", required=True, parser_class=_Parser)
    kinds = ("marketing", "service")
    preview = cmd.add_parser("preview", help="count, channel split and sample of a rule file")
    preview.add_argument("--rule", required=True, help="TOML file with the rule at top level")
    preview.add_argument("--kind", choices=kinds, default="marketing", help="default marketing")
    preview.add_argument("--sample", type=int, default=5, help="member codes to show")
    preview.add_argument("--at", help="ISO date or datetime (default now; naive = business)")
    save = cmd.add_parser("save", help="store a rule file under a name (audited)")
    save.add_argument("name", help="the segment's name")
    save.add_argument("--rule", required=True, help="TOML file with the rule at top level")
    save.add_argument("--description", default="", help="what the segment is for")
    save.add_argument("--actor", default="cli", help="recorded in the AuditLog row")
    cmd.add_parser("list", help="the saved segments")
    explain = cmd.add_parser("explain", help="which conditions of a segment a member meets")
    explain.add_argument("name", help="the segment's name")
    explain.add_argument("member", help="member code")
    explain.add_argument("--kind", choices=kinds, default="marketing", help="default marketing")
    explain.add_argument("--at", help="ISO date or datetime (default now; naive = business)")


def _broadcast_parser(sub: Any) -> None:
    bc = sub.add_parser("broadcast", help="broadcasts (群发): create, start, watch, report")
    cmd = bc.add_subparsers(dest="broadcast_command", required=True, parser_class=_Parser)
    create = cmd.add_parser("create", help="a draft broadcast (scheduled with --at; audited)")
    create.add_argument("--name", required=True, help="what the broadcast is called")
    audience = create.add_mutually_exclusive_group(required=True)
    audience.add_argument("--segment", help="a saved segment's name")
    audience.add_argument("--rule", help="TOML file with the rule at top level")
    create.add_argument("--channel", required=True, help="oa_cs, oa_template, oa_mass, …")
    create.add_argument("--template", required=True, help="template name in templates/")
    create.add_argument("--var", action="append", help="template variable NAME=VALUE (repeat)")
    create.add_argument("--kind", choices=("marketing", "service"), default="marketing")
    create.add_argument("--account", help="Official Account name (default: the first)")
    create.add_argument("--at", help="schedule: ISO datetime (naive = business time)")
    ids: dict[str, str] = {
        "preview": "expected reach: who is excluded and why",
        "start": "start sending (enqueues here; audited)",
        "status": "state and rows per status",
        "pause": "pause sending (audited)",
        "resume": "resume a paused broadcast (audited)",
        "cancel": "cancel (pending rows cancelled; audited)",
        "report": "sent / failed / unknown / skipped with reasons",
    }
    for name, text in ids.items():
        one = cmd.add_parser(name, help=text)
        one.add_argument("id", type=record_id, help="the broadcast id")
        if name in ("start", "pause", "resume", "cancel"):
            one.add_argument("--actor", default="cli", help="who (recorded in the audit log)")
        if name in ("start", "status"):
            _watch_options(one, "--wait" if name == "start" else "--watch")
    create.add_argument("--actor", default="cli", help="who (recorded in the audit log)")
    cmd.choices["report"].add_argument("--json", action="store_true", help="the report as JSON")


def _watch_options(parser: Any, flag: str) -> None:
    dest = flag.removeprefix("--")
    parser.add_argument(flag, dest=dest, action="store_true", help="progress bar until done")
    parser.add_argument(
        "--send", action="store_true", help="send in this process meanwhile (implies waiting)"
    )
    parser.add_argument("--interval", type=_poll, default=1.0, help="poll every N seconds")
    parser.add_argument(
        "--hint-after", type=_seconds, default=15.0, help="say so when no row settles for N s"
    )
    parser.add_argument("--timeout", type=_seconds, help="stop watching after N seconds (exit 1)")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 to 86400)")
    return value


def record_id(text: str) -> int:
    """A database id argument: 1 to 2**63 - 1 (a bigint), else one line and exit 2."""
    if not text.isdigit() or not 1 <= int(text) < 2**63:
        raise argparse.ArgumentTypeError(f"{text!r} is not an id (a whole number from 1)")
    return int(text)


def _poll(text: str) -> float:
    value = _seconds(text)
    if value < 0.01:
        raise argparse.ArgumentTypeError(f"{text!r}: poll at most every 0.01 s")
    return value


def _points_parser(sub: Any) -> None:
    pts = sub.add_parser("points", help="expire lots, reconcile the ledger")
    cmd = pts.add_subparsers(dest="points_command", required=True, parser_class=_Parser)
    expire = cmd.add_parser("expire", help="write expiry entries for lots past due")
    expire.add_argument("--at", help="ISO date or datetime (default now, business time)")
    expire.add_argument("--actor", default="cli", help="recorded in the AuditLog row")
    rec = cmd.add_parser("reconcile", help="check balances against the ledger (exit 1: breaks)")
    rec.add_argument("--actor", default="cli", help="recorded in the AuditLog row")


def _members_parser(sub: Any) -> None:
    members = sub.add_parser("members", help="show, import, correct members")
    cmd = members.add_subparsers(dest="members_command", required=True, parser_class=_Parser)
    show = cmd.add_parser("show", help="identities, tier, ledger, lots, tags, consent")
    show.add_argument("member", help="member code, mobile number or openid")
    adjust = cmd.add_parser("adjust-points", help="add or take points (audited)")
    adjust.add_argument("member", help="member code, mobile number or openid")
    adjust.add_argument("delta", type=int, help="points to add (negative to take)")
    adjust.add_argument("--reason", required=True, help="why (kept in the ledger and audit log)")
    adjust.add_argument("--actor", default="cli", help="who (recorded in the audit log)")
    adjust.add_argument("--key", help="idempotency key (default: a new one, printed)")
    adjust.add_argument(
        "--silent", action="store_true", help="do not notify the member (default: a notice)"
    )
    imp = cmd.add_parser("import", help="import a brand's existing members from CSV")
    imp.add_argument("file", help="UTF-8 CSV with a header line (docs/imports.md)")
    imp.add_argument("--rejects", help="write rejected rows here (original columns + reason)")
    imp.add_argument("--account", help="Official Account of the openid column (default: first)")
    imp.add_argument("--dry-run", action="store_true", help="validate and count, write nothing")
    imp.add_argument("--actor", default="cli", help="recorded in the AuditLog rows")
    merge = cmd.add_parser("merge", help="merge one member into another (audited)")
    merge.add_argument("survivor", help="code of the member that stays")
    merge.add_argument("merged", help="code of the member merged into it")
    merge.add_argument("--reason", default="operator merge", help="kept in the merge record")
    merge.add_argument("--actor", default="cli", help="who (recorded in the audit log)")
    unmerge = cmd.add_parser("unmerge", help="undo a merge exactly (audited)")
    unmerge.add_argument("merge_id", type=record_id, help="the merge id `members merge` printed")
    unmerge.add_argument("--actor", default="cli", help="who (recorded in the audit log)")
    export = cmd.add_parser("export", help="the member's data as JSON (audited)")
    export.add_argument("member", help="member code, mobile number or openid")
    export.add_argument("--out", help="write to this file (default: stdout)")
    export.add_argument("--actor", default="cli", help="who (recorded in the audit log)")
    _merge_requests_parser(cmd)


def _merge_requests_parser(cmd: Any) -> None:
    requests = cmd.add_parser("merge-requests", help="list, approve or reject merge requests")
    requests.add_argument(
        "--status",
        default="pending",
        choices=("pending", "approved", "rejected", "all"),
        help="which requests to list (default: pending)",
    )
    action = requests.add_subparsers(dest="request_action", parser_class=_Parser)
    approve = action.add_parser("approve", help="merge the holder into the requesting member")
    approve.add_argument("request", type=record_id, help="merge request id")
    approve.add_argument("--actor", default="cli", help="who (recorded in the audit log)")
    reject = action.add_parser("reject", help="refuse the merge (nothing moves)")
    reject.add_argument("request", type=record_id, help="merge request id")
    reject.add_argument("--reason", required=True, help="why (kept on the request and audited)")
    reject.add_argument("--actor", default="cli", help="who (recorded in the audit log)")


def _coupons_parser(sub: Any) -> None:
    cps = sub.add_parser("coupons", help="coupons: expire those past their validity")
    cmd = cps.add_subparsers(dest="coupons_command", required=True, parser_class=_Parser)
    expire = cmd.add_parser("expire", help="mark issued coupons past valid_to expired")
    expire.add_argument("--at", help="ISO date or datetime (default now, business time)")
    expire.add_argument("--actor", default="cli", help="recorded in the AuditLog row")


def _orders_parser(sub: Any) -> None:
    orders = sub.add_parser("orders", help="import orders")
    cmd = orders.add_subparsers(dest="orders_command", required=True, parser_class=_Parser)
    imp = cmd.add_parser("import", help="import a CSV of orders (docs/imports.md)")
    imp.add_argument("file", help="the CSV file (UTF-8, a header row)")
    imp.add_argument("--rejects", help="write rejected rows with their reason to this CSV")
    imp.add_argument("--actor", default="import", help="recorded in the AuditLog rows")
    imp.add_argument(
        "--notify-tiers", action="store_true", help="send tier notices for upgrades it causes"
    )
    imp.add_argument(
        "--batch", type=_batch_size, default=1000, help="orders per transaction (default 1000)"
    )


def _batch_size(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 5000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 1 to 5000")
    return int(text)


def _wecom_parser(sub: Any) -> None:
    wecom = sub.add_parser("wecom", help="WeCom: sync, contact ways, handover, staff report")
    cmd = wecom.add_subparsers(dest="wecom_command", required=True, parser_class=_Parser)
    # sync-groups, sync-customers (J)
    cmd.add_parser("sync-groups", help="every customer group and its roster (idempotent)")
    cmd.add_parser("sync-customers", help="every staff member's customers (idempotent)")
    # contact-way create (J)
    way = cmd.add_parser("contact-way", help="联系我 QR codes")
    way_cmd = way.add_subparsers(dest="way_command", required=True, parser_class=_Parser)
    create = way_cmd.add_parser("create", help="a QR code carrying a State (audited)")
    create.add_argument("--state", required=True, help="the State (at most 30 characters)")
    create.add_argument("--staff", required=True, action="append", help="staff userid (repeat)")
    create.add_argument("--actor", default="cli", help="recorded in the AuditLog row")
    # transfer (J)
    transfer = cmd.add_parser("transfer", help="hand customers over (在职/离职继承, audited)")
    transfer.add_argument("--from", dest="from_staff", required=True, help="handover userid")
    transfer.add_argument("--to", dest="to_staff", required=True, help="takeover userid")
    transfer.add_argument("--resigned", action="store_true", help="离职继承 (staff has left)")
    transfer.add_argument("--interval", type=float, default=60.0, help="poll every N seconds")
    transfer.add_argument("--actor", default="cli", help="recorded in the AuditLog row")
    # staff-report (J)
    report = cmd.add_parser("staff-report", help="customers, adds, removals per day per staff")
    report.add_argument("--days", type=int, default=7, help="days back, today included")


def _oa_parser(sub: Any) -> None:
    oa = sub.add_parser("oa", help="Official Account set-up")
    cmd = oa.add_subparsers(dest="oa_command", required=True, parser_class=_Parser)
    menu = cmd.add_parser("menu", help="the custom menu")
    menu_cmd = menu.add_subparsers(dest="menu_command", required=True, parser_class=_Parser)
    publish = menu_cmd.add_parser("publish", help="push [oa.menu] from the settings")
    publish.add_argument("--account", help="Official Account name (default: the first)")
    publish.add_argument("--actor", default="cli", help="recorded in the AuditLog row")


def _wecom_tags_parser(sub: Any) -> None:
    wecom = sub.choices.get("wecom") or sub.add_parser("wecom", help="WeCom set-up and sync")
    if not any(isinstance(a, argparse._SubParsersAction) for a in wecom._actions):
        wecom.add_subparsers(dest="wecom_command", required=True, parser_class=_Parser)
    cmd = next(a for a in wecom._actions if isinstance(a, argparse._SubParsersAction))
    cmd.add_parser("sync-tags", help="mirror the corp tag library into the database")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ConfigError, CliError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.command == "serve":
        from bot.server import serve

        serve(settings)
        return 0
    if args.command == "worker":
        from bot.worker import SenderBusy, run_worker

        try:
            run_worker(settings)
        except SenderBusy as exc:
            raise CliError(str(exc)) from None
        return 0
    if args.command == "chat":
        return _chat(settings, args)
    if args.command == "migrate":
        return _async(_migrate(settings, announce=True))
    if args.command == "makemigrations":
        from bot.devtools.migrations import make_migrations

        return _async(make_migrations())
    if args.command in _SUBCOMMAND_MODULES:
        return _async(_with_db(settings, _subcommand(args)(settings, args)))
    if args.command == "orders":
        from bot import cli_orders

        return _async(_with_db(settings, cli_orders.import_orders(settings, args)))
    if args.command == "wecom" and args.wecom_command == "sync-tags":
        from bot import cli_wecom_tags

        return _async(_with_db(settings, cli_wecom_tags.sync_tags(settings, args)))
    if args.command == "wecom":
        from bot import cli_wecom

        name = "contact_way" if args.wecom_command == "contact-way" else args.wecom_command
        wecom_command: Callable[[Settings, argparse.Namespace], Awaitable[int]] = getattr(
            cli_wecom, f"{name.replace('-', '_')}_wecom"
        )
        return _async(_with_db(settings, wecom_command(settings, args)))
    if args.command in ("points", "members", "oa"):
        return _async(_with_db(settings, _operator_command(settings, args)))
    raise CliError(f"unknown command {args.command}")


# Commands whose subcommand X is the function ``X_<command>`` of ``bot.cli_<command>``.
_SUBCOMMAND_MODULES = ("events", "tiers", "coupons", "sop", "segments", "broadcast")


def _subcommand(
    args: argparse.Namespace,
) -> Callable[[Settings, argparse.Namespace], Awaitable[int]]:
    module = importlib.import_module(f"bot.cli_{args.command}")
    name = getattr(args, f"{args.command}_command").replace("-", "_")
    command: Callable[[Settings, argparse.Namespace], Awaitable[int]] = getattr(
        module, f"{name}_{args.command}"
    )
    return command


def _operator_command(settings: Settings, args: argparse.Namespace) -> Awaitable[int]:
    from bot import cli_members, cli_oa, cli_points

    if args.command == "points":
        return getattr(cli_points, f"{args.points_command}_points")(settings, args)  # type: ignore[no-any-return]
    if args.command == "members":
        name = args.members_command.replace("-", "_")
        return getattr(cli_members, f"{name}_members")(settings, args)  # type: ignore[no-any-return]
    return cli_oa.publish_menu(settings, args)


def _chat(settings: Settings, args: argparse.Namespace) -> int:
    from bot.devtools.simulator import Identity, default_server, run_chat

    if not settings.accounts and not args.wecom:
        raise CliError("the settings define no [accounts.*] Official Account to chat with")
    account = args.account or next(iter(settings.accounts), "")
    if account and account not in settings.accounts:
        raise CliError(f"no Official Account named {account!r} in the settings")
    who = Identity(account, args.openid, args.wecom, args.staff)
    server = args.server or default_server(settings)
    return _async(run_chat(settings, server, who, args.say))


def _async(coro: Awaitable[int]) -> int:
    async def runner() -> int:
        return await coro

    return asyncio.run(runner())


async def _migrate(settings: Settings, announce: bool = False) -> int:
    from storage import db

    try:
        await db.migrate(settings.database.url)
    except OSError as exc:
        raise CliError(f"database {_safe_url(settings.database.url)}: {exc}") from None
    if announce:
        print(f"migrations applied to {_safe_url(settings.database.url)}")
    return 0


async def _with_db(settings: Settings, work: Awaitable[int]) -> int:
    from storage import db

    if db.is_sqlite(settings.database.url):
        await _migrate(settings)
    await db.open_db(settings.database.url)
    try:
        return await work
    finally:
        await db.close_db()


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://…@{rest.rsplit('@', 1)[1]}"
