"""Shared cache: Redis when configured, else in-process (the embedded default).

Only what intake needs lives here: claim-once keys, small values with TTLs, counters, a
per-key lock, and ``admit`` (a counter, a lock and one value read in one call: one Redis
script). On the callback hot path ``claim_admit`` adds the dedupe claim to that script, so
a callback costs two Redis round trips: that one before the handler, ``put`` (the reply and
the lock's release) after it. Every key comes from :mod:`storage.keys` and carries its
TTL.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from storage.entropy import random_token
from storage.futures import settle
from storage.keys import Key


class CacheError(RuntimeError):
    """The cache could not be reached or refused an operation."""


@dataclass(frozen=True, slots=True)
class Held:
    """A lock :meth:`Cache.admit` left held on exit, for :meth:`Cache.put` to release."""

    lock: Key
    token: str


@dataclass(frozen=True, slots=True)
class Gate:
    """What :meth:`Cache.admit` checks for one sender: count a use on ``rate`` and, within
    ``limit``, take ``lock`` and read ``peek`` (e.g. the sender's identity-cache entry)."""

    rate: Key
    limit: int
    lock: Key
    peek: Key | None = None


@dataclass(slots=True)
class Admission:
    """What :meth:`Cache.admit` found: the use count and the value of the ``peek`` key.

    ``peeked`` is None when no key was given, the key was absent, or the count was past the
    limit (nothing is read then). ``held`` is the sender's lock and its token (None past the
    limit); ``locked`` whether it is held yet (:meth:`Cache.claim_admit`'s one try may have
    found it busy: :meth:`Cache.hold` then waits for it). :meth:`keep` asks for the lock to
    be left held on exit.
    """

    count: int
    peeked: str | None = None
    held: Held | None = None
    kept: bool = False
    locked: bool = True
    peek: Key | None = None

    def keep(self) -> Held | None:
        """Leave the lock held when admit exits; the caller must release it with
        :meth:`Cache.put` (``release=``). None when nothing is locked (past the limit)."""
        self.kept = self.held is not None
        return self.held


class Cache(Protocol):
    """What intake and the outbound side need from a cache."""

    shared: bool

    async def claim(self, key: Key, value: str = "1") -> bool:
        """Set the key only if absent (SET NX); True when this caller set it."""

    async def get(self, key: Key) -> str | None:
        """The value, or None when absent or expired."""

    async def put(self, key: Key, value: str, release: Held | None = None) -> None:
        """Set the value with the key's TTL; then release a lock kept from :meth:`admit`
        (one round trip for both)."""

    async def delete(self, key: Key) -> None:
        """Remove the key."""

    async def incr(self, key: Key) -> int:
        """Increment a counter that expires with the key's TTL; returns the new value."""

    def lock(self, key: Key, wait: float) -> AbstractAsyncContextManager[None]:
        """Hold an exclusive lock on the key (async context manager)."""

    def admit(
        self, rate: Key, limit: int, lock: Key, wait: float, peek: Key | None = None
    ) -> AbstractAsyncContextManager[Admission]:
        """Count one use on ``rate`` and, within ``limit``, hold ``lock`` and read ``peek``.

        Yields the count and the value read (in the same round trip: e.g. the sender's
        identity cache entry). Past the limit nothing is locked or read. Raises
        :class:`CacheError` when the lock stays busy for ``wait`` seconds.
        """

    async def claim_admit(self, claim: Key, gate: Gate) -> Admission | None:
        """:meth:`claim` and, when this caller set the key, :meth:`admit`'s first step for
        ``gate`` (count, one try of the lock, the peek): one round trip for both.

        None when the key was claimed before (nothing is counted, locked or read). Else
        the admission, whose lock :meth:`hold` must then enter (or the caller release).
        """

    def hold(self, admission: Admission, wait: float) -> AbstractAsyncContextManager[Admission]:
        """Hold the lock of an admission from :meth:`claim_admit` around the block: waited
        for (and the peek read again) when its first try found it busy; released on exit
        unless kept. Raises :class:`CacheError` when it stays busy for ``wait`` seconds."""

    async def ping(self) -> bool:
        """True when the backing store answers."""

    async def close(self) -> None:
        """Release connections."""


class MemoryCache:
    """In-process cache for the single-process embedded default.

    Expired values go lazily (when read) and in small sweeps: per TTL, the keys stored with
    it in the order they will expire (every key of one TTL expires in the order it was
    stored), so a sweep only looks at what has expired, never at the whole cache.
    """

    shared = False

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._values: dict[str, tuple[str, float]] = {}
        self._expiring: dict[int, deque[tuple[float, str]]] = {}
        # a held lock's name → the futures of those waiting for it, first come first served
        self._held: dict[str, deque[asyncio.Future[None]]] = {}
        self._ops = 0

    def _live(self, name: str) -> str | None:
        item = self._values.get(name)
        if item is None:
            return None
        if item[1] <= self._now():
            del self._values[name]
            return None
        return item[0]

    def _store(self, key: Key, value: str) -> None:
        expires = self._now() + key.ttl
        self._values[key.name] = (value, expires)
        queue = self._expiring.get(key.ttl)
        if queue is None:
            queue = self._expiring[key.ttl] = deque()
        queue.append((expires, key.name))
        self._ops += 1
        if self._ops % 1024 == 0:
            self._sweep()

    def _sweep(self) -> None:
        now = self._now()
        for queue in self._expiring.values():
            while queue and queue[0][0] <= now:
                expires, name = queue.popleft()
                item = self._values.get(name)
                if item is not None and item[1] == expires:  # not stored again since
                    del self._values[name]

    async def claim(self, key: Key, value: str = "1") -> bool:
        """Set the key only if absent."""
        return self._claim(key, value)

    def _claim(self, key: Key, value: str) -> bool:
        if self._live(key.name) is not None:
            return False
        self._store(key, value)
        return True

    async def get(self, key: Key) -> str | None:
        """The value, or None."""
        return self._live(key.name)

    async def put(self, key: Key, value: str, release: Held | None = None) -> None:
        """Set the value with the key's TTL, then release a kept lock."""
        self._store(key, value)
        if release is not None:
            self._release(release.lock.name)

    async def delete(self, key: Key) -> None:
        """Remove the key."""
        self._values.pop(key.name, None)

    async def incr(self, key: Key) -> int:
        """Increment a counter."""
        return self._incr(key)

    def _incr(self, key: Key) -> int:
        current = self._live(key.name)
        value = int(current or 0) + 1
        if current is None:
            self._store(key, str(value))
        else:
            self._values[key.name] = (str(value), self._values[key.name][1])
        return value

    def lock(self, key: Key, wait: float) -> AbstractAsyncContextManager[None]:
        """A lock per key, held by one task at a time; waiters take turns in order."""
        return _MemoryLock(self, key, wait)

    async def _acquire(self, key: Key, wait: float) -> None:
        # Free: taken at once, nothing allocated but the (empty) queue of waiters and no
        # timer — the common case. Held: wait in line, up to ``wait`` seconds; the holder
        # hands the lock over to the first waiter when it releases.
        name = key.name
        waiters = self._held.get(name)
        if waiters is None:
            self._held[name] = deque()
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(turn)
        try:
            async with asyncio.timeout(wait):
                await turn
        except BaseException as exc:
            if turn.done() and not turn.cancelled():
                self._release(name)  # handed over just as we gave up: pass it on
            else:
                with suppress(ValueError):
                    waiters.remove(turn)
            if isinstance(exc, TimeoutError):
                raise CacheError(f"lock {name} busy") from None
            raise

    def _release(self, name: str) -> None:
        waiters = self._held[name]
        while waiters:
            turn = waiters.popleft()
            if not turn.done():  # still waiting: the lock is now theirs
                turn.set_result(None)
                return
        del self._held[name]

    def admit(
        self, rate: Key, limit: int, lock: Key, wait: float, peek: Key | None = None
    ) -> AbstractAsyncContextManager[Admission]:
        """:meth:`incr` then, within the limit, :meth:`lock` and :meth:`get` of ``peek``."""
        return _MemoryAdmit(self, Gate(rate, limit, lock, peek), wait)

    def _count(self, gate: Gate) -> Admission:
        # the lock is taken (and the peek read) by hold(): nothing here suspends
        count = self._incr(gate.rate)
        if count > gate.limit:
            return Admission(count)
        return Admission(count, None, Held(gate.lock, ""), locked=False, peek=gate.peek)

    async def claim_admit(self, claim: Key, gate: Gate) -> Admission | None:
        """:meth:`claim`, then the count of :meth:`admit` (the lock is taken by :meth:`hold`)."""
        return self._count(gate) if self._claim(claim, "1") else None

    def hold(self, admission: Admission, wait: float) -> AbstractAsyncContextManager[Admission]:
        """Take the admission's lock (and read its peek), release it on exit unless kept."""
        return _MemoryHold(self, admission, wait)

    async def ping(self) -> bool:
        """Always reachable."""
        return True

    async def close(self) -> None:
        """Nothing to release."""
        self._values.clear()


# MemoryCache's context managers are classes, not ``@asynccontextmanager`` generators: they
# are entered on every callback, and a class costs a fraction of a generator-based one.


class _MemoryLock:
    __slots__ = ("cache", "key", "wait")

    def __init__(self, cache: MemoryCache, key: Key, wait: float) -> None:
        self.cache, self.key, self.wait = cache, key, wait

    async def __aenter__(self) -> None:
        await self.cache._acquire(self.key, self.wait)

    async def __aexit__(self, *exc: object) -> None:
        self.cache._release(self.key.name)


class _MemoryHold:
    __slots__ = ("admission", "cache", "wait")

    def __init__(self, cache: MemoryCache, admission: Admission, wait: float) -> None:
        self.cache, self.admission, self.wait = cache, admission, wait

    async def __aenter__(self) -> Admission:
        admission = self.admission
        held = admission.held
        if held is not None and not admission.locked:
            await self.cache._acquire(held.lock, self.wait)
            admission.locked = True
            peek = admission.peek
            admission.peeked = None if peek is None else self.cache._live(peek.name)
        return admission

    async def __aexit__(self, *exc: object) -> None:
        admission = self.admission
        held = admission.held
        if held is not None and not admission.kept:  # past the limit: nothing was held
            self.cache._release(held.lock.name)


class _MemoryAdmit:
    __slots__ = ("cache", "gate", "hold", "wait")

    def __init__(self, cache: MemoryCache, gate: Gate, wait: float) -> None:
        self.cache, self.gate, self.wait = cache, gate, wait
        self.hold: _MemoryHold | None = None

    async def __aenter__(self) -> Admission:
        self.hold = _MemoryHold(self.cache, self.cache._count(self.gate), self.wait)
        return await self.hold.__aenter__()

    async def __aexit__(self, *exc: object) -> None:
        assert self.hold is not None
        await self.hold.__aexit__(*exc)


_UNLOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""

# KEYS: value, lock. ARGV: value, TTL (s), lock token. SET EX, then release the lock.
_PUT_RELEASE = """
redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2])
if redis.call('get', KEYS[2]) == ARGV[3] then redis.call('del', KEYS[2]) end
return 1
"""

# The admission: KEYS (from offset o): rate, lock[, peek]. ARGV: rate TTL (s), limit, lock
# token, lock TTL (ms). Returns {count, 1 when the lock was taken else 0[, peek's value or
# nil]}; past the limit the lock is not tried and nothing is read. ``again``: this call ran
# before (its reply was lost and the client sent it again): the use is not counted twice,
# and a lock already held by this token means the first run admitted it and took the lock,
# whatever the count is now (other calls may have been counted since: refusing it then
# would leave its lock held, by nobody, for the lock's whole TTL).
_ADMISSION = """
local count, limit = 0, tonumber(ARGV[2])
local held = 0
if again then
  count = tonumber(redis.call('get', KEYS[o + 1]) or '0')
  if count < 1 then count = 1 end
  if redis.call('get', KEYS[o + 2]) == ARGV[3] then
    held = 1
    if count > limit then count = limit end
  end
else
  count = redis.call('incr', KEYS[o + 1])
  redis.call('expire', KEYS[o + 1], ARGV[1], 'NX')
end
if held == 0 then
  if count > limit then return {count, 0} end
  if redis.call('set', KEYS[o + 2], ARGV[3], 'NX', 'PX', ARGV[4]) then held = 1 end
end
if KEYS[o + 3] then return {count, held, redis.call('get', KEYS[o + 3])} end
return {count, held}
"""
_ADMIT = "local o, again = 0, false\n" + _ADMISSION
# KEYS[1] the claim, then the admission's; ARGV[5] the claim's TTL (s). The claim's value is
# the caller's lock token, so a call the client sent again after losing its reply finds the
# claim its own (``again``) instead of a duplicate. {0}: claimed before by another delivery
# (nothing counted); else the admission's reply (its count is at least 1).
_CLAIM_ADMIT = (
    """
local o, again = 1, false
if not redis.call('set', KEYS[1], ARGV[3], 'NX', 'EX', ARGV[5]) then
  if redis.call('get', KEYS[1]) ~= ARGV[3] then return {0} end
  again = true
end
"""
    + _ADMISSION
)


# TCP keepalive on Redis connections: probed after 30 s idle, every 10 s, dropped after 3
# unanswered probes (where the platform has the options; else the system's defaults).
_KEEPALIVE: dict[int, int] = {
    option: value
    for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3))
    if (option := getattr(socket, name, None)) is not None
}

_Call = tuple[AsyncScript, list[str], list[str | int], asyncio.Future[Any]]


class _ScriptPipeline:
    """Script calls go to Redis in pipelines: one in flight, the next carrying every call
    made meanwhile.

    Concurrent callbacks each make the same two script calls. The first call made while
    nothing is in flight is sent at the end of its loop tick (with any made in that tick);
    calls made while a pipeline is in flight wait for it and then go together in the
    next, so under load many callbacks share one write and one read, on our side and
    Redis's, and with no load a call waits for nothing. The pipelines are sent by their
    own task, so a caller that is cancelled never cancels the others' calls; every call is
    still its own atomic script, run in the order made, and a failing call fails alone. A
    script Redis does not know (after a restart or SCRIPT FLUSH) is loaded and that call
    retried (after the rest of its pipeline).

    The pipelines have a connection of their own (one is in flight at a time), and each is
    one write of ``EVALSHA`` commands packed here (:func:`_pack_evalsha`) and one read of
    their replies through redis-py's connection and parser: redis-py's own pipeline
    encodes every argument through several type checks and wraps every read and write in a
    timeout of its own, which cost about a fifth of the server's time per sign-in on
    PostgreSQL + Redis. A connection that breaks (Redis closed an idle one) is replaced
    and the pipeline sent once more; the scripts bear running twice.

    Each pipeline has ``timeout`` seconds, retries and script loads included: one that
    gets no answer in time (a half-open connection) fails its calls with
    :class:`CacheError`, its connection is dropped (redis-py disconnects a connection whose
    read is cancelled) and the calls queued behind it go in the next, on a fresh one.
    """

    def __init__(self, redis: aioredis.Redis, timeout: float) -> None:
        self._redis = redis
        self._timeout = timeout
        self._queue: list[_Call] = []
        self._sender: asyncio.Task[None] | None = None
        pool = redis.connection_pool
        # the pipeline's own timeout bounds every read and write: none per socket call
        kwargs = {**pool.connection_kwargs, "socket_timeout": None}
        self._connection: AbstractConnection = pool.connection_class(**kwargs)

    def call(
        self, script: AsyncScript, keys: list[str], args: list[str | int]
    ) -> asyncio.Future[Any]:
        """Queue one script call for the next pipeline; await the returned future."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((script, keys, args, future))
        sender = self._sender
        # else the running sender takes it with its next batch (a sender left behind by a
        # closed loop is replaced)
        if sender is None or sender.done() or sender.get_loop() is not loop:
            self._sender = loop.create_task(self._drain())
        return future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._send(batch)
        finally:
            self._sender = None

    async def _send(self, batch: list[_Call]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._execute(batch)
        except TimeoutError:
            error = CacheError(f"redis did not answer within {self._timeout:g} s")
            for *_, future in batch:
                settle(future, error)
        except BaseException as error:  # the connection failed, or we were cancelled
            for *_, future in batch:
                settle(future, _failure(error))
            if not isinstance(error, Exception):
                for *_, future in self._queue:
                    settle(future, CacheError("cancelled"))
                self._queue = []
                raise

    async def _execute(self, batch: list[_Call]) -> None:
        packed: list[bytes] = []
        sent: list[_Call] = []
        for call in batch:
            script, keys, args, future = call
            try:
                packed.append(_pack_evalsha(script.sha, keys, args))
            except (TypeError, ValueError) as error:  # not str/int, a lone surrogate
                settle(future, error)  # that call fails alone
                continue
            sent.append(call)
        if not sent:
            return
        try:
            results = await self._exchange(packed)
        except aioredis.ConnectionError:  # a connection Redis had closed: once more
            results = await self._exchange(packed)
        for (script, keys, args, future), result in zip(sent, results, strict=True):
            if isinstance(result, NoScriptError):  # loaded (and run) by redis-py's call
                result = await _attempt(script(keys=keys, args=args))
            settle(future, result)

    async def _exchange(self, packed: list[bytes]) -> list[Any]:
        """Write the commands, read one reply each (a script's error is its reply)."""
        connection = self._connection
        await connection.send_packed_command(packed, check_health=False)
        results: list[Any] = []
        for _ in packed:
            try:
                results.append(await connection.read_response())
            except aioredis.ResponseError as error:
                results.append(error)
        return results

    async def wait(self) -> None:
        """Let the pipelines in flight and queued finish (before the pool closes)."""
        if self._sender is not None:
            await asyncio.gather(self._sender, return_exceptions=True)

    async def close(self) -> None:
        """After :meth:`wait`: close the pipelines' connection."""
        await self.wait()
        await self._connection.disconnect()


def _pack_evalsha(sha: str, keys: list[str], args: list[str | int]) -> bytes:
    """``EVALSHA sha numkeys key… arg…`` in RESP; keys and arguments are str or int."""
    items = [sha, len(keys), *keys, *args]
    parts = [b"*%d\r\n$7\r\nEVALSHA\r\n" % (len(items) + 1)]
    for item in items:
        if type(item) is str:
            data = item.encode()
        elif type(item) is int:
            data = b"%d" % item
        else:
            raise TypeError(f"a script argument must be str or int, not {type(item).__name__}")
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


async def _attempt(call: Awaitable[Any]) -> Any:
    try:
        return await call
    except Exception as error:  # handed to that call's caller, not to the batch
        return _failure(error)


def _failure(error: BaseException) -> Exception:
    """What a caller is given for a failed call: Redis out of reach (connection lost, no
    answer in time) is a :class:`CacheError`; a script's own error stays what it is."""
    if isinstance(error, aioredis.ConnectionError | aioredis.TimeoutError | OSError):
        failure = CacheError(f"redis unreachable: {error}")
        failure.__cause__ = error
        return failure
    return error if isinstance(error, Exception) else CacheError("cancelled")


@contextmanager
def _reachable() -> Iterator[None]:
    """Redis out of reach inside the block raises :class:`CacheError` (see :func:`_failure`)."""
    try:
        yield
    except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as error:
        raise _failure(error) from error


class RedisCache:
    """Redis-backed cache shared by every process of a deployment.

    The two calls of the callback hot path (:meth:`claim_admit`, :meth:`put` with a lock
    to release) go through one pipeline for concurrent callers (:class:`_ScriptPipeline`).

    Nothing waits on a silent connection for long: every read and write has ``timeout``
    seconds (on the script pipeline's own connection, each pipeline as a whole has them),
    a connect ``connect_timeout``, and TCP
    keepalive finds a peer gone away between uses (``[redis]`` in the settings). A command
    whose connection breaks (a pooled connection Redis closed, a reply lost) is sent once
    more on a fresh connection; a timeout is not retried. Whatever runs through here must
    bear running twice: :meth:`claim_admit` knows its own claim by its token.
    """

    shared = True

    def __init__(self, url: str, timeout: float = 1.0, connect_timeout: float = 1.0) -> None:
        self._redis = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=connect_timeout,
            socket_keepalive=True,
            socket_keepalive_options=_KEEPALIVE,
            retry=Retry(NoBackoff(), 1, supported_errors=(aioredis.ConnectionError,)),
        )
        self._pipeline = _ScriptPipeline(self._redis, timeout)
        self._unlock = self._redis.register_script(_UNLOCK)
        self._admit = self._redis.register_script(_ADMIT)
        self._claim_admit = self._redis.register_script(_CLAIM_ADMIT)
        self._put_release = self._redis.register_script(_PUT_RELEASE)

    def script(self, source: str) -> AsyncScript:
        """Register a Lua script on this connection pool (other shared state, one script)."""
        return self._redis.register_script(source)

    async def run(self, script: AsyncScript, keys: list[str], args: list[str | int]) -> Any:
        """Run a registered script (:meth:`script`) in the next pipeline of concurrent calls."""
        return await self._pipeline.call(script, keys, args)

    async def claim(self, key: Key, value: str = "1") -> bool:
        """SET NX EX."""
        with _reachable():
            return bool(await self._redis.set(key.name, value, ex=key.ttl, nx=True))

    async def get(self, key: Key) -> str | None:
        """GET."""
        with _reachable():
            value = await self._redis.get(key.name)
        return None if value is None else str(value)

    async def put(self, key: Key, value: str, release: Held | None = None) -> None:
        """SET EX; with a kept lock, one script that also releases it."""
        if release is None:
            with _reachable():
                await self._redis.set(key.name, value, ex=key.ttl)
            return
        await self.run(
            self._put_release, [key.name, release.lock.name], [value, key.ttl, release.token]
        )

    async def delete(self, key: Key) -> None:
        """DEL."""
        with _reachable():
            await self._redis.delete(key.name)

    async def incr(self, key: Key) -> int:
        """INCR, with the TTL set on first use (one round trip)."""
        with _reachable():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(key.name)
                pipe.expire(key.name, key.ttl, nx=True)
                value, _ = await pipe.execute()
        return int(value)

    @asynccontextmanager
    async def lock(self, key: Key, wait: float) -> AsyncIterator[None]:
        """SET NX PX with a random token, polled until ``wait``; released by a script."""
        token = random_token()
        await self._acquire(key, token, time.monotonic() + wait)
        try:
            yield
        finally:
            await self._unlock(keys=[key.name], args=[token])

    def admit(
        self, rate: Key, limit: int, lock: Key, wait: float, peek: Key | None = None
    ) -> AbstractAsyncContextManager[Admission]:
        """One script: INCR + EXPIRE NX and, within the limit, SET NX PX and GET ``peek``;
        then :meth:`hold`. A kept lock is released by :meth:`put` (or expires with its TTL)."""
        return _RedisAdmit(self, Gate(rate, limit, lock, peek), wait)

    async def _admitted(self, gate: Gate, wait: float) -> Admission:
        token = random_token()
        result = await self._admit(keys=_gate_keys(gate), args=_gate_args(gate, token))
        return _admission(result, gate, token)

    async def claim_admit(self, claim: Key, gate: Gate) -> Admission | None:
        """One script: SET NX EX of ``claim`` and, when set, :meth:`admit`'s script."""
        token = random_token()
        result = await self._pipeline.call(
            self._claim_admit,
            [claim.name, *_gate_keys(gate)],
            [*_gate_args(gate, token), claim.ttl],
        )
        return _admission(result, gate, token) if int(result[0]) else None

    def hold(self, admission: Admission, wait: float) -> AbstractAsyncContextManager[Admission]:
        """A lock the script found busy is polled, and ``peek`` read again once it is held
        (its holder may have changed the value); released on exit unless kept."""
        return _RedisHold(self, admission, wait)

    async def _take_held(self, admission: Admission, wait: float) -> None:
        held = admission.held
        if held is None or admission.locked:  # past the limit, or the script took it
            return
        await self._acquire(held.lock, held.token, time.monotonic() + wait, tried=True)
        admission.locked = True
        admission.peeked = None if admission.peek is None else await self.get(admission.peek)

    async def _let_go(self, admission: Admission) -> None:
        held = admission.held
        if held is not None and not admission.kept:
            await self._unlock(keys=[held.lock.name], args=[held.token])

    async def _acquire(self, key: Key, token: str, deadline: float, tried: bool = False) -> None:
        # SET NX PX, polled (5 ms doubling to 100 ms) until the deadline; ``tried`` when the
        # first attempt was already made (by the admit script).
        delay = 0.005
        while tried or not await self._take(key, token):
            tried = False
            if time.monotonic() >= deadline:
                raise CacheError(f"lock {key.name} busy")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def _take(self, key: Key, token: str) -> bool:
        with _reachable():
            return bool(await self._redis.set(key.name, token, px=key.ttl * 1000, nx=True))

    async def ping(self) -> bool:
        """PING."""
        try:
            return bool(await self._redis.ping())
        except (aioredis.RedisError, OSError):
            return False

    async def close(self) -> None:
        """Close the connection pool (after the pipelines in flight)."""
        await self._pipeline.close()
        await self._redis.aclose()


class _RedisHold:
    __slots__ = ("admission", "cache", "wait")

    def __init__(self, cache: RedisCache, admission: Admission, wait: float) -> None:
        self.cache, self.admission, self.wait = cache, admission, wait

    async def __aenter__(self) -> Admission:
        await self.cache._take_held(self.admission, self.wait)
        return self.admission

    async def __aexit__(self, *exc: object) -> None:
        await self.cache._let_go(self.admission)


class _RedisAdmit:
    __slots__ = ("admission", "cache", "gate", "wait")

    def __init__(self, cache: RedisCache, gate: Gate, wait: float) -> None:
        self.cache, self.gate, self.wait = cache, gate, wait
        self.admission: Admission | None = None

    async def __aenter__(self) -> Admission:
        admission = await self.cache._admitted(self.gate, self.wait)
        await self.cache._take_held(admission, self.wait)
        self.admission = admission
        return admission

    async def __aexit__(self, *exc: object) -> None:
        assert self.admission is not None
        await self.cache._let_go(self.admission)


def _gate_keys(gate: Gate) -> list[str]:
    keys = [gate.rate.name, gate.lock.name]
    return keys if gate.peek is None else [*keys, gate.peek.name]


def _gate_args(gate: Gate, token: str) -> list[str | int]:
    return [gate.rate.ttl, gate.limit, token, gate.lock.ttl * 1000]


def _admission(result: list[Any], gate: Gate, token: str) -> Admission:
    """An Admission from the admission script's reply ``{count, locked[, peeked]}``."""
    count = int(result[0])
    if count > gate.limit:
        return Admission(count)
    peeked = None if len(result) < 3 or result[2] is None else str(result[2])
    return Admission(count, peeked, Held(gate.lock, token), locked=bool(result[1]), peek=gate.peek)


def make_cache(url: str, timeout: float = 1.0, connect_timeout: float = 1.0) -> Cache:
    """Redis when a URL is given (with its read/write and connect timeouts in seconds), else
    the in-process cache."""
    return RedisCache(url, timeout, connect_timeout) if url else MemoryCache()
