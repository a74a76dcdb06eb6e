"""A real server in child processes, for tests that talk HTTP to it or kill it.

``ServerProcess`` runs ``uvicorn --factory server.app:create_app`` (what
``phenosync serve`` runs, without its migrate step: tests migrate first), with
any number of worker processes, in a process group of its own so that
:meth:`ServerProcess.kill` can SIGKILL the supervisor and every worker at once,
as a power cut or the OOM killer would.  It restarts on the same port, so
clients keep their address across a kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``env`` holds the ``PHENOSYNC_*`` settings of the server (data dir,
    database, secret key, ...), on top of this process's environment."""

    def __init__(self, env: Mapping[str, str], *, workers: int = 1,
                 log: Path | None = None) -> None:
        self.env = {**os.environ, **env}
        self.workers = workers
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.start_seconds: list[float] = []  # how long each start took, until healthy

    def start(self, timeout: float = 60) -> float:
        """Start and wait until ``/health`` answers 200 (from every worker: the
        supervisor binds the socket before the workers are up, so a 200 only
        comes from a worker that finished its lifespan start).  Returns the
        seconds it took."""
        assert self.process is None or self.process.poll() is not None, "running already"
        began = time.monotonic()
        output = self.log.open("ab") if self.log else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "server.app:create_app",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
             "--no-access-log", "--workers", str(self.workers)],
            env=self.env, cwd=ROOT, stdout=output, stderr=output,
            start_new_session=True,  # its own process group: kill() takes every worker
        )
        if self.log:
            output.close()  # type: ignore[union-attr]
        deadline = began + timeout
        healthy = 0
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited at start ({self.process.returncode})"
                                     + (f"; see {self.log}" if self.log else ""))
            try:
                if httpx.get(self.base + "/health", timeout=2).status_code == 200:
                    healthy += 1
                    # Several workers: a few answers in a row, so most are up.
                    if healthy >= self.workers:
                        took = time.monotonic() - began
                        self.start_seconds.append(took)
                        return took
                    continue
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"the server did not start in {timeout} s")

    def kill(self) -> None:
        """SIGKILL the whole process group: supervisor and workers, no cleanup."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)

    def stop(self) -> None:
        """A graceful stop (SIGTERM), then SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass


@contextlib.asynccontextmanager
async def uvicorn_child(env: Mapping[str, str], *, start_timeout: float = 30) -> AsyncIterator[str]:
    """The app under uvicorn in one child process, with ``env`` on top of this
    process's environment; yields its base URL once ``/health`` answers 200,
    and terminates it at the end.  The port is bound here and the socket
    handed over, so there is no race for a free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uvicorn", "--factory", "server.app:create_app",
        "--fd", str(sock.fileno()), "--log-level", "warning", "--no-access-log",
        env={**os.environ, **env}, pass_fds=(sock.fileno(),),
    )
    sock.close()
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url) as probe:
            for _ in range(int(start_timeout * 10)):
                assert process.returncode is None, "the server exited at start"
                try:
                    if (await probe.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the server did not start")
        yield url
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
