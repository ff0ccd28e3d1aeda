"""``python -m bot chat``: play a member (or a WeCom staff member) exactly as WeChat would.

Each line is signed and, in safe mode, encrypted like a real callback, posted to the
server, and the decrypted reply printed; then whatever the fake platform delivered to
this member since (late replies, customer-service and template messages) is printed too.
After ``绑定手机 <number>`` the SMS the fake platform received for that number is printed
as well (``[短信 138****8000] 验证码 123456``), so the code can be typed back.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.config import Settings, WeComSettings
from bot.devtools import sim_events as ev
from bot.devtools.signer import open_reply, sign_oa, sign_wecom
from bot.services.pii import InvalidMobile, mask, normalize
from bot.wechat.crypto import MessageCrypto
from bot.wechat.xml import BadPayload, parse_xml

Print = Callable[[str], None]
HELP = """指令 / commands:
  任意文字          发送文本消息 (send a text)
  /subscribe [scene] [--unionid U] /unsubscribe /scan SCENE /click KEY /location LAT LNG
  /time +1d | /time -2h | /time reset     move the server's business clock (dev only)
  WeCom (--wecom --staff ID): /add-customer EXT [--state S] [--half] [--name N]
        [--remark R] [--unionid U]
        /edit-customer EXT  /del-customer EXT  /del-follow EXT
  /quit"""


# How the fake platform's delivery channels read to a person.
CHANNELS = {
    "custom": "客服消息",
    "template": "模板消息",
    "mass": "群发",
    "agent": "应用消息",
    "welcome": "欢迎语",
    "groupmsg": "企业群发",
    "groupmsg_task": "群发任务",
}


class SimulatorError(Exception):
    """A simulator command failed (bad input or an unreachable server)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the simulator plays."""

    account: str
    openid: str
    wecom: bool = False
    staff: str = ""


class Simulator:
    """Sends callbacks to a running server and shows what comes back."""

    def __init__(
        self,
        settings: Settings,
        server: str,
        who: Identity,
        session: aiohttp.ClientSession,
        out: Print = print,
        late_wait: float = 10.0,
        settle: float = 0.3,
    ) -> None:
        self.settings = settings
        self.server = server.rstrip("/")
        self.who = who
        self.session = session
        self.out = out
        self.late_wait = late_wait
        self.settle = settle
        self._seen = 0
        self._sms_mobile = ""  # the number the member last asked to bind
        self._sms_seen = 0

    # --- the loop ---------------------------------------------------------------

    async def handle(self, line: str) -> bool:
        """Run one input line; False when the user asked to quit."""
        line = line.strip()
        if not line:
            return True
        if line in ("/quit", "/exit"):
            return False
        if line in ("/help", "/?"):
            self.out(HELP)
            return True
        try:
            await self._dispatch(line)
        except SimulatorError as exc:
            self.out(f"!! {exc}")
        return True

    async def _dispatch(self, line: str) -> None:
        if line.startswith("/time"):
            await self._time(line.split()[1:])
            return
        if line.startswith("/"):
            body, kind = await self._command(shlex.split(line))
        else:
            body, kind = self._text(line), "message"
            self._watch_sms(line)
        self.out(f"{self._me()} > {line}")
        reply = await self._post(body)
        await self._interaction(kind)
        self._show_reply(reply)
        # A text answered with bare `success` was late: its reply arrives by API shortly.
        late = reply == "success" and kind == "message"
        await self._show_deliveries(wait=self.late_wait if late else self.settle)
        await self._show_sms()

    # --- building callbacks -----------------------------------------------------

    def now(self) -> int:
        return int(time.time())

    def _to(self) -> str:
        return "gh_" + self.settings.accounts[self.who.account].appid

    def _text(self, content: str) -> str:
        if self.who.wecom:
            wecom = self._wecom()
            return ev.wecom_text(wecom.corp_id, self.who.staff, content, self.now(), wecom.agent_id)
        return ev.oa_text(self._to(), self.who.openid, content, self.now())

    async def _command(self, argv: list[str]) -> tuple[str, str]:
        name, args = argv[0], argv[1:]
        if self.who.wecom:
            from bot.devtools.sim_wecom import contact_event

            return await contact_event(self, name, args), ""
        to, me, now = self._to(), self.who.openid, self.now()
        if name == "/subscribe":
            scene, unionid = _subscribe_args(args)
            if unionid:  # the platform knows the follower's unionid (user-info API)
                appid = self.settings.accounts[self.who.account].appid
                await self.control("users", {"appid": appid, "openid": me, "unionid": unionid})
            return ev.oa_subscribe(to, me, now, scene), "subscribe"
        if name == "/unsubscribe":
            return ev.oa_event(to, me, now, "unsubscribe", ("EventKey", "")), ""
        if name == "/scan" and args:
            return ev.oa_event(to, me, now, "SCAN", ("EventKey", args[0]), ("Ticket", "T")), "scan"
        if name == "/click" and args:
            return ev.oa_event(to, me, now, "CLICK", ("EventKey", args[0])), "click"
        if name == "/location" and len(args) == 2:
            extra = (("Latitude", args[0]), ("Longitude", args[1]), ("Precision", "30.0"))
            return ev.oa_event(to, me, now, "LOCATION", *extra), ""
        raise SimulatorError(f"unknown command or missing argument: {' '.join(argv)} (try /help)")

    def _wecom(self) -> WeComSettings:
        if self.settings.wecom is None:
            raise SimulatorError("the settings have no [wecom] section")
        return self.settings.wecom

    async def start(self) -> None:
        """Skip what the fake platform delivered (and texted) before this session."""
        await self._deliveries()
        self._sms_seen = max((int(m.get("seq", 0)) for m in await self._sms()), default=0)

    # --- talking to the server --------------------------------------------------

    async def _post(self, body: str) -> str:
        now = self.now()
        crypto: MessageCrypto | None
        if self.who.wecom:
            wecom = self._wecom()
            signed = sign_wecom(wecom, body, now)
            crypto = MessageCrypto(wecom.token, wecom.encoding_aes_key, wecom.corp_id)
            path = f"/wecom/{wecom.name}"
        else:
            acc = self.settings.accounts[self.who.account]
            signed = sign_oa(acc, body, now, openid=self.who.openid)
            crypto = (
                MessageCrypto(acc.token, acc.encoding_aes_key, acc.appid)
                if acc.encoding_aes_key
                else None
            )
            path = f"/wechat/{self.who.account}"
        text = await self._request("POST", path, params=signed.query, data=body_of(signed.body))
        return open_reply(crypto, text) if crypto is not None else text

    async def _request(self, method: str, path: str, **kwargs: Any) -> str:
        try:
            async with self.session.request(method, self.server + path, **kwargs) as resp:
                text = await resp.text()
                if resp.status >= 400:
                    raise SimulatorError(f"{method} {path}: HTTP {resp.status} {text[:200]}")
                return text
        except aiohttp.ClientError as exc:
            raise SimulatorError(f"cannot reach {self.server}: {exc}") from None

    async def control(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST to the fake platform's control API."""
        text = await self._request("POST", f"/_fake/_control/{path}", json=payload)
        result: dict[str, Any] = json.loads(text) if text else {}
        return result

    async def _interaction(self, kind: str) -> None:
        # The real platform knows the member wrote or clicked (it opens the customer-service
        # window); our fake learns it from us.
        if not kind or self.who.wecom:
            return
        appid = self.settings.accounts[self.who.account].appid
        await self.control("interaction", {"appid": appid, "openid": self.who.openid, "kind": kind})

    async def _time(self, args: list[str]) -> None:
        payload = {"reset": True} if args[:1] == ["reset"] else {"shift": args[0] if args else ""}
        text = await self._request("POST", "/_dev/time", json=payload)
        data = json.loads(text)
        self.out(
            f"🕒 业务时间 business time: {data['now']} (offset {data['offset_seconds']:+.0f} s)"
        )

    # --- output -----------------------------------------------------------------

    def _me(self) -> str:
        return f"员工 {self.who.staff}" if self.who.wecom else f"会员 {self.who.openid}"

    def _them(self) -> str:
        return "企业微信" if self.who.wecom else "公众号"

    def _show_reply(self, reply: str) -> None:
        if reply == "success" or not reply:
            self.out(f"{self._them()} < (no passive reply: success)")
            return
        try:
            data = parse_xml(reply)
        except BadPayload:
            self.out(f"{self._them()} < {reply}")
            return
        self.out(f"{self._them()} < {describe_reply(data)}")

    async def _show_deliveries(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        while True:
            found = await self._deliveries()
            for item in found:
                channel = str(item.get("channel", "api"))
                self.out(f"{self._them()} ({CHANNELS.get(channel, channel)}) < {item.get('text')}")
            if found or time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.25)

    def _watch_sms(self, line: str) -> None:
        head, _, rest = line.partition(" ")
        words = {w.casefold() for w in self.settings.chat.words("bind_phone")}
        if head.casefold() in words and rest.strip():
            try:
                self._sms_mobile = normalize(rest)
            except InvalidMobile:
                return

    async def _show_sms(self) -> None:
        # The server sends the code from a background task: give it a moment.
        if not self._sms_mobile or self.who.wecom:
            return
        deadline = time.monotonic() + max(self.settle, 2.0)
        while True:
            found = await self._sms(self._sms_mobile)
            for item in found:
                self.out(format_sms(str(item.get("mobile", "")), str(item.get("text", ""))))
            if found:
                self._sms_seen = max(int(i.get("seq", 0)) for i in found)
            if found or time.monotonic() >= deadline:
                self._sms_mobile = ""  # none (rate limited, bad number): stop looking
                return
            await asyncio.sleep(0.1)

    async def _sms(self, mobile: str = "") -> list[dict[str, Any]]:
        params = {"since": str(self._sms_seen), **({"mobile": mobile} if mobile else {})}
        try:
            text = await self._request("GET", "/_fake/sms/outbox", params=params)
        except SimulatorError:
            return []
        return list(json.loads(text).get("messages", []))

    async def _deliveries(self) -> list[dict[str, Any]]:
        who = {"userid": self.who.staff} if self.who.wecom else {"openid": self.who.openid}
        try:
            text = await self._request(
                "GET", "/_fake/_control/messages", params={**who, "since": str(self._seen)}
            )
        except SimulatorError:
            return []
        items: list[dict[str, Any]] = list(json.loads(text).get("messages", []))
        if items:
            self._seen = max(int(i.get("seq", 0)) for i in items)
        return items


def describe_reply(data: dict[str, Any]) -> str:
    """A passive reply as a member would see it: the text, or what kind of message came."""
    if data.get("Content"):
        return str(data["Content"])
    kind = str(data.get("MsgType", ""))
    if kind == "image":
        image = data.get("Image")
        media = image.get("MediaId", "") if isinstance(image, dict) else ""
        return f"[图片 image] media_id={media}"
    if kind == "news":
        return f"[图文 news] {data.get('Articles', '')}"
    return f"[{kind}]"


def format_sms(mobile: str, text: str) -> str:
    """An SMS as the simulator prints it: ``[短信 138****8000] 验证码 123456`` (or the text)."""
    code = re.search(r"(?<!\d)\d{6}(?!\d)", text)
    shown = f"验证码 {code.group(0)}" if code else text
    return f"[短信 {mask(mobile)}] {shown}"


def body_of(body: str) -> bytes:
    """The request body bytes."""
    return body.encode("utf-8")


def default_server(settings: Settings) -> str:
    """The URL of the server the settings describe (what ``make run`` serves)."""
    host = settings.server.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a listen address, not a bind
        host = "127.0.0.1"
    return f"http://{host}:{settings.server.port}"


async def run_chat(settings: Settings, server: str, who: Identity, lines: list[str] | None) -> int:
    """Play the given lines (or read stdin) against the server; returns the exit status."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        sim = Simulator(settings, server, who, session)
        await sim.start()
        if lines is not None:
            for line in lines:
                if not await sim.handle(line):
                    break
            return 0
        return await _interactive(sim)


async def _interactive(sim: Simulator) -> int:
    import sys

    interactive = sys.stdin.isatty()
    if interactive:
        sim.out(f"模拟 {sim._me()} → {sim.server}   (/help for commands, /quit to leave)")
    loop = asyncio.get_running_loop()
    while True:
        if interactive:
            sys.stdout.write("> ")
            sys.stdout.flush()
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or not await sim.handle(line):
            return 0


def _subscribe_args(args: list[str]) -> tuple[str, str]:
    """``/subscribe [scene] [--unionid U]`` → (scene, unionid)."""
    scene, unionid, rest = "", "", list(args)
    while rest:
        word = rest.pop(0)
        if word == "--unionid":
            if not rest:
                raise SimulatorError("--unionid needs a value")
            unionid = rest.pop(0)
        else:
            scene = word
    return scene, unionid
