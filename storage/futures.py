"""Handing a result to a waiting caller's future, shared by the batching writers."""

from __future__ import annotations

import asyncio
from typing import TypeVar

R = TypeVar("R")


def settle(future: asyncio.Future[R], result: R | BaseException) -> None:
    """Resolve the future with the result, or fail it when the result is an exception;
    a future already done (its caller was cancelled) is left alone."""
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
