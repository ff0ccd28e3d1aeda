"""No log call passes an ``extra`` key that LogRecord owns (logging raises KeyError on it,
which once crashed start-up): scan every ``extra={...}`` in the source."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESERVED = set(vars(logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None))) | {
    "message",
    "asctime",
}


def _extra_keys() -> list[tuple[str, int, str]]:
    found = []
    for package in ("bot", "handlers", "sop", "storage"):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                for keyword in node.keywords:
                    if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict):
                        for key in keyword.value.keys:
                            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                                found.append((str(path.relative_to(ROOT)), node.lineno, key.value))
    return found


def test_log_extras_never_overwrite_record_attributes() -> None:
    keys = _extra_keys()
    assert keys, "the scan found no extra= at all"
    clashes = [(path, line, key) for path, line, key in keys if key in RESERVED]
    assert clashes == []
