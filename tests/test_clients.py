"""Every API client method against the fake platform: success and its error codes."""

from __future__ import annotations

import pytest

from bot.clients.errors import ApiError
from bot.context import Services
from bot.devtools.fakeplatform.control import interaction, welcome_code
from tests.conftest import OA_APPID, FakeServer


async def test_oa_user_info_has_the_unionid(services: Services) -> None:
    info = await services.clients.oa("brand").user.info("oUser1")
    assert (info["openid"], info["unionid"], info["subscribe"]) == ("oUser1", "uUnion1", 1)
    with pytest.raises(ApiError) as err:
        await services.clients.oa("brand").user.info("oNobody")
    assert err.value.errcode == 40003


async def test_oa_customer_service_text_news_image(services: Services, fake: FakeServer) -> None:
    interaction(fake.platform, {"appid": OA_APPID, "openid": "oUser1", "kind": "message"})
    api = services.clients.oa("brand")
    await api.message.send_text("oUser1", "你好")
    await api.message.send_news("oUser1", "会员日", "双倍积分", "https://example.com/day")
    media = await api.media.upload("image", "qr.png", b"\x89PNG fake")
    await api.message.send_image("oUser1", media["media_id"])
    texts = [d.text for d in fake.platform.delivered_to("oUser1")]
    assert texts[0] == "你好"
    assert texts[1].startswith("[图文] 会员日")
    assert texts[2].startswith("[图片] ")


async def test_oa_customer_service_outside_the_window_is_45015(services: Services) -> None:
    with pytest.raises(ApiError) as err:
        await services.clients.oa("brand").message.send_text("oUser2", "hi")
    assert err.value.errcode == 45015


async def test_oa_template_message(services: Services, fake: FakeServer) -> None:
    api = services.clients.oa("brand")
    result = await api.message.send_template("oUser1", "TPL1", {"points": {"value": "105"}})
    assert result["msgid"]
    assert fake.platform.delivered_to("oUser1")[-1].channel == "模板消息"
    with pytest.raises(ApiError) as err:
        await services.clients.oa("compat").message.send_template("oUser1", "TPL1", {})
    assert err.value.errcode == 48001  # not a verified service account


async def test_oa_tags_and_mass_send(services: Services, fake: FakeServer) -> None:
    api = services.clients.oa("brand")
    tag = await api.tags.create("金卡会员")
    await api.tags.tag_users(tag["id"], ["oUser1", "oUser2"])
    assert tag["id"] in await api.tags.of_user("oUser1")
    assert any(t["name"] == "金卡会员" and t["count"] == 2 for t in await api.tags.list_tags())
    by_tag = await api.mass.send_text_to_tag(tag["id"], "会员日快乐", "bc-1")
    by_list = await api.mass.send_text_to_openids(["oUser1", "oUser3"], "周末活动", "bc-2")
    assert by_tag["msg_id"] != by_list["msg_id"]
    await api.tags.untag_users(tag["id"], ["oUser2"])
    assert tag["id"] not in await api.tags.of_user("oUser2")
    with pytest.raises(ApiError) as err:
        await api.mass.send_text_to_openids(["oUser1"], "x", "bc-3")
    assert err.value.errcode == 40130


async def test_oa_qrcode_and_menu(services: Services, fake: FakeServer) -> None:
    api = services.clients.oa("brand")
    temp = await api.qrcode.temporary("ref_ABC123", 3600)
    assert temp["expire_seconds"] == 3600
    perm = await api.qrcode.permanent("channel_store_01")
    assert "expire_seconds" not in perm
    assert api.qrcode.show_url(temp["ticket"]).startswith(f"{fake.url}/mp/cgi-bin/showqrcode?")
    await api.menu.create([{"type": "click", "name": "签到", "key": "SIGNIN"}])
    with pytest.raises(ApiError) as err:
        await api.menu.create([{"type": "click", "name": str(i), "key": str(i)} for i in range(4)])
    assert err.value.errcode == 40016


async def test_wecom_agent_message_and_contacts(services: Services, fake: FakeServer) -> None:
    wecom = services.clients.wecom()
    await wecom.message.send_text("zhangsan", "新客户提醒")
    assert fake.platform.delivered_to("zhangsan")[-1].text == "新客户提醒"
    contact = await wecom.external_contact.get("wmCustomer1")
    assert contact["external_contact"]["unionid"] == "uUnion1"
    assert contact["follow_user"][0]["tags"][0]["tag_id"] == "etTAG1"
    assert await wecom.external_contact.list_ids("zhangsan") == ["wmCustomer1", "wmCustomer2"]
    assert await wecom.external_contact.follow_users() == ["zhangsan", "lisi"]
    with pytest.raises(ApiError) as err:
        await wecom.external_contact.get("wmNobody")
    assert err.value.errcode == 84061


async def test_wecom_batch_get_by_user_pages_with_the_cursor(services: Services) -> None:
    wecom = services.clients.wecom()
    seen, cursor = [], ""
    while True:
        page, cursor = await wecom.external_contact.batch_by_user(["zhangsan", "lisi"], cursor, 2)
        seen += [item["external_contact"]["external_userid"] for item in page]
        if not cursor:
            break
    assert seen == ["wmCustomer1", "wmCustomer2", "wmCustomer3"]


async def test_wecom_corp_tags_and_mark_tag(services: Services, fake: FakeServer) -> None:
    tags = services.clients.wecom().tags
    groups = await tags.list_groups()
    assert {g["group_name"] for g in groups} == {"客户等级", "兴趣"}
    added = await tags.add("会员等级", [{"name": "金卡"}])
    new_tag = added["tag"][0]["id"]
    await tags.mark("zhangsan", "wmCustomer1", add=[new_tag], remove=["etTAG1"])
    assert fake.platform.follow("zhangsan", "wmCustomer1").tags == [new_tag]
    with pytest.raises(ApiError) as err:
        await tags.mark("zhangsan", "wmCustomer1", add=["etNOPE"])
    assert err.value.errcode == 40068


async def test_wecom_welcome_message_once(services: Services, fake: FakeServer) -> None:
    code = welcome_code(fake.platform, {"userid": "zhangsan", "external_userid": "wmNew"})
    contact = services.clients.wecom().external_contact
    await contact.send_welcome(code["welcome_code"], "欢迎加入会员")
    with pytest.raises(ApiError) as err:
        await contact.send_welcome(code["welcome_code"], "again")
    assert err.value.errcode == 41051


async def test_wecom_group_msg_task_and_result(services: Services, fake: FakeServer) -> None:
    from bot.devtools.fakeplatform.wecom_tasks import confirm_group_msg

    group_msg = services.clients.wecom().group_msg
    task = await group_msg.add_template(
        "zhangsan", ["wmCustomer1", "wmCustomer2", "wmCustomer3"], "新品"
    )
    assert task["fail_list"] == ["wmCustomer3"]  # not zhangsan's customer
    rows, _ = await group_msg.send_result(task["msgid"], "zhangsan")
    assert {r["external_userid"]: r["status"] for r in rows} == {
        "wmCustomer1": 0,
        "wmCustomer2": 0,
        "wmCustomer3": 2,
    }
    confirm_group_msg(fake.platform, task["msgid"], "zhangsan")
    rows, _ = await group_msg.send_result(task["msgid"], "zhangsan")
    assert [r["status"] for r in rows if r["external_userid"] == "wmCustomer1"] == [1]
    again = await group_msg.add_template("zhangsan", ["wmCustomer1"], "再来一条")
    assert again["fail_list"] == ["wmCustomer1"]  # one group message per customer per day


async def test_wecom_group_chats_contact_way_and_transfer(services: Services) -> None:
    wecom = services.clients.wecom()
    chats, cursor = await wecom.group_chat.list_chats()
    assert (chats, cursor) == ([{"chat_id": "wrChat1", "status": 0}], "")
    chat = await wecom.group_chat.get("wrChat1")
    assert chat["owner"] == "zhangsan"
    assert chat["member_version"] == "v1"
    way = await wecom.contact_way.add("store_01", ["zhangsan"])
    assert way["config_id"]
    moved = await wecom.transfer.transfer("zhangsan", "lisi", ["wmCustomer1", "wmCustomer3"])
    assert [m["errcode"] for m in moved] == [0, 84061]
    results, _ = await wecom.transfer.result("zhangsan", "lisi")
    assert [r["external_userid"] for r in results] == ["wmCustomer1"]
    resigned = await wecom.transfer.transfer("lisi", "zhangsan", ["wmCustomer3"], resigned=True)
    assert resigned == [{"external_userid": "wmCustomer3", "errcode": 0}]
