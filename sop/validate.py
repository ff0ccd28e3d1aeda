"""Start-up checks of the SOP rules that need the rest of the program.

The structure of a rule is checked when the settings load (bot/config_sop.py); here:
the audience exists and takes the parameters given, the template exists and its kind
matches the rule's (a marketing SOP sends only templates that carry the opt-out hint; a
service SOP sends no marketing), marketing content is never routed to a template message
(no ``[notify] templates`` entry for a marketing SOP's template), the account and the
coupon's reward exist. Any failure stops start-up with an error naming the SOP id.
"""

from __future__ import annotations

from bot.config import ConfigError, Settings
from bot.config_sop import SopRule
from bot.templating import Renderer
from sop.audiences import AudienceError, check_audience


class SopConfigError(ConfigError):
    """A SOP rule that cannot run."""


def validate_rules(settings: Settings, renderer: Renderer, source: str = "settings") -> None:
    """Raise SopConfigError for the first rule that cannot run (every rule is checked)."""
    rewards = {r.code for r in settings.rewards}
    templates = set(renderer.names())
    for rule in settings.sop.rules:
        problem = _problem(rule, settings, renderer, templates, rewards)
        if problem:
            raise SopConfigError(source, f"sop.rules[{rule.id}]", f"SOP {rule.id}: {problem}")


def _problem(
    rule: SopRule,
    settings: Settings,
    renderer: Renderer,
    templates: set[str],
    rewards: set[str],
) -> str:
    try:
        check_audience(rule)
    except AudienceError as exc:
        return f"audience: {exc}"
    # what needs the settings too fails here, not at the first fire (no database yet)
    known = {t.code for t in settings.membership.tiers}
    unknown = sorted(set(rule.audience.params.get("tiers", ())) - known)
    if unknown:
        return f"audience: unknown tier {', '.join(unknown)} (tiers: {', '.join(sorted(known))})"
    if rule.account and rule.account not in settings.accounts:
        return f"account {rule.account!r} is not an [accounts] name"
    if rule.action.coupon and rule.action.coupon not in rewards:
        return f"coupon {rule.action.coupon!r} is not a [[rewards]] code"
    template = rule.action.template
    if not template:
        return ""
    if template not in templates:
        return f"no template templates/{template}.j2"
    kind = renderer.kind(template)
    if rule.kind == "marketing" and kind != "marketing":
        return f"template {template} is not marked marketing (it lacks the opt-out hint)"
    if rule.kind == "service" and kind == "marketing":
        return f"template {template} is marketing content but the SOP is a service SOP"
    if rule.kind == "marketing" and template in settings.notify.templates:
        return f"marketing content cannot go out as a template message ([notify] {template})"
    return ""
