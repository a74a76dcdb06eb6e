"""Shared pieces of the property-based tests of untrusted input.

Hypothesis runs synchronous tests; the app, its database pool and the httpx
client live on the session's event loop.  A property that talks to the app
runs in a worker thread (``asyncio.to_thread``) and hands each request to the
loop with ``call`` (the pattern of tests/sync/test_client_properties.py).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

T = TypeVar("T")

#: Multiplies every example budget: ``PHENOSYNC_FUZZ_SCALE=20`` for a longer
#: run than CI's (docs/operations.md, "Fuzzing").
SCALE = int(os.environ.get("PHENOSYNC_FUZZ_SCALE", "1"))
#: Deterministic and bounded: the suite's budget, not a fuzzing campaign.
FAST = settings(
    max_examples=200 * SCALE, derandomize=True, database=None, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
#: For properties that make a request per example.
REQUESTS = settings(FAST, max_examples=40 * SCALE)

#: Any JSON value.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)

#: Text a header may carry: HTTP headers are bytes, Starlette decodes latin-1.
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                    blacklist_characters="\x7f"), max_size=80)


def call(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the session loop from a worker thread; wait for it."""
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)
