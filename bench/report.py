"""The bench's report: one table of every round, then medians, ratios and the verdict."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

Round = dict[str, dict[str, Any]]  # server name → loadgen result (+ "rows" for full)

# The "≥ 1× WeRoBot" target is judged against WeRoBot as it runs itself; every other
# WeRoBot variant measured is reported beside it, met or not, with what it is.
WEROBOT_JUDGED = "werobot-run"
WEROBOT_NOTES = {
    "werobot-granian": "not a WeRoBot-supported server; fastest WSGI host found",
}
WEROBOT_NOTE = "not WeRoBot's own robot.run: a server and settings the bench chose"


@dataclass(frozen=True)
class Target:
    """What the full server must reach on a path."""

    vs_ceiling: float
    vs_werobot: float | None  # None: no WeRoBot target on this path
    p99_ms: float = 50.0

    def text(self, connections: int) -> str:
        """The target in words."""
        parts = [f"full ≥ {self.vs_ceiling:g}× ceiling"]
        if self.vs_werobot is not None:
            parts.append(f"≥ {self.vs_werobot:g}× WeRoBot as it runs itself ({WEROBOT_JUDGED})")
        parts.append(f"full p99 < {self.p99_ms:g} ms at {connections} connections")
        return "target: " + ", ".join(parts)


def _names(rounds: list[Round]) -> list[str]:
    """The servers measured, in the order of the rounds' results."""
    return list(dict.fromkeys(name for r in rounds for name in r))


def table(rounds: list[Round]) -> list[str]:
    """Every measurement, one line each."""
    width = max([8, *map(len, _names(rounds))]) + 2
    head = f"{'round':<6}{'server':<{width}}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
    lines = [head + f"{'window s':>10}{'cpu ms/req':>12}  rows written (full)"]
    for i, results in enumerate(rounds, 1):
        for name, r in results.items():
            rows = r.get("rows")
            lines.append(
                f"{i:<6}{name:<{width}}{r['rps']:>9.0f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}"
                f"{r['errors']:>8}{r['seconds']:>10.1f}{_cpu(r):>12}  "
                + (", ".join(f"{t} {n}" for t, n in rows.items()) if rows else "")
            )
    return lines


def _cpu(result: dict[str, Any]) -> str:
    cpu = result.get("server_cpu_ms_per_request")
    return "-" if cpu is None else f"{cpu:.3f}"


def _median(rounds: list[Round], name: str, key: str) -> float:
    values = [r[name][key] for r in rounds if name in r]
    return statistics.median(values) if values else math.nan


def _median_cpu(rounds: list[Round], name: str) -> str:
    values = [
        r[name]["server_cpu_ms_per_request"]
        for r in rounds
        if name in r and r[name].get("server_cpu_ms_per_request") is not None
    ]
    return f"{statistics.median(values):.3f}" if values else "-"


def _ratios(rounds: list[Round], over: str) -> list[float]:
    return [
        r["full"]["rps"] / r[over]["rps"]
        for r in rounds
        if "full" in r and over in r and r[over]["rps"]
    ]


def summary(rounds: list[Round], target: Target, connections: int) -> list[str]:
    """Medians per server, the full server's ratios, what answered, and the verdict."""
    names = _names(rounds)
    width = max([8, *map(len, names)])
    lines = ["", "medians over rounds:"]
    for name in names:
        lines.append(
            f"  {name:<{width}} {_median(rounds, name, 'rps'):>7.0f} req/s   "
            f"p50 {_median(rounds, name, 'p50_ms'):5.1f} ms   "
            f"p99 {_median(rounds, name, 'p99_ms'):5.1f} ms   "
            f"server CPU {_median_cpu(rounds, name)} ms/request"
        )
    verdict: list[str] = []
    beside: list[str] = []  # the WeRoBot variants the target is not judged against
    for over in names:
        ratios = _ratios(rounds, over) if over != "full" else []
        if not ratios:
            continue
        ratio = statistics.median(ratios)
        listed = ", ".join(f"{x:.2f}" for x in ratios)
        lines.append(f"ratio full/{over} (req/s): median {ratio:.2f} of [{listed}]")
        want = target.vs_ceiling if over == "ceiling" else target.vs_werobot
        if want is None:
            continue
        met = "met" if ratio >= want else "NOT met"
        if over in ("ceiling", WEROBOT_JUDGED):
            verdict.append(f"vs {over} {met}")
        else:
            note = WEROBOT_NOTES.get(over, WEROBOT_NOTE)
            beside.append(f"vs {over} ({note}): {ratio:.2f}× {met}")
    if target.vs_werobot is not None and beside and not _ratios(rounds, WEROBOT_JUDGED):
        verdict.append(f"vs WeRoBot not judged ({WEROBOT_JUDGED} not measured)")
    if "full" in names:
        p99 = _median(rounds, "full", "p99_ms")
        verdict.append(f"full p99 {'met' if p99 < target.p99_ms else 'NOT met'}")
        lines += _answered(rounds)
    lines.append(target.text(connections))
    if verdict:
        lines.append("verdict: " + ", ".join(verdict))
    lines += [f"  beside it: {b}" for b in beside]
    return lines


def _answered(rounds: list[Round]) -> list[str]:
    kinds: dict[str, int] = {}
    for r in rounds:
        for kind, n in r.get("full", {}).get("reply_kinds", {}).items():
            kinds[kind] = kinds.get(kind, 0) + n
    lines = ["full server's sampled replies (first line, digits as #):"]
    lines += [f"  {n:>5} × {kind}" for kind, n in sorted(kinds.items(), key=lambda kv: -kv[1])]
    return lines
