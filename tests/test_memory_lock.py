"""MemoryCache's per-key lock: taken at once when free, handed over in order when held."""

from __future__ import annotations

import asyncio

import pytest

from storage.cache import CacheError, MemoryCache
from storage.keys import KeyBuilder

LOCK = KeyBuilder(prefix="t").member_lock("oa:brand:oA")


async def _holding(cache: MemoryCache, name: str, order: list[str], go: asyncio.Event) -> None:
    async with cache.lock(LOCK, 5.0):
        order.append(f"{name} in")
        await go.wait()
        order.append(f"{name} out")


async def _until(predicate: object) -> None:
    for _ in range(1000):
        if callable(predicate) and predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_waiters_get_the_lock_in_the_order_they_came_and_it_is_freed_after() -> None:
    cache = MemoryCache()
    order: list[str] = []
    gates = {name: asyncio.Event() for name in ("a", "b", "c")}
    tasks = []
    for name in ("a", "b", "c"):
        tasks.append(asyncio.create_task(_holding(cache, name, order, gates[name])))
        await asyncio.sleep(0)  # each one asks in turn
    await _until(lambda: order == ["a in"])
    for name in ("c", "b", "a"):  # released out of order: the lock still goes a, b, c
        gates[name].set()
    await asyncio.gather(*tasks)
    assert order == ["a in", "a out", "b in", "b out", "c in", "c out"]
    assert cache._held == {}  # nothing left behind once the last holder leaves


async def test_a_waiter_past_its_wait_is_refused_and_leaves_the_line() -> None:
    cache = MemoryCache()
    go = asyncio.Event()
    order: list[str] = []
    holder = asyncio.create_task(_holding(cache, "a", order, go))
    await _until(lambda: order == ["a in"])
    with pytest.raises(CacheError, match="busy"):
        async with cache.lock(LOCK, 0.01):
            pytest.fail("entered a held lock")
    assert len(cache._held[LOCK.name]) == 0  # the refused waiter is out of the line
    go.set()
    await holder
    async with cache.lock(LOCK, 0.01):  # free again
        assert LOCK.name in cache._held
    assert cache._held == {}


async def test_a_cancelled_waiter_does_not_take_the_lock_from_the_next_one() -> None:
    cache = MemoryCache()
    order: list[str] = []
    go = {name: asyncio.Event() for name in ("a", "b", "c")}
    a = asyncio.create_task(_holding(cache, "a", order, go["a"]))
    await _until(lambda: order == ["a in"])
    b = asyncio.create_task(_holding(cache, "b", order, go["b"]))
    c = asyncio.create_task(_holding(cache, "c", order, go["c"]))
    await _until(lambda: len(cache._held[LOCK.name]) == 2)
    b.cancel()
    go["c"].set()
    go["a"].set()
    await asyncio.gather(a, c)
    with pytest.raises(asyncio.CancelledError):
        await b
    assert order == ["a in", "a out", "c in", "c out"]
    assert cache._held == {}


async def test_a_waiter_handed_the_lock_as_its_wait_ends_passes_it_on() -> None:
    # The holder releases (handing the lock to the waiter) in the same loop turn as the
    # waiter's timeout fires: the waiter gives up, and must not leave the lock held.
    cache = MemoryCache()
    await cache._acquire(LOCK, 1.0)
    waiter = asyncio.create_task(cache._acquire(LOCK, 0.05))
    await _until(lambda: len(cache._held[LOCK.name]) == 1)
    turn = cache._held[LOCK.name][0]
    cache._release(LOCK.name)  # hands over: the waiter's turn is set
    assert turn.done()
    assert not turn.cancelled()
    waiter.cancel()  # before it resumes, as its timeout firing in the same turn would
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert cache._held == {}  # passed on (to nobody): free
    async with cache.lock(LOCK, 0.01):
        assert LOCK.name in cache._held  # and taken again at once
