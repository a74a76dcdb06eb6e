"""The export's read-ahead (``_prefetch``) stops cleanly when its consumer fails."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

import pytest

from exports.release import _prefetch


async def test_a_failed_step_closes_the_reader_even_with_the_read_ahead_full() -> None:
    closed = asyncio.Event()

    async def reader() -> AsyncGenerator[int, None]:
        try:
            n = 0
            while True:  # a large table: more batches than the read-ahead holds
                yield n
                n += 1
        finally:
            closed.set()  # the connection or the reader process is let go

    async def export() -> None:
        async with contextlib.aclosing(_prefetch(reader())) as batches:
            async for _ in batches:
                await asyncio.sleep(0.05)  # meanwhile the read-ahead fills up
                raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left"):
        await asyncio.wait_for(export(), 10)  # it hung here, waiting to hand on an end mark
    assert closed.is_set()


async def test_a_failed_read_reaches_the_consumer_after_the_batches_before_it() -> None:
    async def reader() -> AsyncGenerator[int, None]:
        yield 1
        yield 2
        raise RuntimeError("the database went away")

    got = []
    with pytest.raises(RuntimeError, match="went away"):
        async for n in _prefetch(reader()):
            got.append(n)
    assert got == [1, 2]
