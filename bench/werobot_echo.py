"""The WeRoBot yardstick: a WeRoBot safe-mode (AES) echo under a production WSGI server.

WeRoBot (PyPI ``werobot``) is the best-known Python framework for Official Account
callbacks; this is its smallest correct safe-mode bot: ``@robot.text`` answers
``echo: <content>`` (the same text as ``echo_server.py``), so the load generator checks it
the same way. WeRoBot's own view checks the plain ``signature``, decrypts and checks
``msg_signature``, parses, renders the reply and encrypts it. Sessions are off
(``SESSION_STORAGE = False``): by default WeRoBot would read and write a SQLite session
row per message, which an echo does not need and which would only slow it down.

WeRoBot is WSGI-only (Bottle underneath). ``--server`` picks the WSGI server:

- ``granian`` (default): granian's Rust HTTP server (HTTP/1.1 keep-alive), WSGI
  interface, one worker process with ``--threads`` (8) blocking threads. The HTTP work runs
  in Rust outside the GIL, so WeRoBot's Python gets nearly all of the core: by far its
  best showing here (bench/README.md has the comparison).
- ``waitress``: waitress with ``--threads`` threads (pure Python, keep-alive).
- ``gunicorn-gthread``: gunicorn, one worker with ``--threads`` threads (keep-alive).
- ``gunicorn-gevent``: gunicorn with one gevent worker (erratic here: see the README).

``GET /healthz`` answers 200 (a tiny WSGI wrapper; WeRoBot itself would answer 403 to an
unsigned request). Install the servers with ``pip install -e '.[bench]'``
(``make bench`` does it); they are not runtime dependencies of the project.

Run: ``.venv/bin/python bench/werobot_echo.py --config config.example.toml --port 8091``
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

SERVERS = ("granian", "waitress", "gunicorn-gthread", "gunicorn-gevent")
_ENV_CONFIG, _ENV_ACCOUNT = "BENCH_WEROBOT_CONFIG", "BENCH_WEROBOT_ACCOUNT"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def echo_text(content: str) -> str:
    """The reply content for a text message (the same as ``echo_server.echo_text``)."""
    return f"echo: {content}"


def make_robot(token: str, aes_key: str, appid: str) -> Any:
    """A WeRoBot in safe mode that echoes text messages back, without sessions."""
    from werobot import WeRoBot
    from werobot.config import Config

    config = Config(
        TOKEN=token, APP_ID=appid, ENCODING_AES_KEY=aes_key, SESSION_STORAGE=False, SERVER="auto"
    )
    robot = WeRoBot(config=config)

    @robot.text
    def echo(message: Any) -> str:
        return echo_text(message.content)

    return robot


def with_healthz(app: WsgiApp) -> WsgiApp:
    """``app`` with ``GET /healthz`` answered before it (readiness for the bench)."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            body = b'{"ok": true}'
            start_response(
                "200 OK",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        return app(environ, start_response)

    return wrapped


def account(config: str, name: str) -> dict[str, str]:
    """One ``[accounts.<name>]`` table of a settings file."""
    with open(config, "rb") as fh:
        return dict(tomllib.load(fh)["accounts"][name])


def app_from_env() -> WsgiApp:
    """The WSGI app for the account named in the environment (granian's factory)."""
    acc = account(os.environ[_ENV_CONFIG], os.environ[_ENV_ACCOUNT])
    robot = make_robot(acc["token"], acc["encoding_aes_key"], acc["appid"])
    return with_healthz(robot.wsgi)


def serve_gunicorn(app: WsgiApp, host: str, port: int, worker: str, threads: int) -> None:
    """One gunicorn worker process (gevent or gthread), keep-alive on, no access log."""
    from gunicorn.app.base import BaseApplication

    options = {
        "bind": f"{host}:{port}",
        "workers": 1,
        "worker_class": worker,
        "threads": threads,
        "worker_connections": 1000,
        "keepalive": 75,
        "backlog": 2048,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "graceful_timeout": 5,
    }

    class _App(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> WsgiApp:
            return app

    _App().run()


def serve_waitress(app: WsgiApp, host: str, port: int, threads: int) -> None:
    """waitress with ``threads`` worker threads."""
    import logging

    import waitress

    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "queue depth" under load
    waitress.serve(
        app, host=host, port=port, threads=threads, connection_limit=1000, backlog=2048, ident=""
    )


def serve_granian(host: str, port: int, threads: int) -> None:
    """granian (Rust HTTP), WSGI interface, one worker; the app is built in the worker."""
    from granian import Granian
    from granian.constants import Interfaces
    from granian.log import LogLevels

    Granian(
        "werobot_echo:app_from_env",
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=1,
        blocking_threads=threads,
        factory=True,
        working_dir=Path(__file__).resolve().parent,
        log_level=LogLevels.warning,
    ).serve()


def main(argv: list[str] | None = None) -> int:
    """Serve the echo bot until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config.example.toml")
    parser.add_argument("--account", default="demo")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--server", choices=SERVERS, default=SERVERS[0])
    parser.add_argument("--threads", type=int, default=8, help="granian, waitress, gthread")
    args = parser.parse_args(argv)
    os.environ[_ENV_CONFIG] = os.path.abspath(args.config)
    os.environ[_ENV_ACCOUNT] = args.account
    try:
        app = app_from_env()
    except ImportError as exc:
        print(f"error: {exc}; install the bench extras: pip install -e '.[bench]'")
        return 2
    if args.server == "granian":
        serve_granian(args.host, args.port, args.threads)
    elif args.server == "waitress":
        serve_waitress(app, args.host, args.port, args.threads)
    else:
        worker = args.server.removeprefix("gunicorn-")
        serve_gunicorn(
            app, args.host, args.port, worker, args.threads if worker == "gthread" else 1
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
