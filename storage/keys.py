"""The one builder of cache keys; every key it makes is paired with a TTL."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Key:
    """A cache key and how long it may live."""

    name: str
    ttl: int


@dataclass(frozen=True, slots=True)
class KeyBuilder:
    """Namespaced keys for dedupe, replies, rate limits, locks and replay checks."""

    prefix: str = "scrm"
    dedupe_ttl: int = 900

    def inbound(self, dedupe_key: str) -> Key:
        """Claimed when a callback is first processed."""
        return Key(f"{self.prefix}:in:{dedupe_key}", self.dedupe_ttl)

    def reply(self, dedupe_key: str) -> Key:
        """The plaintext reply given to a callback, for its retries."""
        return Key(f"{self.prefix}:reply:{dedupe_key}", self.dedupe_ttl)

    def rate(self, sender: str, minute: int) -> Key:
        """Commands a sender issued in one wall-clock minute."""
        return Key(f"{self.prefix}:rate:{sender}:{minute}", 120)

    def member_lock(self, sender: str) -> Key:
        """Serialises one sender's callbacks across processes."""
        return Key(f"{self.prefix}:lock:{sender}", 30)

    def nonce(self, account: str, timestamp: str, nonce: str) -> Key:
        """Plaintext-mode replay check: the body hash seen with this timestamp and nonce."""
        return Key(f"{self.prefix}:nonce:{account}:{timestamp}:{nonce}", 900)

    def token(self, name: str, ttl: int = 7200) -> Key:
        """A shared platform access token."""
        return Key(f"{self.prefix}:token:{name}", max(ttl, 1))

    def token_lock(self, name: str) -> Key:
        """Elects the one token refresher."""
        return Key(f"{self.prefix}:token-lock:{name}", 60)

    def api_pause(self, platform: str, app_id: str, api: str, seconds: int) -> Key:
        """An API paused for one account after its daily quota ran out."""
        return Key(f"{self.prefix}:pause:{platform}:{app_id}:{api}", max(seconds, 1))

    def rate_bucket(self, platform: str, app_id: str, api: str) -> Key:
        """The outbound token bucket of one API of one app (refilled within a minute)."""
        return Key(f"{self.prefix}:bucket:{platform}:{app_id}:{api}", 60)

    def identity(self, kind: str, app: str, value: str) -> Key:
        """identity → member cache; merges, undos and deletions must clear it."""
        return Key(f"{self.prefix}:idm:{kind}:{app}:{value}", 86400)

    def invite_qr(self, account: str, code: str, ttl: int) -> Key:
        """A member's referral QR ticket, kept a little less long than the ticket lives."""
        return Key(f"{self.prefix}:invite-qr:{account}:{code}", max(ttl, 1))

    def invite_media(self, account: str, code: str, ttl: int) -> Key:
        """The temporary media_id of a member's referral QR image (media live 3 days)."""
        return Key(f"{self.prefix}:invite-media:{account}:{code}", max(ttl, 1))

    def sop_leader(self, ttl: int) -> Key:
        """The scheduling leader's lease (its value is the holder's owner token)."""
        return Key(f"{self.prefix}:sop-leader", max(ttl, 1))
