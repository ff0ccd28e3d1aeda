"""Server processes for the bench: pinned to a CPU, health-checked, always stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


def pin(cpu: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that pins the child to ``cpu`` (None: no pinning)."""
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def pick_cpus(server_cpu: int, client_cpu: int) -> tuple[int | None, int | None]:
    """The CPUs to pin to, or (None, None) where affinity is unavailable."""
    if not hasattr(os, "sched_setaffinity"):
        print("note: no os.sched_setaffinity here; processes are not pinned")
        return None, None
    allowed = os.sched_getaffinity(0)
    if server_cpu not in allowed or client_cpu not in allowed or server_cpu == client_cpu:
        print(f"note: CPUs {server_cpu},{client_cpu} not both available ({sorted(allowed)})")
        return None, None
    return server_cpu, client_cpu


def child_env() -> dict[str, str]:
    """Our environment without the variables that would override the bench config."""
    drop = {"SCRM_DATABASE_URL", "SCRM_REDIS_URL", "SCRM_CONFIG"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM (a graceful stop), then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_group(proc: subprocess.Popen[Any]) -> None:
    """Stop a server started in its own session, then SIGKILL whatever of it is left.

    gunicorn and granian run worker processes; they stop with their parent, and this
    makes sure nothing of the session outlives the bench.
    """
    stop(proc)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def wait_healthy(proc: subprocess.Popen[Any], port: int, log: Path) -> None:
    """Poll ``GET /healthz`` until 200; fail if the server exits or takes too long."""
    url = f"http://127.0.0.1:{port}/healthz"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail(log)}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"server not healthy after {START_TIMEOUT:.0f}s:\n{tail(log)}")


def tail(log: Path, lines: int = 30) -> str:
    """The last lines of a server log."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def running(
    cmd: list[str], port: int, log: Path, cpu: int | None
) -> Iterator[subprocess.Popen[bytes]]:
    """A server subprocess, healthy inside the block and always stopped after it."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=child_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the server
            preexec_fn=pin(cpu),
        )
        try:
            wait_healthy(proc, port, log)
            yield proc
        finally:
            stop_group(proc)
