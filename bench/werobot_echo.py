"""The WeRoBot yardstick: a WeRoBot safe-mode (AES) echo under a production WSGI server.

WeRoBot (PyPI ``werobot``) is the best-known Python framework for Official Account
callbacks; this is its smallest correct safe-mode bot: ``@robot.text`` answers
``echo: <content>`` (the same text as ``echo_server.py``), so the load generator checks it
the same way. WeRoBot's own view checks the plain ``signature``, decrypts and checks
``msg_signature``, parses, renders the reply and encrypts it. Sessions are off
(``SESSION_STORAGE = False``): by default WeRoBot would read and write a SQLite session
row per message, which an echo does not need and which would only slow it down.

WeRoBot is WSGI-only (Bottle underneath). ``--server`` picks the WSGI server:

- ``run``: WeRoBot as it runs itself, its documented deployment (docs/deploy.rst):
  ``robot.run(server="auto", host=…, port=…)``, nothing chosen by us. Bottle's ``auto``
  takes the first of Waitress, Paste, Twisted, CherryPy, Cheroot, WSGIRef that imports;
  with the bench extras that is waitress with waitress's defaults (4 threads).
  ``--threads`` does not apply. Only Bottle's three-line banner is silenced (one line of
  ours instead) and waitress's "Task queue depth" warnings (one per queued request under
  load); nothing else of WeRoBot, Bottle or waitress is changed.
- ``granian`` (the default here): granian's Rust HTTP server (HTTP/1.1 keep-alive), WSGI
  interface, one worker process with ``--threads`` (8) blocking threads. Not a server
  WeRoBot supports or documents; the HTTP work runs in Rust outside the GIL, so WeRoBot's
  Python gets nearly all of the core: by far its best showing here (bench/README.md has
  the comparison).
- ``waitress``: waitress with ``--threads`` threads (pure Python, keep-alive).
- ``gunicorn-gthread``: gunicorn, one worker with ``--threads`` threads (keep-alive).
- ``gunicorn-gevent``: gunicorn with one gevent worker (erratic here: see the README).

``GET /healthz`` answers 200 (WeRoBot itself would answer 403 to an unsigned request): for
``run`` a route added to the robot's own Bottle app (``robot.wsgi``), for the others a tiny
WSGI wrapper. Install the servers with ``pip install -e '.[bench]'`` (``make bench`` does
it); they are not runtime dependencies of the project.

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

SERVERS = ("granian", "run", "waitress", "gunicorn-gthread", "gunicorn-gevent")
DEFAULT_THREADS = 8  # granian, waitress, gthread (``run`` keeps waitress's own default)
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


def healthz() -> dict[str, bool]:
    """``GET /healthz`` on the robot's Bottle app (Bottle renders the dict as JSON)."""
    return {"ok": True}


def _auto_pick() -> str:
    """The server Bottle's ``auto`` will take: the first of its adapters that imports."""
    import importlib.util

    import bottle

    modules = {"WaitressServer": "waitress", "PasteServer": "paste", "TwistedServer": "twisted",
               "CherryPyServer": "cherrypy", "CherootServer": "cheroot",
               "WSGIRefServer": "wsgiref"}  # fmt: skip
    for adapter in bottle.AutoServer.adapters:
        module = modules.get(adapter.__name__)
        if module and importlib.util.find_spec(module) is not None:
            if module == "waitress":
                from waitress.adjustments import Adjustments

                return f"waitress, its defaults ({Adjustments.threads} threads)"
            return module
    return "none of its adapters"


def serve_run(robot: Any, host: str, port: int) -> None:
    """WeRoBot's own entry point, as its docs deploy it: ``robot.run(server="auto")``."""
    import logging

    import bottle
    import werobot

    robot.wsgi.route("/healthz", "GET", healthz)  # a static route: matched before WeRoBot's
    # Banner: one line instead of Bottle's three. AutoServer's own ``quiet`` only gates that
    # banner: the adapter it picks is built without it, so waitress runs as it would anyway.
    bottle.AutoServer.quiet = True
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # per queued request
    banner = (
        f"WeRoBot {werobot.__version__} robot.run(server='auto') on http://{host}:{port}/: "
        f"Bottle {bottle.__version__} auto picks {_auto_pick()}"
    )
    print(banner, file=sys.stderr, flush=True)
    robot.run(server="auto", host=host, port=port)


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
    parser.add_argument(
        "--threads", type=int, help=f"granian, waitress, gthread (default {DEFAULT_THREADS})"
    )
    args = parser.parse_args(argv)
    if args.server == "run" and args.threads is not None:
        parser.error("--threads does not apply to --server run (robot.run chooses nothing)")
    threads = DEFAULT_THREADS if args.threads is None else args.threads
    if threads < 1:
        parser.error("--threads must be at least 1")
    os.environ[_ENV_CONFIG] = os.path.abspath(args.config)
    os.environ[_ENV_ACCOUNT] = args.account
    try:
        if args.server == "run":
            acc = account(args.config, args.account)
            robot = make_robot(acc["token"], acc["encoding_aes_key"], acc["appid"])
            serve_run(robot, args.host, args.port)
            return 0
        app = app_from_env()
    except ImportError as exc:
        print(f"error: {exc}; install the bench extras: pip install -e '.[bench]'")
        return 2
    if args.server == "granian":
        serve_granian(args.host, args.port, threads)
    elif args.server == "waitress":
        serve_waitress(app, args.host, args.port, threads)
    else:
        worker = args.server.removeprefix("gunicorn-")
        serve_gunicorn(app, args.host, args.port, worker, threads if worker == "gthread" else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
