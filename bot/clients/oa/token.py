"""OA access_token: https://developers.weixin.qq.com/doc/offiaccount/Basic_Information/Get_access_token.html"""

from __future__ import annotations

from bot.clients.transport import Transport


async def fetch_oa_token(transport: Transport, appid: str, secret: str) -> tuple[str, int]:
    """GET cgi-bin/token → (access_token, expires_in)."""
    body = await transport.request(
        "GET",
        "cgi-bin/token",
        params={"grant_type": "client_credential", "appid": appid, "secret": secret},
    )
    return str(body["access_token"]), int(body.get("expires_in", 7200))
