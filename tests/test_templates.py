"""Every template renders with its sample variables."""

from __future__ import annotations

import tomllib

import pytest

from bot.templating import TEMPLATES_DIR, Renderer

SAMPLES = tomllib.loads((TEMPLATES_DIR / "samples.toml").read_text(encoding="utf-8"))
RENDERER = Renderer()


def test_every_template_has_samples() -> None:
    assert set(RENDERER.names()) == set(SAMPLES)


@pytest.mark.parametrize("name", RENDERER.names())
def test_renders_with_samples(name: str) -> None:
    text = RENDERER.render(name, **SAMPLES[name])
    assert text
    assert "{{" not in text
    assert "{%" not in text
