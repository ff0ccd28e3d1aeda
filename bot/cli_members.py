"""``python -m bot members show|import|adjust-points``: an operator's view, imports, fixes."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bot.clock import BusinessClock
from bot.config import ConfigError, Settings
from bot.services import member_import, member_profile, operator, points
from bot.services.pii import MissingKey, MobileVault, PiiError, mask, normalize
from storage.models import Member

MAX_REASON = 128  # PointsEntry.reason
MAX_ACTOR = 64  # AuditLog.actor


def _vault(settings: Settings) -> MobileVault:
    return MobileVault.from_settings(settings.security)


async def _member(settings: Settings, args: argparse.Namespace) -> Member:
    from bot.cli import CliError, resolve_config_path

    ref, vault = args.member, _vault(settings)
    try:
        if member_profile.is_mobile(ref):
            vault.require()  # both keys, before any query: a clear start-up error
        member = await member_profile.find(ref, vault)
    except MissingKey as exc:
        path = resolve_config_path(args.config)
        raise ConfigError(
            path, exc.key, f"{exc.reason}; needed to find a member by mobile"
        ) from None
    if member is None:
        raise CliError(f"no member matches {_shown(ref)}")
    return member


def _shown(ref: str) -> str:
    """The reference for messages: a mobile number masked."""
    return mask(normalize(ref)) if member_profile.is_mobile(ref) else repr(ref)


async def show_members(settings: Settings, args: argparse.Namespace) -> int:
    """Print one member's identities, status, points, ledger, lots, tags and consent."""
    member = await _member(settings, args)
    profile = await member_profile.load(member, _vault(settings))
    for line in render(profile, settings.tz):
        print(line)
    return 0


def render(profile: member_profile.Profile, tz: ZoneInfo) -> list[str]:
    """The readable text of a profile."""
    return [
        *_header(profile.member, profile.mobile, tz),
        *_section("identities", [_identity(i, tz, profile.mobile) for i in profile.identities]),
        *_section("ledger (latest 20)", [_entry(e, tz) for e in profile.entries]),
        *_section("open lots", [_lot(lot, tz) for lot in profile.lots]),
        *_section("tags", [_tag(t) for t in profile.tags]),
        *_section("staff tags (WeCom)", [_staff_tag(t) for t in profile.all_tags if t["staff"]]),
        *_section("consent", [_consent(c, tz) for c in profile.consents]),
        *_section(_orders_title(profile.order_totals), [_order(o, tz) for o in profile.orders]),
        *_section("refunds", [_refund(r, tz) for r in profile.refunds]),
        *_section("redemptions", [_redemption(r, tz) for r in profile.redemptions]),
        *_section("coupons", [_coupon(c, tz) for c in profile.coupons]),
    ]


def _yuan(fen: int) -> str:
    return f"¥{fen // 100:,}.{fen % 100:02d}" if fen >= 0 else f"-{_yuan(-fen)}"


def _orders_title(totals: dict[str, int]) -> str:
    n, shown = totals["orders"], member_profile.STORY_LINES
    if not n:
        return "orders"
    count = f"latest {shown} of {n:,}" if n > shown else f"{n:,}"
    paid, refunded = _yuan(totals["paid_fen"]), _yuan(totals["refunded_fen"])
    return f"orders ({count}; paid {paid}, refunded {refunded})"


def _order(row: dict[str, Any], tz: ZoneInfo) -> str:
    where = "/".join(part for part in (row["channel"], row["store"]) if part) or "-"
    return (
        f"{row['external_id']:<20} {_when(row['paid_at'], tz)}  {_yuan(row['amount_fen']):>11}"
        f"  refunded {_yuan(row['refunded_fen'])}  points {row['points']:+d}"
        f" reversed {-row['points_reversed']:+d}  growth {row['growth']:+d}"
        f" reversed {-row['growth_reversed']:+d}  ({where})"
    )


def _refund(row: dict[str, Any], tz: ZoneInfo) -> str:
    return (
        f"{row['refund_id']:<20} {_when(row['created_at'], tz)}  {_yuan(row['amount_fen']):>11}"
        f"  of order {row['order__external_id']}  points {-row['points_reversed']:+d}"
        f"  growth {-row['growth_reversed']:+d}"
    )


def _redemption(row: dict[str, Any], tz: ZoneInfo) -> str:
    return (
        f"#{row['id']:<8} {_when(row['created_at'], tz)}  {row['reward__code']}"
        f" {row['reward__name']}  {-row['points']:+d} points  ({row['channel'] or '-'})"
    )


def _coupon(row: dict[str, Any], tz: ZoneInfo) -> str:
    worth = (
        f"{_yuan(row['value_fen'])} off"
        if row["value_fen"]
        else f"{row['discount'] / 10:g}% of the price"
    )
    used = (
        f"  used {_when(row['used_at'], tz)} on order {row['used_order_id']}"
        if row["used_order_id"]
        else ""
    )
    return (
        f"{row['code']:<16} {row['state']:<8} {row['name']} ({worth})"
        f"  valid {_when(row['valid_from'], tz)} to {_when(row['valid_to'], tz)}{used}"
    )


def _when(at: datetime | None, tz: ZoneInfo) -> str:
    return at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if at is not None else "-"


def _header(m: Member, mobile: str, tz: ZoneInfo) -> list[str]:
    return [
        f"member {m.id}  code {m.code}  status {m.status}"
        + (f" (merged into {m.merged_into_id})" if m.merged_into_id else ""),
        f"tier {m.tier}  growth {m.growth}  points {m.points_balance}  debt {m.points_debt}",
        f"channel {m.channel or '-'}  referred by {m.referred_by_id or '-'}"
        f"  birthday {m.birthday or '-'}  mobile {mobile or '-'}",
        f"joined {_when(m.created_at, tz)}  last active {_when(m.last_active_at, tz)}",
    ]


def _section(title: str, lines: list[str]) -> list[str]:
    return [f"{title}:", *(f"  {line}" for line in lines)] if lines else [f"{title}: none"]


def _identity(row: dict[str, Any], tz: ZoneInfo, mobile: str) -> str:
    value = row["value"]
    if row["kind"] == "mobile_hash":  # the value is a keyed hash: show the number masked
        value = mobile or f"hash {value[:12]}…"
    line = f"{row['kind']:<22} app={row['app'] or '-':<20} {value}"
    if row["kind"] != "oa_openid":
        return line
    state = "followed" if row["followed"] else "not followed"
    return (
        f"{line}  {state}  followed_at={_when(row['followed_at'], tz)}"
        f"  unfollowed_at={_when(row['unfollowed_at'], tz)}"
    )


def _entry(row: dict[str, Any], tz: ZoneInfo) -> str:
    return (
        f"#{row['id']:<8} {_when(row['created_at'], tz)}  {row['kind']:<8} {row['amount']:>+8}"
        f"  {row['reason']}  ({row['source']}{' ' + row['ref'] if row['ref'] else ''})"
    )


def _lot(row: dict[str, Any], tz: ZoneInfo) -> str:
    return (
        f"lot {row['id']:<8} remaining {row['remaining']:>8} of {row['amount']:<8}"
        f" expires {_when(row['expires_at'], tz)}"
    )


def _tag(row: dict[str, Any]) -> str:
    by = f" by {row['set_by']}" if row["set_by"] else ""
    return f"{row['tag__group__name']}/{row['tag__name']}  ({row['source']}{by})"


def _staff_tag(row: dict[str, Any]) -> str:
    by = f" by {row['set_by']}" if row["set_by"] else ""
    return f"{row['group']}/{row['name']}  ({row['source']}{by}, on {row['staff']})"


def _consent(row: dict[str, Any], tz: ZoneInfo) -> str:
    granted = "granted" if row["granted"] else "withdrawn"
    return (
        f"{row['purpose']:<16} {granted:<9} {_when(row['at'], tz)}"
        f"  channel={row['channel'] or '-'}  text={row['text_version'] or '-'}"
    )


async def _notify_adjusted(
    settings: Settings, member_id: int, key: str, result: points.LedgerResult
) -> None:
    """The member's service notice (an outbox row; the server's sender sends it)."""
    from bot.app import build_services

    services = build_services(settings)
    variables = {"delta": result.amount, "balance": result.balance, "debt": result.debt}
    try:
        outcome = await services.notify.notify(
            member_id, "points_changed", variables, key=f"points:{key}"
        )
    finally:
        await services.cache.close()
    print(f"notice: {outcome.channel}" + (f" ({outcome.reason})" if outcome.reason else ""))


async def adjust_points_members(settings: Settings, args: argparse.Namespace) -> int:
    """Correct a member's points by ``delta`` with a reason; audited, idempotent by key."""
    from bot.cli import CliError

    reason = args.reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise CliError(f"--reason is required (1 to {MAX_REASON} characters)")
    if not 0 < len(args.actor) <= MAX_ACTOR:
        raise CliError(f"--actor must be 1 to {MAX_ACTOR} characters")
    member = await _member(settings, args)
    key = args.key or operator.new_key()
    try:
        result = await operator.adjust_points(
            member.id,
            args.delta,
            reason=reason,
            actor=args.actor,
            key=key,
            now=BusinessClock(settings.tz).now(),
            tz=settings.tz,
        )
    except (points.PointsError, ValueError) as exc:
        raise CliError(f"adjust refused: {exc}") from None
    again = " (already applied under this key; nothing changed)" if result.duplicate else ""
    if not result.duplicate and not args.silent:
        await _notify_adjusted(settings, member.id, key, result)
    print(
        f"member {member.code}: adjusted {result.amount:+d}{again}; "
        f"balance {result.balance}, debt {result.debt}; key {key}"
    )
    return 0


def _progress(done: int, total: int) -> None:
    """``\r  12,000/100,000 rows`` on stderr while running (TTY only), always at the end."""
    final = done >= total
    if final or sys.stderr.isatty():
        print(f"\r  {done:,}/{total:,} rows", end="\n" if final else "", file=sys.stderr)
        sys.stderr.flush()


async def import_members(settings: Settings, args: argparse.Namespace) -> int:
    """Import members from CSV; exit 1 when rows were rejected (see ``--rejects``)."""
    from bot.cli import CliError, resolve_config_path

    if not 0 < len(args.actor) <= MAX_ACTOR:
        raise CliError(f"--actor must be 1 to {MAX_ACTOR} characters")
    vault = _vault(settings)
    try:
        vault.require()
    except MissingKey as exc:
        path = resolve_config_path(args.config)
        raise ConfigError(path, exc.key, f"{exc.reason}; needed to import mobiles") from None
    source = Path(args.file)
    try:
        data = await asyncio.to_thread(source.read_bytes)
    except OSError as exc:
        raise CliError(f"cannot read {source}: {exc.strerror}") from None
    try:
        file = member_import.read_csv(data)
    except member_import.CsvProblem as exc:
        raise CliError(f"{source}: {exc}") from None
    account = args.account or next(iter(settings.accounts), "")
    if account and account not in settings.accounts:
        raise CliError(f"no Official Account named {account!r} in the settings")
    appid = settings.accounts[account].appid if account else ""
    now = BusinessClock(settings.tz).now()
    parser = member_import.RowParser(vault, settings.membership, settings.tz, now, appid)
    importer = member_import.Importer(parser, args.actor, source.name, dry_run=args.dry_run)
    summary = await importer.run(file, progress=_progress)
    line = member_import.summary_line(summary, dry_run=args.dry_run)
    if args.rejects:  # written even when empty, so an old file never misleads
        text = member_import.rejects_csv(file.headers, summary.rejected)
        try:
            await asyncio.to_thread(Path(args.rejects).write_text, text, encoding="utf-8-sig")
        except OSError as exc:
            raise CliError(f"{line}; cannot write {args.rejects}: {exc.strerror}") from None
        line += f"; rejects in {args.rejects}" if summary.rejected else ""
    elif summary.rejected:
        line += "; --rejects FILE writes them with reasons"
    print(line)
    return 1 if summary.rejected else 0


async def _services_for(settings: Settings) -> Any:
    """Services for a CLI command (its cache is closed by the caller)."""
    from bot.app import build_services

    return build_services(settings)


async def merge_members(settings: Settings, args: argparse.Namespace) -> int:
    """Merge the member ``merged`` into ``survivor`` (both by code); audited."""
    from bot.cli import CliError
    from bot.services import merge

    if not 0 < len(args.actor) <= MAX_ACTOR:
        raise CliError(f"--actor must be 1 to {MAX_ACTOR} characters")
    reason = args.reason.strip()[:MAX_REASON]
    found = {}
    for ref in (args.survivor, args.merged):
        member = await Member.get_or_none(code=ref)
        if member is None:
            raise CliError(f"no member has code {ref!r}")
        found[ref] = member
    survivor, merged = found[args.survivor], found[args.merged]
    services = await _services_for(settings)
    try:
        result = await merge.merge_members(
            survivor.id,
            merged.id,
            actor=args.actor,
            reason=reason,
            now=BusinessClock(settings.tz).now(),
            services=services,
        )
    except merge.MergeRefused as exc:
        raise CliError(f"merge refused: {exc.reason}") from None
    finally:
        await services.cache.close()
    moved = sum(result.moved.values())
    kept = sum(result.kept.values())
    print(
        f"merge {result.merge_id}: {merged.code} into {survivor.code}; "
        f"{moved} rows moved, {kept} kept with {merged.code}"
    )
    return 0


async def unmerge_members(settings: Settings, args: argparse.Namespace) -> int:
    """Undo a merge: the recorded rows and fields back, points owed re-allocated; audited."""
    from bot.cli import CliError
    from bot.services import merge

    if not 0 < len(args.actor) <= MAX_ACTOR:
        raise CliError(f"--actor must be 1 to {MAX_ACTOR} characters")
    services = await _services_for(settings)
    try:
        result = await merge.unmerge(
            args.merge_id, actor=args.actor, now=BusinessClock(settings.tz).now(), services=services
        )
    except merge.MergeRefused as exc:
        raise CliError(f"unmerge refused: {exc.reason}") from None
    finally:
        await services.cache.close()
    print(
        f"merge {result.merge_id} undone: {sum(result.moved.values())} rows back with member "
        f"{result.merged_id}; {result.reallocated} points re-allocated"
    )
    return 0


async def merge_requests_members(settings: Settings, args: argparse.Namespace) -> int:
    """List merge requests (``--status``), or approve / reject one; decisions audited."""
    from bot.cli import CliError
    from bot.services import merge_requests

    now = BusinessClock(settings.tz).now()
    action = getattr(args, "request_action", None)
    if action is None:
        status = None if args.status == "all" else args.status
        rows = await merge_requests.listed(status)
        for line in render_requests(rows, _vault(settings), now):
            print(line)
        return 0
    if not 0 < len(args.actor) <= MAX_ACTOR:
        raise CliError(f"--actor must be 1 to {MAX_ACTOR} characters")
    try:
        if action == "reject":
            reason = args.reason.strip()
            if not reason or len(reason) > MAX_REASON:
                raise CliError(f"--reason is required (1 to {MAX_REASON} characters)")
            await merge_requests.reject(args.request, actor=args.actor, reason=reason, now=now)
            print(f"merge request {args.request}: rejected")
            return 0
        merge_id = await _approve(settings, args.request, args.actor, now)
    except merge_requests.RequestError as exc:
        raise CliError(str(exc)) from None
    print(f"merge request {args.request}: approved" + (f"; merge {merge_id}" if merge_id else ""))
    return 0


async def _approve(settings: Settings, request_id: int, actor: str, now: datetime) -> int | None:
    from bot.app import build_services
    from bot.cli import CliError
    from bot.services import merge_requests

    merger = merge_requests.engine()
    services = build_services(settings)
    try:
        return await merge_requests.approve(
            request_id, actor=actor, now=now, merger=merger, services=services
        )
    except merge_requests.RequestError:
        raise
    except Exception as exc:  # MergeRefused names its reason; nothing moved
        raise CliError(f"merge refused: {exc}") from None
    finally:
        await services.cache.close()


def render_requests(rows: list[dict[str, Any]], vault: MobileVault, now: datetime) -> list[str]:
    """One line per request: id, status, masked mobile, both member codes, age, reason."""
    if not rows:
        return ["no merge requests"]
    return [
        f"#{r['id']:<6} {r['status']:<9} {_request_mobile(r, vault):<12}"
        f" member {r['member_code']} <- holder {r['holder_code']}"
        f"  age {_age(now - r['created_at'])}  {r['reason']}"
        + (f"  (by {r['decided_by']})" if r["decided_by"] else "")
        for r in rows
    ]


def _request_mobile(row: dict[str, Any], vault: MobileVault) -> str:
    cipher = row.get("holder_cipher")
    if not cipher:
        return "-"
    try:
        return mask(vault.decrypt(str(cipher)))
    except (MissingKey, ValueError, PiiError):
        return "(hidden)"


def _age(delta: timedelta) -> str:
    minutes = max(int(delta.total_seconds() // 60), 0)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    return f"{hours}h{minutes}m" if hours else f"{minutes}m"


EXPORT_ACTION = "member.export"


async def export_members(settings: Settings, args: argparse.Namespace) -> int:
    """Write the member's data as JSON (stdout, or ``--out``); audited ``member.export``."""
    import asyncio
    import json
    import sys
    from pathlib import Path

    from bot.cli import CliError
    from bot.services.pii import BadToken
    from storage.repos import audit_log, member_export

    if not 0 < len(args.actor) <= MAX_ACTOR:
        raise CliError(f"--actor must be 1 to {MAX_ACTOR} characters")
    member = await _member(settings, args)
    number = ""
    if member.mobile_cipher:
        try:
            number = _vault(settings).decrypt(member.mobile_cipher)
        except MissingKey as exc:
            from bot.cli import resolve_config_path

            path = resolve_config_path(args.config)
            raise ConfigError(path, exc.key, f"{exc.reason}; needed to export the mobile") from None
        except BadToken:
            raise CliError(
                "the member's mobile does not decrypt under the configured key"
            ) from None
    data = await member_export.member_data(member.id, number)
    document = {
        "member": {"code": member.code, "status": member.status, "mobile": number},
        "tags": await member_export.tag_names(member.id),
        "data": data,
    }
    text = json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True)
    rows = sum(len(v) for v in data.values())
    if args.out:  # written before the audit row: a failed write exports nothing
        try:
            await asyncio.to_thread(Path(args.out).write_text, text + "\n", encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot write {args.out}: {exc.strerror}") from None
    async with audit_log.atomic():
        await audit_log.record(
            args.actor,
            EXPORT_ACTION,
            f"member:{member.id}",
            {"rows": rows, "out": "file" if args.out else "stdout"},
            BusinessClock(settings.tz).now(),
        )
    if args.out:
        print(f"member {member.code}: exported {rows} rows to {args.out}")
    else:
        sys.stdout.write(text + "\n")
    return 0
