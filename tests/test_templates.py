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


def test_the_opt_out_hint_names_the_keyword() -> None:
    assert RENDERER.opt_out_hint() == "回复 TD 退订"


def test_there_is_a_marketing_template_to_check() -> None:
    assert "member_day_promo" in RENDERER.marketing_names()
    assert RENDERER.kind("welcome") == "service"


@pytest.mark.parametrize("name", RENDERER.marketing_names() or ["(no marketing template)"])
def test_every_marketing_template_ends_with_the_opt_out_hint(name: str) -> None:
    assert name in SAMPLES, "no marketing template found, or one without samples"
    text = RENDERER.render(name, **SAMPLES[name])
    assert text.endswith(RENDERER.opt_out_hint()), f"{name} must end with the opt-out hint"
