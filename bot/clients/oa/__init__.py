"""Official Account APIs, one module per API group."""

from __future__ import annotations

from bot.clients.caller import ApiCaller
from bot.clients.oa.media import MediaApi
from bot.clients.oa.menu import MenuApi
from bot.clients.oa.message import MassApi, MessageApi
from bot.clients.oa.qrcode import QrCodeApi
from bot.clients.oa.tags import TagApi
from bot.clients.oa.user import UserApi


class OAClient:
    """Every OA API group for one account, sharing one caller (token, policy)."""

    def __init__(self, caller: ApiCaller, mp_base_url: str) -> None:
        self.caller = caller
        self.user = UserApi(caller)
        self.message = MessageApi(caller)
        self.mass = MassApi(caller)
        self.tags = TagApi(caller)
        self.qrcode = QrCodeApi(caller, mp_base_url)
        self.media = MediaApi(caller)
        self.menu = MenuApi(caller)
