"""The built-in SOPs of config.example.toml: every template exists, marketing ones are
marked and end with the opt-out hint, service ones are not marketing."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.config_sop import SopRule
from bot.templating import TEMPLATES_DIR, Renderer

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = load_settings(ROOT / "config.example.toml", env={})
RULES = {rule.id: rule for rule in SETTINGS.sop.rules}
SAMPLES = tomllib.loads((TEMPLATES_DIR / "samples.toml").read_text(encoding="utf-8"))
RENDERER = Renderer()
BUILT_IN = {
    "signin_streak": "signed_in_yesterday_not_today",
    "birthday": "birthday_today",
    "member_day": "member_day_active",
    "reactivation": "inactive",
    "welcome_series": "all",
    "points_expiry": "points_expiring",
    "tier_warning": "tier_warning",
}


def _of(kind: str) -> list[SopRule]:
    return [r for r in RULES.values() if r.kind == kind and r.action.template]


def test_the_example_enables_the_seven_built_in_sops() -> None:
    assert {i: r.audience.name for i, r in RULES.items() if r.enabled} == BUILT_IN
    assert RULES["birthday"].action.points == 200
    assert RULES["birthday"].action.coupon == "C10"
    assert RULES["birthday"].action.coupon in {r.code for r in SETTINGS.rewards}
    assert RULES["welcome_series"].trigger.delays == ("1d", "3d", "7d")
    assert RULES["reactivation"].audience.params == {"days": [30, 60]}


def test_marketing_and_service_both_have_templates() -> None:
    assert {r.id for r in _of("marketing")} == {
        "signin_streak",
        "member_day",
        "reactivation",
        "welcome_series",
    }
    assert {r.id for r in _of("service")} == {"birthday", "points_expiry", "tier_warning"}


@pytest.mark.parametrize("rule", _of("marketing"), ids=lambda r: r.id)
def test_a_marketing_sop_template_ends_with_the_opt_out_hint(rule: SopRule) -> None:
    name = rule.action.template
    assert RENDERER.kind(name) == "marketing", f"{name} must start with kind: marketing"
    for step in (1, 2, 3):  # the welcome series renders each step differently
        text = RENDERER.render(name, **{**SAMPLES[name], "step": step})
        assert text.endswith(RENDERER.opt_out_hint()), f"{name} must end with the hint"


@pytest.mark.parametrize("rule", _of("service"), ids=lambda r: r.id)
def test_a_service_sop_template_is_not_marketing(rule: SopRule) -> None:
    name = rule.action.template
    assert RENDERER.kind(name) == "service"
    assert RENDERER.opt_out_hint() not in RENDERER.render(name, **SAMPLES[name])
