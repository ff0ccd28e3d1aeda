"""The clients of every configured account on one aiohttp session."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from bot.clients.caller import OA_POLICY, WECOM_POLICY, ApiCaller, Credentials, PauseBook, Sleep
from bot.clients.oa import OAClient
from bot.clients.oa.token import fetch_oa_token
from bot.clients.tokens import Now, TokenCache, TokenKey, TokenStore
from bot.clients.transport import Transport
from bot.clients.wecom import WeComClient
from bot.clients.wecom.token import fetch_wecom_token
from bot.config import OfficialAccountSettings, Settings, WeComSettings

TOKEN_MEMO_SECONDS = 60.0


class ClientsNotStarted(RuntimeError):
    """The HTTP session is opened by the app's start-up (or ``Clients.start``)."""


class Clients:
    """Builds OA and WeCom clients lazily once the session is open."""

    def __init__(
        self,
        settings: Settings,
        store: TokenStore,
        pauses: PauseBook,
        *,
        now: Now = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.settings = settings
        # A token is reused in-process for a minute (a replaced one works for 5 minutes).
        self.tokens = TokenCache(store, now, memo_seconds=TOKEN_MEMO_SECONDS)
        self.now = now
        self.pauses = pauses
        self.sleep = sleep
        self._session: aiohttp.ClientSession | None = None
        self._oa: dict[str, OAClient] = {}
        self._wecom: WeComClient | None = None

    async def start(self) -> None:
        """Open the shared HTTP session."""
        if self._session is None:
            self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        """Close the session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._oa.clear()
        self._wecom = None

    def _transport(self, base_url: str, platform: str) -> Transport:
        if self._session is None:
            raise ClientsNotStarted("API clients used before the HTTP session was opened")
        return Transport(self._session, base_url, platform, self.settings.api.timeout_seconds)

    def oa(self, account: str) -> OAClient:
        """The client of one Official Account (by its settings name)."""
        client = self._oa.get(account)
        if client is None:
            client = self._oa[account] = self._build_oa(self.settings.accounts[account])
        return client

    def _build_oa(self, acc: OfficialAccountSettings) -> OAClient:
        transport = self._transport(self.settings.api.oa_base_url, "oa")

        async def fetch() -> tuple[str, int]:
            return await fetch_oa_token(transport, acc.appid, acc.secret)

        credentials = Credentials(TokenKey("oa", acc.appid, acc.secret), fetch)
        caller = ApiCaller(transport, self.tokens, credentials, OA_POLICY, self.pauses, self.sleep)
        return OAClient(caller, self.settings.api.mp_base_url)

    def wecom(self) -> WeComClient:
        """The WeCom corp's client."""
        if self.settings.wecom is None:
            raise LookupError("no [wecom] section in the settings")
        if self._wecom is None:
            wecom = self.settings.wecom
            self._wecom = WeComClient(
                self._wecom_caller(wecom, wecom.agent_secret),
                self._wecom_caller(wecom, wecom.contact_secret),
                wecom.agent_id,
            )
        return self._wecom

    def _wecom_caller(self, wecom: WeComSettings, secret: str) -> ApiCaller:
        transport = self._transport(self.settings.api.wecom_base_url, "wecom")

        async def fetch() -> tuple[str, int]:
            return await fetch_wecom_token(transport, wecom.corp_id, secret)

        credentials = Credentials(TokenKey("wecom", wecom.corp_id, secret), fetch)
        return ApiCaller(transport, self.tokens, credentials, WECOM_POLICY, self.pauses, self.sleep)
