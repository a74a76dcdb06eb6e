"""Where do the crash test's kills land?  A measuring aid, off by default.

With ``PHENOSYNC_TEST_KILL_PROBE=DIR`` set, :class:`tests.servers.ServerProcess`
kills a server with SIGUSR2 first: each server process (each worker) writes
what it is doing at that moment (every asyncio task's chain of awaits and every
thread's stack, the frames in the project's code) to a file under ``DIR`` and
SIGKILLs itself; then the group is SIGKILLed as usual.  A Python signal handler
runs between two bytecodes of the main thread, so the moment is the kill's to
within that (a blocking call in C on the main thread delays it).

``python -m tests.kill_probe DIR`` reads the files: the code points the kills
landed in (a task's or thread's innermost function of the project, with its
outermost one), how many kills hit each, and how many distinct points the
first N kills cover, to see what fewer kills would miss.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tuple(str(ROOT / name) + os.sep for name in ("server", "sync", "exports", "schemas"))
ENV = "PHENOSYNC_TEST_KILL_PROBE"


def _label(frame: FrameType) -> str:
    return f"{os.path.relpath(frame.f_code.co_filename, ROOT)}:{frame.f_code.co_name}"


def _project(frames: list[FrameType]) -> list[FrameType]:
    return [f for f in frames if f.f_code.co_filename.startswith(PROJECT)]


def _awaits(coro: Any) -> list[FrameType]:
    """A coroutine's chain of awaits, outermost first."""
    frames = []
    while coro is not None:
        frame = (getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
                 or getattr(coro, "ag_frame", None))
        if frame is not None:
            frames.append(frame)
        coro = (getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
                or getattr(coro, "ag_await", None))
    return frames


def _stack(frame: FrameType | None) -> list[FrameType]:
    """A thread's stack, outermost first."""
    frames = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return frames[::-1]


def _point(kind: str, frames: list[FrameType]) -> str | None:
    ours = _project(frames)
    if not ours:
        return None
    inner, outer = _label(ours[-1]), _label(ours[0])
    return f"{kind} {inner}" + (f" (in {outer})" if outer != inner else "")


def install(path: str) -> None:
    """In a server process: on SIGUSR2, write the points to ``path.PID`` and die."""

    def dump(signum: int, interrupted: FrameType | None) -> None:
        points = []
        try:
            tasks = asyncio.all_tasks(asyncio.get_running_loop())
        except RuntimeError:
            tasks = set()
        for task in tasks:
            points.append(_point("task", _awaits(task.get_coro())))
        main = threading.main_thread().ident
        for ident, frame in sys._current_frames().items():
            stack = _stack(interrupted if ident == main else frame)
            points.append(_point("main" if ident == main else "thread", stack))
        text = "".join(f"{p}\n" for p in sorted(filter(None, points)))
        Path(f"{path}.{os.getpid()}").write_text(text or "idle\n")
        os.kill(os.getpid(), signal.SIGKILL)

    signal.signal(signal.SIGUSR2, dump)


def report(directory: Path) -> None:
    """Per server (database kind and port): each kill's points, then totals."""
    servers: dict[str, dict[str, set[str]]] = {}
    for file in sorted(directory.iterdir()):
        server, _, start = file.name.split(".")[0].rpartition("-")
        servers.setdefault(server, {}).setdefault(start, set()).update(
            file.read_text().splitlines())
    for server, kills in servers.items():
        hits = Counter(point for points in kills.values() for point in points)
        print(f"== {server}: {len(kills)} kills, {len(hits)} distinct points")
        for point, count in hits.most_common():
            print(f"{count:4d}  {point}")
        seen: set[str] = set()
        for n, points in enumerate(kills.values(), 1):
            seen |= points
            if n % 5 == 0 or n == len(kills):
                print(f"first {n:3d} kills: {len(seen)} points")


if __name__ == "__main__":
    report(Path(sys.argv[1]))
