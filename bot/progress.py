"""A progress bar on stderr for long CLI runs (SOP runs, broadcasts).

On a terminal it redraws one line (``claimed ███████░░░ 70% 7,000/10,000 1,234/s``);
elsewhere (CI logs, pipes) it prints only the final line of each stage, so logs stay
short.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

WIDTH = 24
CLEAR = "\x1b[K"


class ProgressBar:
    """Stages with a known total (or none); call ``update(stage, done)``, then ``close``."""

    def __init__(
        self, out: TextIO, totals: dict[str, int], now: Callable[[], float] = time.monotonic
    ) -> None:
        self.out = out
        self.totals = dict(totals)
        self.now = now
        self.live = out.isatty()
        self._stage = ""
        self._done = 0
        self._detail = ""
        self._started = now()

    def update(self, stage: str, done: int, detail: str = "") -> None:
        """Report ``done`` items of ``stage`` (a new stage ends the previous line);
        ``detail`` follows the numbers (``sent 7 · failed 1``)."""
        if stage != self._stage:
            self._finish_line()
            self._stage, self._started = stage, self.now()
        self._done, self._detail = done, detail
        if self.live:  # ESC [K clears what a longer line left behind
            self.out.write("\r" + self.line() + CLEAR)
            self.out.flush()

    def line(self) -> str:
        """The current stage as one line."""
        return self._numbers() + (f"  {self._detail}" if self._detail else "")

    def _numbers(self) -> str:
        total = self.totals.get(self._stage, 0)
        elapsed = max(self.now() - self._started, 1e-9)
        rate = f"{self._done / elapsed:,.0f}/s"
        if total <= 0:
            return f"  {self._stage} {self._done:,} {rate}"
        share = min(self._done / total, 1.0)
        filled = int(share * WIDTH)
        bar = "█" * filled + "░" * (WIDTH - filled)
        return f"  {self._stage} {bar} {share:4.0%} {self._done:,}/{total:,} {rate}"

    def _finish_line(self) -> None:
        if self._stage:
            self.out.write(
                ("\r" if self.live else "") + self.line() + (CLEAR if self.live else "") + "\n"
            )
            self.out.flush()

    def close(self) -> None:
        """End the last stage's line."""
        self._finish_line()
        self._stage = ""
