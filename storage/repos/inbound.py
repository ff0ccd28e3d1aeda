"""InboundEvent rows: written in small batches off the hot path, read by the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise import connections

from storage.member_data import CLASSIFIED
from storage.models import InboundEvent
from storage.repos import erasure
from storage.timeutil import utc

log = logging.getLogger("storage.inbound")

# Mainland mobile numbers (1[3-9]x xxxx xxxx) are masked before anything is stored. The
# pattern starts with the literal "1" (the regex engine then skips to each "1" instead of
# trying every position: 3x faster on a callback payload); the look-behind after it is
# "no digit before that 1".
_MOBILE = re.compile(r"1(?<!\d1)([3-9]\d)\d{4}(\d{4})(?!\d)")


def mask_mobiles(text: str) -> str:
    """Replace the middle four digits of every mainland mobile number with ****."""
    return _MOBILE.sub(r"1\1****\2", text)


@dataclass(frozen=True, slots=True)
class InboundRecord:
    """What intake knows about a processed callback."""

    dedupe_key: str
    platform: str
    account: str
    kind: str
    sender: str
    member_id: int | None
    outcome: str
    handler_ms: int
    payload: str
    received_at: datetime


class InboundRecorder:
    """Buffers records and writes them with one multi-row insert per flush.

    The dedupe claim in the cache is what makes intake exactly-once; this table is the
    durable history (and seeds the in-process dedupe after a restart), so it need not
    cost a round trip per callback.
    """

    def __init__(
        self, flush_interval: float = 0.05, max_batch: int = 500, max_buffer: int = 100_000
    ) -> None:
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.max_buffer = max_buffer
        self.dropped = 0
        self._buffer: list[InboundRecord] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def add(self, record: InboundRecord) -> None:
        """Queue a record for the next flush."""
        self._buffer.append(record)
        if len(self._buffer) >= self.max_batch:
            self._wakeup.set()

    async def start(self) -> None:
        """Start the background flusher."""
        self._task = asyncio.create_task(self._run(), name="inbound-recorder")

    async def stop(self) -> None:
        """Stop the flusher and write whatever is left.

        The flusher is asked to end, not cancelled: a cancellation inside a flush would
        lose the batch it had taken (seen as missing rows after a stop under load).
        """
        if self._task is not None:
            self._stopping = True
            self._wakeup.set()
            await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval):
                    await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("could not record inbound events; will retry")

    async def flush(self) -> int:
        """Write the buffered records now; returns how many were written."""
        if not self._buffer:
            return 0
        batch, self._buffer = self._buffer, []
        try:
            await _insert_ignoring_duplicates(batch)
        except BaseException:  # a cancellation too: the rows are not lost (nor doubled)
            self._buffer[:0] = batch  # keep them for the next attempt …
            overflow = len(self._buffer) - self.max_buffer
            if overflow > 0:  # … within bounds while the database stays down
                del self._buffer[:overflow]
                self.dropped += overflow
                log.error("inbound history dropped", extra={"count": overflow})
            raise
        return len(batch)


_COLUMNS = (
    "dedupe_key",
    "platform",
    "account",
    "kind",
    "sender",
    "member_id",
    "outcome",
    "handler_ms",
    "payload",
    "received_at",
)


def _insert_sql(postgres: bool) -> str:
    marks = ", ".join(f"${i + 1}" if postgres else "?" for i in range(len(_COLUMNS)))
    columns = ", ".join(_COLUMNS)
    return f"INSERT INTO inbound_event ({columns}) VALUES ({marks}) ON CONFLICT (dedupe_key) DO NOTHING"  # noqa: E501, S608 - constants only; values are bound


_PERSONAL = CLASSIFIED["InboundEvent"].personal

_INSERT = {"postgres": _insert_sql(True), "sqlite": _insert_sql(False)}


async def _insert_ignoring_duplicates(batch: list[InboundRecord]) -> None:
    # One multi-row statement per flush; building ORM objects per row cost more than the
    # insert itself on the hot path (measured with bench/callbacks.py --profile).
    conn = connections.get("default")
    await conn.execute_many(_INSERT[conn.capabilities.dialect], [_values(r) for r in batch])
    await _forget_erased(batch)


async def _forget_erased(batch: list[InboundRecord]) -> None:
    """Erase what this flush wrote for members erased (注销) meanwhile.

    The 注销 conversation itself is recorded after its handler returned, so after the
    erasure. Checking after the insert (not before) leaves no gap: either this check
    sees the member erased, or the erasure's second pass, which runs after the member
    was marked, sees these rows. One primary-key lookup per flush.
    """
    erased = set(await erasure.erased_among(r.member_id for r in batch if r.member_id))
    if not erased:
        return
    blank = erasure.blank_values(InboundEvent, _PERSONAL)
    for record in batch:
        if record.member_id in erased:
            tokens = erasure.tokens_for([record.sender])
            await InboundEvent.filter(dedupe_key=record.dedupe_key).update(
                dedupe_key=erasure.replace_all(record.dedupe_key, tokens), **blank
            )


def _values(record: InboundRecord) -> list[object]:
    return [
        record.dedupe_key,
        record.platform,
        record.account,
        record.kind[:96],
        record.sender[:128],
        record.member_id,
        record.outcome,
        record.handler_ms,
        mask_mobiles(record.payload),
        record.received_at,
    ]


async def recent_keys(since: datetime) -> list[str]:
    """Dedupe keys recorded since a time (to re-seed an in-process dedupe on start)."""
    rows = await InboundEvent.filter(received_at__gte=utc(since)).values_list(
        "dedupe_key", flat=True
    )
    return [str(k) for k in rows]


async def get_event(event_id: int) -> InboundEvent | None:
    """One recorded event by id."""
    return await InboundEvent.get_or_none(id=event_id)


async def list_events(limit: int = 20) -> list[InboundEvent]:
    """The latest recorded events."""
    return await InboundEvent.all().order_by("-id").limit(limit)


async def purge_before(cutoff: datetime) -> int:
    """Delete events received before the cutoff; returns how many."""
    return await InboundEvent.filter(received_at__lt=utc(cutoff)).delete()


def retention_cutoff(now: datetime, days: int) -> datetime:
    """The oldest received_at to keep."""
    return now - timedelta(days=days)
