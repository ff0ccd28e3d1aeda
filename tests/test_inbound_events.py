"""InboundEvent: masked payloads, purge, replay under the original key, restart dedupe."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.appkeys import RECORDER
from bot.cli import main
from storage import db
from storage.models import InboundEvent
from storage.repos.inbound import mask_mobiles, purge_before
from tests.conftest import AppMaker, base_config, make_settings
from tests.fakes import FakeWall
from tests.helpers import oa_text, post_oa


def test_mask_mobiles() -> None:
    assert mask_mobiles("绑定手机 13800138000 ok") == "绑定手机 138****8000 ok"
    assert mask_mobiles("order 9913800138000123") == "order 9913800138000123"
    assert mask_mobiles("113800138000 13800138000") == "113800138000 138****8000"
    assert mask_mobiles("13800138000,15011112222") == "138****8000,150****2222"


_SPEC = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")  # the rule, written plainly


@given(st.text(alphabet="0123456789 1a号", max_size=60))
def test_mask_mobiles_follows_the_plain_rule(text: str) -> None:
    assert mask_mobiles(text) == _SPEC.sub(r"\1****\2", text)


async def test_recorded_payload_masks_mobile_numbers(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    await post_oa(client, settings, oa_text("绑定手机 13912345678"), timestamp=int(wall.now))
    await client.app[RECORDER].flush()
    row = await InboundEvent.get()
    assert "13912345678" not in row.payload
    assert "139****5678" in row.payload


async def test_purge_removes_only_old_rows(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    await post_oa(client, settings, oa_text("帮助"), timestamp=int(wall.now))
    await client.app[RECORDER].flush()
    received = (await InboundEvent.get()).received_at
    assert await purge_before(received) == 0
    assert await purge_before(received + timedelta(seconds=1)) == 1


async def test_restart_remembers_recent_keys_on_the_in_process_cache(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    from storage.cache import MemoryCache

    settings = make_settings(base_config(database))
    message = oa_text("帮助", msg_id=5151)
    first = await make_client(settings, cache=MemoryCache())
    assert (await post_oa(first, settings, message, timestamp=int(wall.now))).status == 200
    await first.app[RECORDER].flush()
    await first.close()
    # a new process: fresh in-process cache, seeded from the recorded events on start
    second = await make_client(settings, cache=MemoryCache())
    resp = await post_oa(second, settings, message, timestamp=int(wall.now) + 5)
    assert await resp.text() == "success"
    await second.app[RECORDER].flush()
    assert await InboundEvent.all().count() == 1


def test_cli_list_and_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db_url = f"sqlite://{tmp_path / 'cli.sqlite3'}"
    config = tmp_path / "c.toml"
    config.write_text(
        f"[database]\nurl = '{db_url}'\n"
        "[accounts.brand]\nappid='wx2c2769f8efd9abc2'\ntoken='spamtest'\nmode='plaintext'\n",
        encoding="utf-8",
    )
    assert main(["--config", str(config), "migrate"]) == 0
    row_id = asyncio.run(_seed(db_url))
    capsys.readouterr()
    assert main(["--config", str(config), "events", "list"]) == 0
    listing = capsys.readouterr().out
    assert "oMember1" in listing
    assert "text" in listing
    assert main(["--config", str(config), "events", "replay", str(row_id)]) == 0
    out = capsys.readouterr().out
    assert "under key oa:brand:msg:1" in out
    assert "可用指令" in out
    assert main(["--config", str(config), "events", "replay", "999"]) == 2
    assert "no recorded event with id 999" in capsys.readouterr().err


async def _seed(db_url: str) -> int:
    await db.open_db(db_url)
    try:
        row = await InboundEvent.create(
            dedupe_key="oa:brand:msg:1",
            platform="oa",
            account="brand",
            kind="text",
            sender="oMember1",
            outcome="replied",
            payload=oa_text("帮助", msg_id=1),
            received_at=datetime.now(UTC),
        )
        return int(row.id)
    finally:
        await db.close_db()


async def test_recorder_keeps_rows_while_the_database_is_down_within_bounds() -> None:
    from storage.repos.inbound import InboundRecord, InboundRecorder

    recorder = InboundRecorder(max_buffer=3)  # no database is connected in this test
    for i in range(5):
        recorder.add(
            InboundRecord(
                f"k{i}", "oa", "a", "text", "o", None, "replied", 0, "<xml/>", datetime.now(UTC)
            )
        )
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the ORM raises when down
        await recorder.flush()
    assert recorder.dropped == 2
    with pytest.raises(Exception):  # noqa: B017, PT011
        await recorder.flush()
    assert recorder.dropped == 2  # still three kept for the next attempt


async def test_stopping_during_a_flush_loses_no_rows(database: str) -> None:
    from storage.repos.inbound import InboundRecord, InboundRecorder

    recorder = InboundRecorder(max_batch=100)
    await recorder.start()
    for i in range(300):
        recorder.add(
            InboundRecord(
                f"s{i}", "oa", "a", "text", "o", None, "replied", 0, "<xml/>", datetime.now(UTC)
            )
        )
    await asyncio.sleep(0)  # the flusher wakes and takes the batch into its insert
    async with asyncio.timeout(30):  # a cancelled insert used to hang the next flush
        await recorder.stop()
    assert await InboundEvent.filter(dedupe_key__startswith="s").count() == 300
