"""Who runs the scheduler: a renewable Redis lease, or the one process of the embedded default.

Only the leader fires SOPs and daily jobs. The Redis lease is a key set with ``SET NX PX``
to an owner token; renewal and release compare the token first (one Lua script each), so
a process that lost the lease can never extend or delete its successor's. The lease lasts
``[sop] lease_seconds``; the scheduler renews it every third of that and a follower tries
to take it every third of that, so a dead leader is replaced within the lease time.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Protocol

import redis.asyncio as aioredis

from storage.keys import Key

log = logging.getLogger("sop.leader")

# KEYS: lease. ARGV: token, TTL (ms). Take the lease, or extend it when we hold it.
_ACQUIRE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def owner_token() -> str:
    """A token naming this process (host, pid) and unique per instance."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Leadership(Protocol):
    """The scheduling lease as the scheduler sees it."""

    owner: str
    lease_seconds: int

    @property
    def is_leader(self) -> bool:
        """True while this process holds the lease (as far as it last knew)."""

    async def acquire(self) -> bool:
        """Take the lease if it is free (or extend it if held); True when held."""

    async def renew(self) -> bool:
        """Extend the lease; False when it was lost (another process holds it now)."""

    async def release(self) -> None:
        """Give the lease up (only if still held)."""


class LocalLeadership:
    """The embedded default: one process, always the leader while it runs."""

    def __init__(self, lease_seconds: int = 30, owner: str | None = None) -> None:
        self.owner = owner or owner_token()
        self.lease_seconds = lease_seconds
        self._held = False

    @property
    def is_leader(self) -> bool:
        """True between acquire and release."""
        return self._held

    async def acquire(self) -> bool:
        """Always succeeds."""
        if not self._held:
            log.info("scheduling leader (in-process)", extra={"owner": self.owner})
        self._held = True
        return True

    async def renew(self) -> bool:
        """Held unless released."""
        return self._held

    async def release(self) -> None:
        """Stop leading."""
        self._held = False


class RedisLeadership:
    """A lease in Redis shared by every process of a deployment."""

    def __init__(
        self, client: aioredis.Redis, key: Key, owner: str | None = None, *, close: bool = False
    ) -> None:
        self.owner = owner or owner_token()
        self.lease_seconds = key.ttl
        self._redis = client
        self._key = key
        self._close = close
        self._held = False
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @classmethod
    def from_url(cls, url: str, key: Key, owner: str | None = None) -> RedisLeadership:
        """A leadership with its own connection pool (closed by :meth:`close`)."""
        return cls(aioredis.Redis.from_url(url, decode_responses=True), key, owner, close=True)

    @property
    def is_leader(self) -> bool:
        """True while the last acquire or renew found the lease ours."""
        return self._held

    async def acquire(self) -> bool:
        """SET NX PX (or extend our own lease); Redis errors count as not held."""
        try:
            held = bool(await self._acquire(keys=[self._key.name], args=self._args()))
        except (aioredis.RedisError, OSError):
            log.exception("could not reach Redis for the scheduling lease")
            held = False
        self._changed(held)
        return held

    async def renew(self) -> bool:
        """Compare-and-extend; False (and no longer leader) when the lease is gone."""
        try:
            held = bool(await self._renew(keys=[self._key.name], args=self._args()))
        except (aioredis.RedisError, OSError):
            log.exception("could not renew the scheduling lease")
            held = False
        self._changed(held)
        return held

    async def release(self) -> None:
        """Compare-and-delete, so a successor's lease is never removed."""
        was = self._held
        self._held = False
        try:
            await self._release(keys=[self._key.name], args=[self.owner])
        except (aioredis.RedisError, OSError):
            log.exception("could not release the scheduling lease")
        if was:
            log.info("scheduling lease released", extra={"owner": self.owner})

    async def close(self) -> None:
        """Close the connection pool when this object made it."""
        if self._close:
            await self._redis.aclose()

    def _args(self) -> list[str | int]:
        return [self.owner, self.lease_seconds * 1000]

    def _changed(self, held: bool) -> None:
        if held and not self._held:
            log.info("became the scheduling leader", extra={"owner": self.owner})
        elif self._held and not held:
            log.warning("lost the scheduling lease", extra={"owner": self.owner})
        self._held = held
