"""Jinja2 message templates: one file per message under ``templates/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


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
        """Every template name (without the .j2 suffix)."""
        return sorted(n.removesuffix(".j2") for n in self._env.list_templates(extensions=["j2"]))
