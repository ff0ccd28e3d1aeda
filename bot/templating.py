"""Jinja2 message templates: one file per message under ``templates/``.

Files whose name starts with ``_`` are partials (``{% include "_optout.j2" %}``), not
messages. A template is *marketing* (promotions, member-day offers: anything a member
who sent 退订 must not receive) when its first line is the comment ``{# kind: marketing #}``.
Every marketing template must end with the opt-out hint, the partial ``_optout.j2``
("回复 TD 退订"); tests/test_templates.py checks every such template, so a new one cannot
forget it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
OPT_OUT_PARTIAL = "_optout"
_KIND = re.compile(r"\{#\s*kind:\s*([a-z_]+)\s*#\}")


class Renderer:
    """Renders ``templates/<name>.j2`` with strict undefined variables."""

    memo_size = 4096

    def __init__(self, directory: Path = TEMPLATES_DIR) -> None:
        # Templates are pure formatting, so equal variables give equal text: static
        # replies such as 帮助 render once.
        self._memo: dict[tuple[str, tuple[tuple[str, Any], ...]], str] = {}
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # noqa: S701 - chat text, not HTML
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def render(self, name: str, **variables: Any) -> str:
        """Render one template to text, trimmed (memoised for hashable variables)."""
        try:
            key = (name, tuple(sorted(variables.items())))
            hash(key)
        except TypeError:
            return self._render(name, variables)
        cached = self._memo.get(key)
        if cached is None:
            cached = self._render(name, variables)
            if len(self._memo) < self.memo_size:
                self._memo[key] = cached
        return cached

    def _render(self, name: str, variables: dict[str, Any]) -> str:
        return self._env.get_template(f"{name}.j2").render(**variables).strip()

    def names(self) -> list[str]:
        """Every message template name (without the .j2 suffix; partials excluded)."""
        return sorted(
            n.removesuffix(".j2")
            for n in self._env.list_templates(extensions=["j2"])
            if not n.startswith("_")
        )

    def kind(self, name: str) -> str:
        """``marketing`` when the template's first line says so, else ``service``."""
        loader = self._env.loader
        assert loader is not None
        source, _, _ = loader.get_source(self._env, f"{name}.j2")
        first = source.lstrip().partition("\n")[0]
        found = _KIND.fullmatch(first.strip())
        return found.group(1) if found else "service"

    def variables(self, name: str) -> set[str]:
        """The variables a template reads (undeclared in it or in the partials it includes)."""
        found: set[str] = set()
        pending, seen = [f"{name}.j2"], set()
        while pending:
            current = pending.pop()
            if current in seen:
                continue
            seen.add(current)
            loader = self._env.loader
            assert loader is not None
            source, _, _ = loader.get_source(self._env, current)
            parsed = self._env.parse(source)
            found |= jinja2.meta.find_undeclared_variables(parsed)
            pending.extend(
                ref for ref in jinja2.meta.find_referenced_templates(parsed) if ref is not None
            )
        return found

    def marketing_names(self) -> list[str]:
        """The templates marked marketing (they must end with the opt-out hint)."""
        return [n for n in self.names() if self.kind(n) == "marketing"]

    def opt_out_hint(self) -> str:
        """The hint every marketing message ends with (``templates/_optout.j2``)."""
        return self._render(OPT_OUT_PARTIAL, {})
