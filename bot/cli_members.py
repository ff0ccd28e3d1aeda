"""``python -m bot members show|adjust-points``: an operator's view and corrections."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.clock import BusinessClock
from bot.config import ConfigError, Settings
from bot.services import member_profile, operator, points
from bot.services.pii import MissingKey, MobileVault, mask, normalize
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
        *_section("consent", [_consent(c, tz) for c in profile.consents]),
    ]


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
