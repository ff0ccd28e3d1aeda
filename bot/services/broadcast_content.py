"""What a broadcast says, checked before it is created or previewed.

Content is a template from ``templates/`` (with fixed ``variables``), a fixed ``text``,
or, on ``oa_template``, a template message (``template_id``, ``data``, ``url``).
Marketing broadcasts use templates marked marketing (they end with the opt-out hint);
template messages carry service notices only. Per-member variables (member_name,
points, tier, code) exist only on per-recipient channels: mass send and WeCom tasks (to
customers or to customer groups) carry one content for everyone, so a template reading
them is refused there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.templating import Renderer

PER_MEMBER = frozenset({"member_name", "points", "tier", "code"})
PER_RECIPIENT = frozenset({"oa_cs", "oa_template"})
CHANNELS = ("oa_cs", "oa_template", "oa_mass", "wecom_customer", "wecom_group")
KINDS = ("marketing", "service")


class BroadcastError(ValueError):
    """A broadcast request the rules refuse (the message says which rule)."""


@dataclass(frozen=True, slots=True)
class Content:
    """A checked content: how to build each recipient's payload."""

    channel: str
    template: str = ""
    text: str = ""
    variables: Mapping[str, Any] = field(default_factory=dict)
    message: Mapping[str, Any] = field(default_factory=dict)  # oa_template only
    per_member: bool = False

    def payload(
        self, renderer: Renderer, member: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The outbox payload, for one member when the content reads per-member variables."""
        if self.channel == "oa_template":
            return dict(self.message)
        if not self.template:
            return {"text": self.text}
        values = dict(self.variables)
        if self.per_member:
            if member is None:
                raise BroadcastError("per-member content needs the member")
            values.update({k: member[k] for k in PER_MEMBER})
        return {"text": renderer.render(self.template, **values)}


def check(
    renderer: Renderer, channel: str, kind: str, template: str, content: Mapping[str, Any]
) -> Content:
    """The checked content, or BroadcastError naming the rule it breaks."""
    if channel not in CHANNELS:
        raise BroadcastError(f"channel must be one of {', '.join(CHANNELS)}, not {channel!r}")
    if kind not in KINDS:
        raise BroadcastError(f"kind must be marketing or service, not {kind!r}")
    if channel == "oa_template":
        return _template_message(kind, template, content)
    if template:
        return _from_template(renderer, channel, kind, template, content)
    text = str(content.get("text", "")).strip()
    if not text:
        raise BroadcastError("content needs a template or a text")
    if kind == "marketing":
        raise BroadcastError("a marketing broadcast must use a marketing template (opt-out hint)")
    return Content(channel, text=text)


def _template_message(kind: str, template: str, content: Mapping[str, Any]) -> Content:
    if kind != "service":
        raise BroadcastError("template messages carry service notices only, not marketing")
    if template:
        raise BroadcastError("oa_template takes a template_id and data, not a text template")
    template_id = str(content.get("template_id", ""))
    data = content.get("data")
    if not template_id or not isinstance(data, Mapping):
        raise BroadcastError("oa_template content needs template_id and data")
    message = {"template_id": template_id, "data": dict(data), "url": str(content.get("url", ""))}
    return Content(channel="oa_template", message=message)


def _from_template(
    renderer: Renderer, channel: str, kind: str, template: str, content: Mapping[str, Any]
) -> Content:
    if template not in renderer.names():
        raise BroadcastError(f"no template named {template!r}")
    template_kind = renderer.kind(template)
    if template_kind != kind:
        raise BroadcastError(
            f"a {kind} broadcast needs a {kind} template; {template!r} is {template_kind}"
        )
    raw = content.get("variables", {})
    if not isinstance(raw, Mapping) or not all(isinstance(k, str) for k in raw):
        raise BroadcastError("content.variables must be an object of name → text")
    variables = dict(raw)
    wanted = renderer.variables(template)
    per_member = sorted(wanted & PER_MEMBER)
    if per_member and channel not in PER_RECIPIENT:
        raise BroadcastError(
            f"{channel} sends one content to everyone: template {template!r} uses "
            f"per-member variables {', '.join(per_member)} (only oa_cs, oa_template)"
        )
    missing = sorted(wanted - PER_MEMBER - set(variables))
    if missing:
        raise BroadcastError(f"template {template!r} needs variables {', '.join(missing)}")
    checked = Content(channel, template=template, variables=variables, per_member=bool(per_member))
    sample = dict.fromkeys(PER_MEMBER, "") if per_member else None
    checked.payload(renderer, sample)  # renders now: a broken template fails at create
    return checked
