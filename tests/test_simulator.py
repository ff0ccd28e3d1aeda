"""The simulator: WeChat's crypto checked against the official vectors and wechatpy, and a
whole chat against a running server with the fake platform mounted."""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
import pytest
from wechatpy.crypto import WeChatCrypto

from bot.app import Overrides, create_app
from bot.config import Settings
from bot.devtools.signer import sign_oa, sign_wecom
from bot.devtools.simulator import Identity, Simulator
from bot.wechat.crypto import sha1_signature
from bot.wechat.xml import parse_xml
from tests.conftest import OA_AES_KEY, OA_APPID, OA_TOKEN, base_config, make_settings, read_payload
from tests.fakes import ManualBudget
from tests.helpers import oa_text


def test_signatures_match_the_official_vectors() -> None:
    encrypt = parse_xml(read_payload("oa_encrypted_official_sample.xml"))["Encrypt"]
    sig = sha1_signature(OA_TOKEN, "1409735669", "1320562132", encrypt)
    assert sig == "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
    echostr = (
        "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
    )
    assert sha1_signature("QDG6eK", "1409659589", "263014780", echostr) == (
        "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3"
    )


def test_simulated_oa_callbacks_decrypt_with_wechatpy(database: str) -> None:
    settings = make_settings(base_config(database))
    plain = oa_text("帮助", at=1409735669)
    signed = sign_oa(settings.accounts["brand"], plain, 1409735669, "1320562132")
    assert signed.query["signature"] == sha1_signature(OA_TOKEN, "1409735669", "1320562132")
    crypto = WeChatCrypto(OA_TOKEN, OA_AES_KEY, OA_APPID)  # an independent implementation
    decrypted = crypto.decrypt_message(
        signed.body, signed.query["msg_signature"], "1409735669", "1320562132"
    )
    assert decrypted == plain


def test_simulated_wecom_callbacks_decrypt_with_wechatpy(database: str) -> None:
    from wechatpy.enterprise.crypto import WeChatCrypto as WorkCrypto

    settings = make_settings(base_config(database))
    assert settings.wecom is not None
    plain = read_payload("wecom_event_add_external_contact.xml")
    signed = sign_wecom(settings.wecom, plain, 1409659813, "1372623149")
    crypto = WorkCrypto(
        "QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "wx5823bf96d3bd56c7"
    )
    assert (
        crypto.decrypt_message(
            signed.body, signed.query["msg_signature"], "1409659813", "1372623149"
        )
        == plain
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _demo_settings(database: str, port: int) -> Settings:
    base = f"http://127.0.0.1:{port}/_fake"
    return make_settings(
        base_config(database),
        server={"port": port},
        api={
            "oa_base_url": f"{base}/oa",
            "wecom_base_url": f"{base}/wecom",
            "mp_base_url": f"{base}/mp",
        },
        dev={
            "fake_platform": True,
            "time_travel": True,
            "slow_keyword": "慢",
            "slow_seconds": 0.05,
        },
    )


@pytest.fixture
async def demo(database: str, aiohttp_server: Any) -> tuple[Settings, ManualBudget, str]:
    """The whole product as `make run` serves it: fake platform mounted, sender running."""
    port = _free_port()
    settings = _demo_settings(database, port)
    budget = ManualBudget()
    app = create_app(settings, Overrides(manage_db=False, budget=budget, run_sender=True))
    await aiohttp_server(app, port=port)
    return settings, budget, f"http://127.0.0.1:{port}"


async def test_a_chat_through_the_simulator(demo: tuple[Settings, ManualBudget, str]) -> None:
    settings, budget, url = demo
    lines: list[str] = []
    async with aiohttp.ClientSession() as session:
        sim = Simulator(
            settings,
            url,
            Identity("brand", "oSim1"),
            session,
            lines.append,
            late_wait=5,
            settle=0.02,
        )
        await sim.start()
        budget.fire()  # every handler below answers at once; only the slow one misses it
        await sim.handle("帮助")
        await sim.handle("/time +1d")
        await sim.handle("慢")
        await sim.handle("/bogus")
    text = "\n".join(lines)
    assert "会员 oSim1 > 帮助" in text
    assert "可用指令" in text
    assert "offset +86400 s" in text
    assert "(no passive reply: success)" in text
    assert "公众号 (客服消息) < 慢回复" in text
    assert "!! unknown command" in text


async def test_wecom_staff_and_customer_events(demo: tuple[Settings, ManualBudget, str]) -> None:
    settings, budget, url = demo
    lines: list[str] = []
    budget.fire()
    async with aiohttp.ClientSession() as session:
        sim = Simulator(
            settings,
            url,
            Identity("brand", "", True, "zhangsan"),
            session,
            lines.append,
            late_wait=0.2,
            settle=0.02,
        )
        await sim.start()
        await sim.handle("帮助")
        await sim.handle("/add-customer wmNewGuest --state store_01")
        await sim.handle("/del-follow wmNewGuest")
        await sim.handle("/add-customer")
    text = "\n".join(lines)
    assert "企业微信助手" in text
    assert "员工 zhangsan > /add-customer wmNewGuest --state store_01" in text
    assert "!! the following arguments are required: external_userid" in text
    assert text.count("(no passive reply: success)") == 2


def test_replies_are_described_as_a_member_sees_them() -> None:
    from bot.devtools.simulator import describe_reply

    assert describe_reply({"MsgType": "text", "Content": "你好"}) == "你好"
    image = {"MsgType": "image", "Image": {"MediaId": "M1"}}
    assert describe_reply(image) == "[图片 image] media_id=M1"
    assert describe_reply({"MsgType": "transfer_customer_service"}) == "[transfer_customer_service]"


def test_subscribe_takes_a_scene_and_a_unionid() -> None:
    from bot.devtools.simulator import SimulatorError, _subscribe_args

    assert _subscribe_args([]) == ("", "")
    assert _subscribe_args(["ref_AB12"]) == ("ref_AB12", "")
    assert _subscribe_args(["--unionid", "u1", "store_01"]) == ("store_01", "u1")
    with pytest.raises(SimulatorError):
        _subscribe_args(["--unionid"])
