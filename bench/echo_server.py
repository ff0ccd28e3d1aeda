"""The ceiling: a bare aiohttp + wechatpy safe-mode echo server, nothing else.

``POST /wechat/{account}`` decrypts the AES envelope (checking ``msg_signature``) with
``wechatpy.crypto.WeChatCrypto``, parses it with ``wechatpy.parse_message``, renders a
``TextReply`` and encrypts it back. No dedupe, no database, no routing, no middlewares:
the least work a correct safe-mode callback can do in Python, so the full server's
throughput can be read as a fraction of it. ``GET /healthz`` answers 200 for readiness.

Run: ``.venv/bin/python bench/echo_server.py --config config.example.toml --port 8090``
"""

from __future__ import annotations

import argparse
import tomllib

from aiohttp import web
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.replies import TextReply

_CRYPTO = web.AppKey("crypto", WeChatCrypto)


def echo_text(content: str) -> str:
    """The reply content for a text message (the load generator checks it)."""
    return f"echo: {content}"


async def callback(request: web.Request) -> web.Response:
    """Decrypt, parse, reply, encrypt."""
    crypto = request.app[_CRYPTO]
    q = request.query
    timestamp, nonce = q["timestamp"], q["nonce"]
    body = await request.text()
    xml = crypto.decrypt_message(body, q["msg_signature"], timestamp, nonce)
    msg = parse_message(xml)
    reply = TextReply(message=msg, content=echo_text(getattr(msg, "content", ""))).render()
    return web.Response(
        text=crypto.encrypt_message(reply, nonce, timestamp), content_type="application/xml"
    )


async def healthz(_request: web.Request) -> web.Response:
    """Readiness probe."""
    return web.json_response({"ok": True})


def make_app(token: str, aes_key: str, appid: str) -> web.Application:
    """The echo application for one account's credentials."""
    app = web.Application()
    app[_CRYPTO] = WeChatCrypto(token, aes_key, appid)
    app.router.add_post("/wechat/{account}", callback)
    app.router.add_get("/healthz", healthz)
    return app


def _account(config: str, name: str) -> dict[str, str]:
    with open(config, "rb") as fh:
        return dict(tomllib.load(fh)["accounts"][name])


def main() -> None:
    """Serve the echo application until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config.example.toml")
    parser.add_argument("--account", default="demo")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    acc = _account(args.config, args.account)
    app = make_app(acc["token"], acc["encoding_aes_key"], acc["appid"])
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
