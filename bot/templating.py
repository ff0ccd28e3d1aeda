"""Jinja2 message templates: one file per message under ``templates/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


class Renderer:
    """Renders ``templates/<name>.j2`` with strict undefined variables."""

    def __init__(self, directory: Path = TEMPLATES_DIR) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # noqa: S701 - chat text, not HTML
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def render(self, name: str, **variables: Any) -> str:
        """Render one template to text, trimmed."""
        return self._env.get_template(f"{name}.j2").render(**variables).strip()

    def names(self) -> list[str]:
        """Every template name (without the .j2 suffix)."""
        return sorted(n.removesuffix(".j2") for n in self._env.list_templates(extensions=["j2"]))
