"""Importing a brand's existing members from CSV (``python -m bot members import``).

Each row is validated on its own (a bad row is rejected with a reason, the others go
on), then written in batches (``storage.repos.member_import``): the member, its
identities (``mobile_hash``, ``legacy_code``, ``oa_openid``, ``unionid``), the opening
balance as a keyed ledger earning (``import:member:<row key>:points``, expiring by the
default rule) and the opening growth as a keyed growth entry. The row key is the legacy
member code when there is one, else the mobile number's keyed hash, so a second run of
the same file imports nothing and reports every row as already a member.

Mobile numbers are stored only as AES-GCM ciphertext and keyed HMAC (``bot.services.pii``);
messages never show one unmasked.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from tortoise.exceptions import IntegrityError

from bot.config_program import MembershipSettings
from bot.services import birthday as birthdays
from bot.services.pii import InvalidMobile, MobileVault, mask
from bot.services.points import lot_expiry
from storage.models.members import LEGACY_CODE, MOBILE_HASH, OA_OPENID, UNIONID
from storage.repos import member_import as repo
from storage.repos.member_import import ImportRow
from storage.repos.members import new_member_code

HEADERS = (
    "mobile",
    "member_code",
    "name",
    "birthday",
    "tier",
    "points",
    "growth",
    "joined_at",
    "channel",
    "openid",
    "unionid",
)
DEFAULT_CHANNEL = "import"
BATCH = 1000
ANALYZE_FROM = 4  # batches: a small import leaves the planner's statistics alone
MAX_POINTS = 10**12
_LEGACY = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_OPENID = re.compile(r"[A-Za-z0-9_\-]{6,64}")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CODE_RETRIES = 5

Progress = Callable[[int, int], None]


class CsvProblem(ValueError):
    """The file as a whole cannot be imported (encoding, headers)."""


class RowRejected(ValueError):
    """One row cannot be imported: a short reason (the summary's category) and detail."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Rejected:
    """A rejected row: its line in the file, the original cells and why."""

    line: int
    cells: dict[str, str]
    reason: str
    detail: str = ""

    @property
    def text(self) -> str:
        """The reason column of the rejects file."""
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


@dataclass
class ImportSummary:
    """What a run did: rows read, imported, already members, rejected (with reasons)."""

    rows: int = 0
    imported: int = 0
    duplicates: int = 0
    points: int = 0
    growth: int = 0
    rejected: list[Rejected] = field(default_factory=list)

    def reasons(self) -> Counter[str]:
        """Rejected rows per reason."""
        return Counter(r.reason for r in self.rejected)


@dataclass(frozen=True, slots=True)
class CsvFile:
    """The file's headers as written and its rows (line number, cells by header)."""

    headers: list[str]
    rows: list[tuple[int, dict[str, str]]]


def read_csv(data: bytes) -> CsvFile:
    """Parse UTF-8 CSV (a BOM is fine); headers are checked against ``HEADERS``."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvProblem(f"not UTF-8 (byte {exc.start}); save the file as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header_row = next(reader, None)
    if header_row is None:
        raise CsvProblem("the file is empty (a header line is required)")
    headers = [h.strip() for h in header_row]
    names = [h.lower() for h in headers]
    unknown = [h for h, n in zip(headers, names, strict=True) if n not in HEADERS]
    if unknown:
        raise CsvProblem(f"unknown column {unknown[0]!r}; columns: {', '.join(HEADERS)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise CsvProblem(f"column {repeated[0]!r} appears twice")
    if "mobile" not in names and "member_code" not in names:
        raise CsvProblem("a mobile or member_code column is required")
    rows: list[tuple[int, dict[str, str]]] = []
    for cells in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        values = dict(zip(headers, cells, strict=False))
        if len(cells) != len(headers):
            values = {h: (cells[i] if i < len(cells) else "") for i, h in enumerate(headers)}
            values["__cells__"] = str(len(cells))
        rows.append((line, values))
    return CsvFile(headers, rows)


class RowParser:
    """Validates rows one by one and remembers keys seen earlier in the file."""

    def __init__(
        self,
        vault: MobileVault,
        membership: MembershipSettings,
        tz: ZoneInfo,
        now: datetime,
        appid: str = "",
    ) -> None:
        self.vault = vault
        self.membership = membership
        # a tier by its code or its display name (金卡), as legacy exports write it
        self.tiers = {t.code: t.code for t in membership.tiers}
        self.tiers.update({t.name: t.code for t in membership.tiers})
        self.tz = tz
        self.now = now
        self.today = now.astimezone(tz).date()
        self.appid = appid
        self._seen: dict[tuple[str, str], int] = {}
        self._codes: set[str] = set()

    def parse(self, line: int, raw: dict[str, str]) -> ImportRow:
        """The row ready to write; RowRejected with the first problem found."""
        if "__cells__" in raw:
            raise RowRejected("bad row", f"{raw['__cells__']} cells, expected as many as headers")
        cells = {k.lower(): v.strip() for k, v in raw.items()}
        identities: list[tuple[str, str, str]] = []
        cipher = digest = None
        if cells.get("mobile"):
            try:
                number = self.vault.normalize(cells["mobile"])
            except InvalidMobile:
                raise RowRejected("bad mobile", mask(cells["mobile"])) from None
            cipher, digest = self.vault.encrypt(number), self.vault.lookup_hash(number)
            identities.append((MOBILE_HASH, "", digest))
        legacy = cells.get("member_code", "")
        if legacy:
            if not _LEGACY.fullmatch(legacy):
                raise RowRejected("bad member_code", "1 to 64 of A-Z a-z 0-9 _ . -")
            identities.append((LEGACY_CODE, "", legacy))
        if not identities:
            raise RowRejected("no mobile or member_code")
        identities.extend(self._platform_ids(cells))
        born = self._birthday(cells.get("birthday", ""))
        growth = _amount(cells.get("growth", ""), "growth")
        given = cells.get("tier", "")
        tier = self.tiers.get(given) or self.tiers.get(given.lower(), "")
        if given and not tier:
            codes = ", ".join(t.code for t in self.membership.tiers)
            raise RowRejected("unknown tier", f"{given!r}; configured: {codes}")
        row = ImportRow(
            line=line,
            row_key=f"code:{legacy}" if legacy else f"mobile:{digest}",
            code="",  # drawn when the row is written (not for rows already imported)
            tier=tier or self.membership.tier_for_growth(growth).code,
            joined_at=self._joined(cells.get("joined_at", "")),
            channel=(cells.get("channel") or DEFAULT_CHANNEL)[:64],
            points=_amount(cells.get("points", ""), "points"),
            growth=growth,
            birthday=born,
            birth_md=birthdays.month_day(born) if born else None,
            mobile_cipher=cipher,
            mobile_hash=digest,
            identities=identities,
        )
        self._remember(line, identities)
        return row

    def new_code(self, row: ImportRow) -> None:
        """Draw another public code for a row (after a collision)."""
        row.code = self._new_code()

    def _platform_ids(self, cells: dict[str, str]) -> list[tuple[str, str, str]]:
        found: list[tuple[str, str, str]] = []
        if cells.get("openid"):
            if not self.appid:
                raise RowRejected("bad openid", "no Official Account configured for openids")
            if not _OPENID.fullmatch(cells["openid"]):
                raise RowRejected("bad openid")
            found.append((OA_OPENID, self.appid, cells["openid"]))
        if cells.get("unionid"):
            if not _OPENID.fullmatch(cells["unionid"]):
                raise RowRejected("bad unionid")
            found.append((UNIONID, "", cells["unionid"]))
        return found

    def _birthday(self, text: str) -> date | None:
        if not text:
            return None
        if not _ISO_DATE.fullmatch(text):
            raise RowRejected("bad birthday", "write YYYY-MM-DD")
        try:
            return birthdays.parse(text, self.today)
        except birthdays.InvalidBirthday as exc:
            raise RowRejected("bad birthday", str(exc)) from None

    def _joined(self, text: str) -> datetime:
        if not text:
            return self.now
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise RowRejected("bad joined_at", "write YYYY-MM-DD or an ISO datetime") from None
        if _ISO_DATE.fullmatch(text):
            parsed = datetime.combine(parsed.date(), time(), self.tz)
        elif parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=self.tz)
        if parsed > self.now:
            raise RowRejected("bad joined_at", "in the future")
        return parsed

    def _remember(self, line: int, identities: list[tuple[str, str, str]]) -> None:
        for kind, _, value in identities:
            first = self._seen.get((kind, value))
            if first is not None:
                label = {MOBILE_HASH: "mobile", LEGACY_CODE: "member_code"}.get(kind, kind)
                raise RowRejected("duplicate in file", f"same {label} as line {first}")
        for kind, _, value in identities:
            self._seen[(kind, value)] = line

    def _new_code(self) -> str:
        while (code := new_member_code()) in self._codes:
            pass
        self._codes.add(code)
        return code


def _amount(text: str, name: str) -> int:
    if not text:
        return 0
    try:
        value = int(text.replace(",", ""))
    except ValueError:
        raise RowRejected(f"bad {name}", f"{text!r} is not a whole number") from None
    if value < 0:
        raise RowRejected(f"negative {name}", text)
    if value > MAX_POINTS:
        raise RowRejected(f"bad {name}", "too large")
    return value


@dataclass(frozen=True, slots=True)
class Importer:
    """Runs an import: validate every row, then write the valid ones in batches."""

    parser: RowParser
    actor: str
    target: str
    dry_run: bool = False
    batch: int = BATCH

    async def run(self, file: CsvFile, progress: Progress | None = None) -> ImportSummary:
        """Import the file's rows; the summary (the rejects are in ``summary.rejected``)."""
        summary = ImportSummary(rows=len(file.rows))
        valid: list[ImportRow] = []
        for line, cells in file.rows:
            try:
                valid.append(self.parser.parse(line, cells))
            except RowRejected as exc:
                summary.rejected.append(Rejected(line, cells, exc.reason, exc.detail))
        done = len(summary.rejected)
        expires_at = lot_expiry(self.parser.now, self.parser.tz)
        analysed_at = ANALYZE_FROM
        for number, start in enumerate(range(0, len(valid), self.batch), 1):
            chunk = valid[start : start + self.batch]
            await self._write(chunk, summary, expires_at)
            if number == analysed_at and not self.dry_run:  # as the tables double
                await repo.refresh_statistics()
                analysed_at *= 2
            done += len(chunk)
            if progress is not None and done < summary.rows:
                progress(done, summary.rows)
        if progress is not None:
            progress(summary.rows, summary.rows)
        summary.rejected.sort(key=lambda r: r.line)
        return summary

    async def _write(
        self, chunk: Sequence[ImportRow], summary: ImportSummary, expires_at: datetime
    ) -> None:
        held = await repo.existing(chunk)
        fresh = [row for row in chunk if row.line not in held]
        summary.duplicates += len(chunk) - len(fresh)
        if self.dry_run:
            self._count(fresh, summary)
            return
        for row in fresh:
            self.parser.new_code(row)
        try:
            await self._insert(fresh, expires_at)
        except IntegrityError:  # a key taken meanwhile, or a code collision: row by row
            for row in fresh:
                await self._write_one(row, summary, expires_at)
            return
        self._count(fresh, summary)

    async def _write_one(
        self, row: ImportRow, summary: ImportSummary, expires_at: datetime
    ) -> None:
        for _ in range(_CODE_RETRIES):
            try:
                await self._insert([row], expires_at)
            except IntegrityError:
                if await repo.existing([row]):
                    summary.duplicates += 1
                    return
                self.parser.new_code(row)  # nothing holds its keys: the code collided
            else:
                self._count([row], summary)
                return
        raise RuntimeError(f"line {row.line}: could not draw a unique member code")

    async def _insert(self, rows: Sequence[ImportRow], expires_at: datetime) -> None:
        await repo.insert(
            rows, now=self.parser.now, expires_at=expires_at, actor=self.actor, target=self.target
        )

    @staticmethod
    def _count(rows: Sequence[ImportRow], summary: ImportSummary) -> None:
        summary.imported += len(rows)
        summary.points += sum(row.points for row in rows)
        summary.growth += sum(row.growth for row in rows)


def rejects_csv(headers: Sequence[str], rejected: Sequence[Rejected]) -> str:
    """The rejects file: the original columns, then ``line`` and ``reason``."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([*headers, "line", "reason"])
    for row in rejected:
        writer.writerow([*(row.cells.get(h, "") for h in headers), row.line, row.text])
    return out.getvalue()


def summary_line(summary: ImportSummary, *, dry_run: bool = False) -> str:
    """One line: imported, already members, rejected by reason."""
    verb = "would import" if dry_run else "imported"
    text = (
        f"{summary.rows:,} rows: {verb} {summary.imported:,} members"
        f" (points {summary.points:,}, growth {summary.growth:,});"
        f" {summary.duplicates:,} already members; {len(summary.rejected):,} rejected"
    )
    reasons = summary.reasons()
    if reasons:
        text += " (" + ", ".join(f"{r} {n:,}" for r, n in sorted(reasons.items())) + ")"
    return text
