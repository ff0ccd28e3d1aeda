"""The error-code policy per platform, against the fake platform's injected failures."""

from __future__ import annotations

import logging

import pytest

from bot.app import Overrides, build_services
from bot.clients.errors import BadSecret, OutcomeUnknown, QuotaExhausted
from bot.context import Services
from tests.conftest import OA_APPID, WECOM_CORP_ID, FakeServer, base_config, make_settings


def _calls(fake: FakeServer, api: str) -> int:
    return len(fake.platform.calls(api=api))


def _tokens(fake: FakeServer, platform: str, app: str, secret: str | None = None) -> int:
    return fake.platform.token_count(platform, app, secret)


async def test_oa_token_errors_refresh_once_then_retry(
    services: Services, fake: FakeServer
) -> None:
    api = services.clients.oa("brand")
    await api.user.info("oUser1")
    fake.platform.fail(platform="oa", api="cgi-bin/user/info", errcode=42001)
    info = await api.user.info("oUser1")
    assert info["openid"] == "oUser1"
    assert _tokens(fake, "oa", OA_APPID) == 2
    fake.platform.fail(platform="oa", api="cgi-bin/user/info", errcode=40001, times=2)
    with pytest.raises(Exception, match="40001"):
        await api.user.info("oUser1")  # refreshed once, rejected again: no loop
    assert _tokens(fake, "oa", OA_APPID) == 3


async def test_oa_daily_quota_pauses_the_api_until_business_midnight(
    services: Services, fake: FakeServer
) -> None:
    api = services.clients.oa("brand")
    fake.platform.fail(platform="oa", api="cgi-bin/message/template/send", errcode=45009)
    with pytest.raises(QuotaExhausted):
        await api.message.send_template("oUser1", "TPL", {})
    before = _calls(fake, "cgi-bin/message/template/send")
    with pytest.raises(QuotaExhausted):
        await api.message.send_template("oUser2", "TPL", {})
    assert _calls(fake, "cgi-bin/message/template/send") == before  # never reached WeChat
    # other APIs of the account, and other accounts, are not paused
    assert (await api.user.info("oUser1"))["openid"] == "oUser1"
    assert not await services.clients.pauses.paused(
        "oa", "wxcompat00000001", "cgi-bin/message/template/send"
    )


async def test_oa_minute_quota_backs_off_and_retries(services: Services, fake: FakeServer) -> None:
    fake.platform.interaction(appid=OA_APPID, openid="oUser1", kind="message")
    fake.platform.fail(
        platform="oa",
        api="cgi-bin/message/custom/send",
        errcode=45011,
        times=2,
    )
    await services.clients.oa("brand").message.send_text("oUser1", "hi")
    assert _calls(fake, "cgi-bin/message/custom/send") == 3
    assert [d.text for d in fake.platform.messages(openid="oUser1")] == ["hi"]


async def test_oa_backoff_gives_up_after_the_retries(services: Services, fake: FakeServer) -> None:
    fake.platform.fail(platform="oa", api="cgi-bin/user/info", errcode=-1, times=10)
    with pytest.raises(Exception, match="-1"):
        await services.clients.oa("brand").user.info("oUser1")
    assert _calls(fake, "cgi-bin/user/info") == 4  # the first try and three retries


@pytest.mark.parametrize("errcode", [45009, 45033, -1])
async def test_wecom_rate_codes_back_off_and_retry(
    services: Services, fake: FakeServer, errcode: int
) -> None:
    fake.platform.fail(
        platform="wecom",
        api="cgi-bin/externalcontact/get",
        errcode=errcode,
        times=2,
    )
    contact = await services.clients.wecom().external_contact.get("wmCust1")
    assert contact["external_contact"]["name"] == "王小明"
    assert _calls(fake, "cgi-bin/externalcontact/get") == 3


async def test_wecom_token_expiry_refreshes_per_secret(
    services: Services, fake: FakeServer
) -> None:
    wecom = services.clients.wecom()
    await wecom.message.send_text("zhangsan", "a")
    await wecom.external_contact.get("wmCust1")
    assert _tokens(fake, "wecom", WECOM_CORP_ID, "agent-secret") == 1
    assert _tokens(fake, "wecom", WECOM_CORP_ID, "contact-secret") == 1
    fake.platform.expire_tokens()
    await wecom.external_contact.get("wmCust1")
    assert _tokens(fake, "wecom", WECOM_CORP_ID, "contact-secret") == 2
    assert _tokens(fake, "wecom", WECOM_CORP_ID, "agent-secret") == 1


async def test_wecom_bad_secret_is_not_retried_and_alerts(
    fake: FakeServer, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    raw = base_config(database)
    raw["wecom"]["contact_secret"] = "wrong"
    settings = make_settings(raw, api=fake.api())
    services = build_services(settings, Overrides(api_sleep=_none))
    await services.clients.start()
    try:
        with caplog.at_level(logging.ERROR), pytest.raises(BadSecret):
            await services.clients.wecom().external_contact.get("wmCust1")
    finally:
        await services.clients.close()
    assert _calls(fake, "cgi-bin/gettoken") == 1
    assert any("ALERT" in r.getMessage() for r in caplog.records)


async def _none(seconds: float) -> None:
    return None


async def test_unknown_outcomes_are_retried_only_when_idempotent(
    fake: FakeServer, database: str
) -> None:
    settings = make_settings(base_config(database), api={**fake.api(), "timeout_seconds": 0.05})
    services = build_services(settings, Overrides(api_sleep=_none))
    await services.clients.start()
    try:
        api = services.clients.oa("brand")
        await api.user.info("oUser1")  # token first
        fake.platform.interaction(appid=OA_APPID, openid="oUser1", kind="message")
        fake.platform.fail(
            platform="oa",
            api="cgi-bin/message/custom/send",
            delay=0.2,
            times=1,
        )
        with pytest.raises(OutcomeUnknown):
            await api.message.send_text("oUser1", "maybe")
        assert _calls(fake, "cgi-bin/message/custom/send") == 1  # not idempotent: no retry
        fake.platform.fail(platform="oa", api="cgi-bin/user/info", delay=0.2, times=1)
        assert (await api.user.info("oUser1"))["openid"] == "oUser1"
        assert _calls(fake, "cgi-bin/user/info") == 3  # first call, the slow one, its retry
    finally:
        await services.clients.close()
