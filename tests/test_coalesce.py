"""Coalescer: callers that arrive together share one call; results and errors per caller."""

from __future__ import annotations

import asyncio

import pytest

from bot.coalesce import Coalescer


class Recorder:
    """A write that records its batches and can be held open or made to fail."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        await self.gate.wait()
        if self.fail:
            raise ValueError("write failed")
        return [item * 10 for item in items]


async def test_callers_arriving_during_a_call_share_the_next_call() -> None:
    write = Recorder()
    shared = Coalescer(write)
    write.gate.clear()
    first = asyncio.create_task(shared.submit(1))
    await asyncio.sleep(0)  # the first call is in flight
    rest = [asyncio.create_task(shared.submit(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    write.gate.set()
    assert await first == 10
    assert [await t for t in rest] == [20, 30, 40]
    assert write.batches == [[1], [2, 3, 4]]


async def test_a_cap_splits_the_queue_and_every_caller_gets_its_result() -> None:
    write = Recorder()
    shared = Coalescer(write, cap=2)
    write.gate.clear()
    tasks = [asyncio.create_task(shared.submit(i)) for i in range(5)]
    await asyncio.sleep(0)
    write.gate.set()
    assert await asyncio.gather(*tasks) == [0, 10, 20, 30, 40]
    assert all(len(batch) <= 2 for batch in write.batches)
    assert sorted(i for batch in write.batches for i in batch) == [0, 1, 2, 3, 4]


async def test_a_failed_call_fails_each_of_its_callers_and_the_next_call_runs() -> None:
    write = Recorder()
    shared = Coalescer(write)
    write.fail = True
    results = await asyncio.gather(shared.submit(1), shared.submit(2), return_exceptions=True)
    assert [type(r) for r in results] == [ValueError, ValueError]
    write.fail = False
    assert await shared.submit(3) == 30
    write.fail = True
    with pytest.raises(ValueError, match="write failed"):
        await shared.submit(4)
