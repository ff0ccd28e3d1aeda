"""``python -m bot wecom sync-tags`` against the fake platform: idempotent, exit 2 on failure."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.config import load_settings
from bot.devtools.fake import FakePlatform, create_fake_app
from bot.devtools.fake.wecom_state import CorpTag, TagGroup
from storage.models import Tag
from tests.cli_support import with_db, write_config

WECOM = """
[wecom]
name = "corp"
corp_id = "wx5823bf96d3bd56c7"
agent_id = 218
agent_secret = "agent-secret"
contact_secret = "contact-secret"
token = "QDG6eK"
encoding_aes_key = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
"""


async def test_sync_tags_command(
    tmp_path: Path, db_url: str, aiohttp_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    await asyncio.to_thread(with_db, db_url, lambda: Tag.all().count(), fresh=True)
    platform = FakePlatform.from_settings(load_settings(write_config(tmp_path, db_url, WECOM)))
    group = TagGroup("grp1", "客户等级", 1)
    group.tags = [CorpTag("tag1", "VIP", 1), CorpTag("tag2", "普通", 1, order=1)]
    platform.corp().tag_groups = [group]
    server = await aiohttp_server(create_fake_app(platform))
    url = str(server.make_url("")).rstrip("/")
    config = write_config(tmp_path, db_url, WECOM + f"[api]\nwecom_base_url = '{url}/wecom'\n")
    for _ in range(2):
        assert await asyncio.to_thread(main, ["--config", config, "wecom", "sync-tags"]) == 0
        assert "synced 1 tag groups, 2 tags; 0 marked deleted" in capsys.readouterr().out
    group.tags.pop()
    assert await asyncio.to_thread(main, ["--config", config, "wecom", "sync-tags"]) == 0
    assert "1 marked deleted" in capsys.readouterr().out
    rows = await asyncio.to_thread(
        with_db, db_url, lambda: Tag.all().order_by("id").values_list("name", "deleted")
    )
    assert [tuple(r) for r in rows] == [("VIP", False), ("普通", True)]
    platform.fail("wecom", "cgi-bin/externalcontact/get_corp_tag_list", errcode=60011)
    assert await asyncio.to_thread(main, ["--config", config, "wecom", "sync-tags"]) == 2
    assert "tag sync failed" in capsys.readouterr().err
