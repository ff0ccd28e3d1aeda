"""The envelope every parsed callback travels in, whatever its platform."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

# Events the platform sends about its own jobs: FromUserName is the mass-send assistant,
# no member (TEMPLATESENDJOBFINISH, by contrast, comes from the recipient's openid).
PLATFORM_EVENTS = frozenset({"event:masssendjobfinish"})

Platform = Literal["oa", "wecom"]


@dataclass(frozen=True, slots=True)
class Inbound:
    """One parsed callback: the typed event plus what intake needs to know about it."""

    platform: Platform
    account: str
    event: Any
    kind: str
    sender: str
    recipient: str
    create_time: int
    dedupe_key: str
    plaintext: str

    @property
    def from_member(self) -> bool:
        """True when a person (member or staff) sent it, not the platform itself.

        MASSSENDJOBFINISH comes from the platform's mass-send assistant, not a member.
        """
        return self.sender not in ("", "sys") and self.kind not in PLATFORM_EVENTS


MAX_KEY_LENGTH = 200


def clamp_key(key: str) -> str:
    """Keep dedupe keys short enough for an indexed column, hashing an overlong tail."""
    if len(key) <= MAX_KEY_LENGTH:
        return key
    digest = hashlib.sha1(key.encode()).hexdigest()
    return key[: MAX_KEY_LENGTH - 41] + "#" + digest
