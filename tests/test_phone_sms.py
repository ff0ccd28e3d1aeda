"""The SMS side of phone binding: the fake gateway records messages, the fake sender posts
there, and the simulator prints the code the member asked for."""

from __future__ import annotations

import re
import socket
from typing import Any

import aiohttp
import pytest

from bot.app import Overrides, create_app
from bot.appkeys import SERVICES
from bot.config import Settings
from bot.devtools.simulator import Identity, Simulator, format_sms
from bot.services.sms import FakePlatformSms, LogSms, SmsError, make_sms_sender
from tests.conftest import AppMaker, FakeServer, base_config, make_settings
from tests.fakes import FakeWall
from tests.helpers import oa_crypto, oa_text, post_oa, reply_fields
from tests.test_phone_binding import NUMBER, SECURITY

CODE_TEXT = "【会员中心】您的验证码是 042137，5 分钟内有效。如非本人操作，请忽略本短信。"


def test_the_simulator_shows_the_code_of_an_sms() -> None:
    assert format_sms(NUMBER, CODE_TEXT) == "[短信 138****8000] 验证码 042137"
    assert format_sms(NUMBER, "您好") == "[短信 138****8000] 您好"
    assert format_sms(NUMBER, "订单 1234567 已发货") == "[短信 138****8000] 订单 1234567 已发货"


def test_the_provider_follows_the_settings(database: str) -> None:
    assert isinstance(make_sms_sender(make_settings(base_config(database))), LogSms)
    fake = make_sms_sender(
        make_settings(base_config(database), sms={"provider": "fake", "base_url": "http://x/sms/"})
    )
    assert isinstance(fake, FakePlatformSms)
    assert fake.base_url == "http://x/sms"


async def test_the_fake_gateway_records_what_the_fake_sender_posts(fake: FakeServer) -> None:
    sender = FakePlatformSms(f"{fake.url}/sms", 5)
    try:
        await sender.send(NUMBER, CODE_TEXT)
        await sender.send("13900139000", "另一条")
    finally:
        await sender.close()
    [message] = [m for m in fake.platform.world.sms if m.mobile == NUMBER]
    assert message.text == CODE_TEXT
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fake.url}/sms/outbox", params={"mobile": NUMBER}) as resp:
            listed = (await resp.json())["messages"]
        assert [m["text"] for m in listed] == [CODE_TEXT]
        since = {"since": str(listed[0]["seq"])}
        async with session.get(f"{fake.url}/sms/outbox", params=since) as resp:
            assert [m["text"] for m in (await resp.json())["messages"]] == ["另一条"]
        async with session.post(f"{fake.url}/sms/send", json={"mobile": "123"}) as resp:
            assert resp.status == 400


async def test_an_unreachable_gateway_is_an_sms_error() -> None:
    sender = FakePlatformSms("http://127.0.0.1:9/sms", 2)
    try:
        with pytest.raises(SmsError):
            await sender.send(NUMBER, CODE_TEXT)
    finally:
        await sender.close()


async def test_a_bind_request_reaches_the_fake_gateway(
    make_client: AppMaker, wall: FakeWall, database: str, fake: FakeServer
) -> None:
    settings = make_settings(
        base_config(database),
        security=SECURITY,
        sms={"provider": "fake", "base_url": f"{fake.url}/sms"},
    )
    client = await make_client(settings)

    async def say(text: str) -> str:
        wall.advance(1)
        resp = await post_oa(client, settings, oa_text(text), timestamp=int(wall.now))
        await client.app[SERVICES].background.idle()
        return str(reply_fields(oa_crypto(settings), await resp.text())["Content"])

    assert "验证码已发送" in await say(f"绑定手机 {NUMBER}")
    [message] = fake.platform.world.sms
    assert message.mobile == NUMBER
    found = re.search(r"\d{6}", message.text)
    assert found is not None
    assert "绑定成功" in await say(f"验证 {found.group(0)}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def demo(database: str, aiohttp_server: Any) -> tuple[Settings, str]:
    """The product as `make run` serves it, SMS through the mounted fake platform."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}/_fake"
    settings = make_settings(
        base_config(database),
        server={"port": port},
        api={"oa_base_url": f"{base}/oa", "wecom_base_url": f"{base}/wecom"},
        dev={"fake_platform": True},
        security=SECURITY,
        sms={"provider": "fake", "base_url": f"{base}/sms"},
    )
    app = create_app(settings, Overrides(manage_db=False, run_sender=False))
    await aiohttp_server(app, port=port)
    return settings, f"http://127.0.0.1:{port}"


async def test_the_simulator_prints_the_code_to_type_back(demo: tuple[Settings, str]) -> None:
    settings, url = demo
    lines: list[str] = []
    async with aiohttp.ClientSession() as session:
        who = Identity("brand", "oSimPhone")
        sim = Simulator(settings, url, who, session, lines.append, late_wait=5, settle=0.02)
        await sim.start()
        await sim.handle(f"绑定手机 {NUMBER}")
        shown = [line for line in lines if line.startswith("[短信 138****8000] 验证码 ")]
        assert len(shown) == 1, lines
        await sim.handle(f"验证 {shown[0].rsplit(' ', 1)[1]}")
        await sim.handle("帮助")  # no SMS asked for: nothing more is printed
    assert "公众号 < 手机号 138****8000 绑定成功。" in lines
    assert sum(line.startswith("[短信") for line in lines) == 1
