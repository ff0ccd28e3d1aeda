"""TimeoutBudget: waits for a handler up to the budget, never cancels it, leaves nothing behind."""

from __future__ import annotations

import asyncio

import pytest

from bot.wechat.budget import TimeoutBudget


async def test_a_task_done_within_the_budget_is_waited_for() -> None:
    task = asyncio.create_task(asyncio.sleep(0.01, result="reply"))
    assert await TimeoutBudget(1.0).wait(task)
    assert task.result() == "reply"


async def test_past_the_budget_it_answers_false_and_the_task_runs_on() -> None:
    finish = asyncio.Event()
    task = asyncio.create_task(finish.wait())
    assert not await TimeoutBudget(0.01).wait(task)
    assert not task.done()  # never cancelled: it finishes in the background
    finish.set()
    assert await task


async def test_a_failed_task_counts_as_finished() -> None:
    async def boom() -> None:
        await asyncio.sleep(0)
        raise ValueError("handler failed")

    task = asyncio.create_task(boom())
    assert await TimeoutBudget(1.0).wait(task)
    with pytest.raises(ValueError, match="handler failed"):
        task.result()


async def test_a_cancelled_wait_leaves_the_task_running_without_our_callback() -> None:
    finish = asyncio.Event()
    task = asyncio.create_task(finish.wait())
    await asyncio.sleep(0)
    callbacks_before = len(task._callbacks or ())
    waiting = asyncio.create_task(TimeoutBudget(5.0).wait(task))
    await asyncio.sleep(0.01)
    waiting.cancel()  # the client went away
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not task.done()
    assert len(task._callbacks or ()) == callbacks_before
    finish.set()
    await task
