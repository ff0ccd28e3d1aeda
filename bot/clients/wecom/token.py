"""WeCom gettoken: https://developer.work.weixin.qq.com/document/path/91039"""

from __future__ import annotations

from bot.clients.transport import Transport


async def fetch_wecom_token(transport: Transport, corp_id: str, secret: str) -> tuple[str, int]:
    """GET cgi-bin/gettoken → (access_token, expires_in); per (corp, secret)."""
    body = await transport.request(
        "GET", "cgi-bin/gettoken", params={"corpid": corp_id, "corpsecret": secret}
    )
    return str(body["access_token"]), int(body.get("expires_in", 7200))
