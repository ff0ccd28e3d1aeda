"""Import orders from CSV: validated rows, batched writes, idempotent re-runs.

Columns (a header row; names as below, any order):

- ``external_id`` (required): the order's id, unique across every channel.
- the member, exactly one per row of ``member_code``, ``openid``, ``unionid``, ``mobile``
  (any subset of these columns may be present); ``account`` names the Official Account of
  an openid (default: the first configured).
- ``amount_fen`` (integer fen) or ``amount`` (yuan with at most 2 decimals): one per row.
- ``channel``, ``store`` (optional).
- ``paid_at`` (required): ISO-8601 with a UTC offset, ``2026-06-10T09:30:00+08:00``.

An order already recorded with the same content counts as a duplicate (a re-run imports
nothing twice); with other content, or repeating an earlier row of the file with other
content, it is rejected. Rows are priced exactly like ``POST /api/orders``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation

from bot.services import points
from bot.services.orders import (
    MAX_ID,
    MemberLookup,
    NewOrder,
    OrderConflict,
    OrderError,
    OrderService,
    UnknownAccount,
    UnknownMember,
    fingerprint,
    order_key,
)
from bot.services.pii import InvalidMobile
from storage.models import Identity, Member, Order
from storage.models.members import MOBILE_HASH
from storage.repos import order_import as repo
from storage.repos import orders as orders_repo
from storage.repos.orders import Holder

__all__ = ["COLUMNS", "BadHeader", "ImportSummary", "OrderImporter", "check_header"]

MEMBER_COLUMNS = ("member_code", "openid", "unionid", "mobile")
COLUMNS = (
    "external_id",
    *MEMBER_COLUMNS,
    "account",
    "amount_fen",
    "amount",
    "channel",
    "store",
    "paid_at",
)
_YUAN = re.compile(r"\d{1,10}(\.\d{1,2})?")
_FEN = re.compile(r"\d{1,12}")


class BadHeader(ValueError):
    """The file's header lacks a required column or names an unknown one."""


def check_header(header: Iterable[str]) -> list[str]:
    """The header's column names; BadHeader when it cannot describe orders."""
    names = [name.strip() for name in header]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise BadHeader(f"unknown column {unknown[0]!r} (columns: {', '.join(COLUMNS)})")
    for required in ("external_id", "paid_at"):
        if required not in names:
            raise BadHeader(f"missing column {required!r}")
    if not {"amount_fen", "amount"} & set(names):
        raise BadHeader("needs an amount_fen or amount column")
    if not set(MEMBER_COLUMNS) & set(names):
        raise BadHeader(f"needs a member column ({', '.join(MEMBER_COLUMNS)})")
    return names


@dataclass(slots=True)
class ImportSummary:
    """Rows imported, already there (duplicates) and rejected, with the reasons."""

    imported: int = 0
    duplicates: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    points: int = 0

    @property
    def rows(self) -> int:
        """Every row seen."""
        return self.imported + self.duplicates + self.rejected


class _Reject(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


Row = Mapping[str, str | None]
RejectSink = Callable[[Row, str], None]
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class _Parsed:
    row: Row
    order: NewOrder
    fingerprint: str


def parse(service: OrderService, row: Row) -> _Parsed:
    """One CSV row as an order and its fingerprint; _Reject with a reason code."""
    ext = _cell(row, "external_id")
    if not ext:
        raise _Reject("missing_external_id")
    if len(ext) > MAX_ID:
        raise _Reject("external_id_too_long")
    given = [(name, _cell(row, name)) for name in MEMBER_COLUMNS if _cell(row, name)]
    if len(given) != 1:
        raise _Reject("member_reference" if given else "missing_member")
    kind, value = given[0]
    account = _cell(row, "account")
    if account and kind != "openid":
        raise _Reject("member_reference")
    lookup = MemberLookup(kind, value, account)  # type: ignore[arg-type]
    order = NewOrder(
        external_id=ext,
        member=lookup,
        amount_fen=_amount(row),
        paid_at=_paid_at(_cell(row, "paid_at")),
        channel=_cell(row, "channel"),
        store=_cell(row, "store"),
    )
    if len(order.channel) > 32 or len(order.store) > 64:
        raise _Reject("field_too_long")
    try:
        ref = service.member_ref(lookup)
    except UnknownAccount:
        raise _Reject("unknown_account") from None
    except InvalidMobile:
        raise _Reject("invalid_mobile") from None
    print_ = fingerprint(ref, order.amount_fen, order.channel, order.store, order.paid_at)
    return _Parsed(row, order, print_)


def _cell(row: Row, name: str) -> str:
    return (row.get(name) or "").strip()


def _amount(row: Row) -> int:
    fen, yuan = _cell(row, "amount_fen"), _cell(row, "amount")
    if bool(fen) == bool(yuan):
        raise _Reject("bad_amount")
    if fen:
        if not _FEN.fullmatch(fen):
            raise _Reject("bad_amount")
        value = int(fen)
    else:
        if not _YUAN.fullmatch(yuan):
            raise _Reject("bad_amount")
        try:
            value = int(Decimal(yuan) * 100)
        except InvalidOperation:
            raise _Reject("bad_amount") from None
    if value <= 0:
        raise _Reject("bad_amount")
    return value


def _paid_at(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _Reject("bad_paid_at") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise _Reject("bad_paid_at")
    return moment


class OrderImporter:
    """Imports parsed rows in batches through ``storage.repos.order_import``."""

    def __init__(
        self,
        service: OrderService,
        *,
        batch: int = 1000,
        actor: str = "import",
        notify_tiers: bool = False,
    ) -> None:
        self.service = service
        self.batch = batch
        self.actor = actor
        # tier notices for upgrades an import causes: off unless asked (history is old news)
        self.notify_tiers = notify_tiers
        self._seen: dict[str, str] = {}  # external id → fingerprint, across the whole file

    async def run(
        self, rows: Iterable[Row], reject: RejectSink, progress: Progress | None = None
    ) -> ImportSummary:
        """Import every row; rejected rows go to ``reject`` with their reason."""
        summary = ImportSummary()
        chunk: list[Row] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= self.batch:
                await self._chunk(chunk, summary, reject)
                chunk = []
                if progress is not None:
                    progress(summary.rows)
        if chunk:
            await self._chunk(chunk, summary, reject)
        if progress is not None:
            progress(summary.rows)
        return summary

    async def _chunk(self, rows: list[Row], summary: ImportSummary, reject: RejectSink) -> None:
        fresh: list[_Parsed] = []
        batch_ids: set[str] = set()
        for row in rows:
            try:
                parsed = parse(self.service, row)
            except _Reject as refused:
                _refuse(summary, reject, row, refused.reason)
                continue
            first = self._seen.setdefault(parsed.order.external_id, parsed.fingerprint)
            if first != parsed.fingerprint:
                _refuse(summary, reject, row, "conflicts_with_earlier_row")
            elif parsed.order.external_id in batch_ids:
                summary.duplicates += 1
            else:
                batch_ids.add(parsed.order.external_id)
                fresh.append(parsed)
        fresh = await self._drop_recorded(fresh, summary, reject)
        if fresh:
            await self._write(fresh, summary, reject)

    async def _drop_recorded(
        self, parsed: list[_Parsed], summary: ImportSummary, reject: RejectSink
    ) -> list[_Parsed]:
        ids = [p.order.external_id for p in parsed]
        recorded = dict(
            await Order.filter(external_id__in=ids).values_list("external_id", "fingerprint")
        )
        new = []
        for p in parsed:
            stored = recorded.get(p.order.external_id)
            if stored is None:
                new.append(p)
            elif stored == p.fingerprint:
                summary.duplicates += 1
            else:
                _refuse(summary, reject, p.row, "order_conflict")
        return new

    async def _write(
        self, parsed: list[_Parsed], summary: ImportSummary, reject: RejectSink
    ) -> None:
        now = self.service.clock.now()
        holders = await self._holders([p.order.member for p in parsed], now)
        ready: list[repo.ImportOrder] = []
        for p in parsed:
            holder = holders.get(p.order.member)
            if holder is None:
                _refuse(summary, reject, p.row, "member_not_found")
                continue
            o = p.order
            ready.append(
                repo.ImportOrder(
                    o.external_id, holder.id, holder.code, o.amount_fen, o.channel, o.store,
                    o.paid_at, p.fingerprint,
                )
            )  # fmt: skip
        if not ready:
            return
        rules = repo.BatchRules(
            price=self.service.price,
            raise_tier=self.service.raise_tier,
            key=order_key,
            expires_at=points.lot_expiry(now, self.service.settings.tz),
            actor=self.actor,
        )
        try:
            priced, upgrades = await repo.write_batch(ready, rules, now)
        except repo.BatchClash:
            # someone recorded one of these orders meanwhile: one at a time decides each
            await self._one_by_one(
                [p for p in parsed if p.order.member in holders], summary, reject
            )
            return
        summary.imported += len(ready)
        summary.points += sum(p.points for p in priced)
        for up in upgrades if self.notify_tiers else ():
            await self.service.send_growth_notice(up.member_id, up.growth, up.external_id, now)

    async def _one_by_one(
        self, parsed: list[_Parsed], summary: ImportSummary, reject: RejectSink
    ) -> None:
        for p in parsed:
            try:
                view = await self.service.create(p.order, self.actor, source="import")
            except OrderConflict:
                _refuse(summary, reject, p.row, "order_conflict")
            except UnknownMember:
                _refuse(summary, reject, p.row, "member_not_found")
            except OrderError as error:
                _refuse(summary, reject, p.row, type(error).__name__)
            else:
                if view.duplicate:
                    summary.duplicates += 1
                else:
                    summary.imported += 1
                    summary.points += view.points

    async def _holders(
        self, lookups: list[MemberLookup], now: datetime
    ) -> dict[MemberLookup, Holder]:
        """Members for a batch's references: a few IN queries, unknown mobiles created."""
        found: dict[MemberLookup, int] = {}
        codes = {lk.value.strip().upper(): lk for lk in lookups if lk.kind == "member_code"}
        if codes:
            rows = await Member.filter(code__in=list(codes)).values_list("code", "id")
            for code, member_id in rows:
                found[codes[str(code)]] = int(member_id)
        for kind, identity_kind in (("openid", "oa_openid"), ("unionid", "unionid")):
            await self._by_identity(lookups, kind, identity_kind, found)
        mobiles = {
            self.service.vault.lookup_hash(lk.value): lk for lk in lookups if lk.kind == "mobile"
        }
        if mobiles:
            rows = await Identity.filter(
                kind=MOBILE_HASH, app="", value__in=list(mobiles)
            ).values_list("value", "member_id")
            for digest, member_id in rows:
                found[mobiles[str(digest)]] = int(member_id)
            for digest, lk in mobiles.items():
                if lk not in found:  # a purchase is never lost: the number becomes a member
                    cipher = self.service.vault.encrypt(self.service.vault.normalize(lk.value))
                    made = await orders_repo.create_mobile_member(cipher, digest, now, "import")
                    found[lk] = made.id
        return await _holders_by_id(found)

    async def _by_identity(
        self,
        lookups: list[MemberLookup],
        kind: str,
        identity_kind: str,
        found: dict[MemberLookup, int],
    ) -> None:
        wanted = [lk for lk in lookups if lk.kind == kind]
        if not wanted:
            return
        apps = {lk: self.service.appid(lk.account) if kind == "openid" else "" for lk in wanted}
        rows = await Identity.filter(
            kind=identity_kind, value__in=list({lk.value for lk in wanted})
        ).values_list("app", "value", "member_id")
        held = {(str(app), str(value)): int(member_id) for app, value, member_id in rows}
        any_app = {str(value): int(member_id) for _, value, member_id in rows}
        for lk in wanted:
            member_id = (
                held.get((apps[lk], lk.value)) if kind == "openid" else any_app.get(lk.value)
            )
            if member_id is not None:
                found[lk] = member_id


async def _holders_by_id(found: dict[MemberLookup, int]) -> dict[MemberLookup, Holder]:
    ids = list(set(found.values()))
    rows = await Member.filter(id__in=ids).values_list("id", "code", "tier", "merged_into_id")
    holders: dict[int, Holder] = {}
    for member_id, code, tier, merged_into in rows:
        if merged_into is None:
            holders[int(member_id)] = Holder(int(member_id), str(code), str(tier))
        elif (survivor := await orders_repo.holder_by_id(int(member_id))) is not None:
            holders[int(member_id)] = survivor
    return {lk: holders[mid] for lk, mid in found.items() if mid in holders}


def _refuse(summary: ImportSummary, reject: RejectSink, row: Row, reason: str) -> None:
    summary.rejected += 1
    summary.reasons[reason] += 1
    reject(row, reason)
