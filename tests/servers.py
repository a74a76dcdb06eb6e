"""A real server in child processes, for tests that talk HTTP to it or kill it.

``ServerProcess`` runs uvicorn's command line, ``uvicorn --factory
server.app:create_app`` (what ``phenosync serve`` runs, without its migrate
step: tests migrate first), with any number of worker processes, in a process
group of its own so that :meth:`ServerProcess.kill` can SIGKILL the supervisor
and every worker at once, as a power cut or the OOM killer would.  It restarts
on the same port, so clients keep their address across a kill.

A server is forked, not executed: a fork server (this module run as a
program, one per test session) has imported uvicorn and the app's modules
once, and every start is a fork of it that sets the server's environment and
runs uvicorn's command line; uvicorn's supervisor forks its workers from that
process too (instead of spawning fresh interpreters that import everything
again).  What
runs is the same code as ``python -m uvicorn``, from the same state: the app is
created in each worker at start (settings read from the environment then), and
modules the app loads on first use (pyarrow, ...) are loaded on first use.
What is saved is the second or so of imports per process per start, which the
crash test paid 51 times per backend.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from tests import kill_probe

ROOT = Path(__file__).resolve().parents[1]

#: What ``python -m uvicorn --factory server.app:create_app`` imports before it
#: creates the app: the fork server imports it once.
PRELOAD = ("uvicorn.main", "uvicorn.supervisors.multiprocess", "server.app")
#: The signals uvicorn's supervisor takes over; its forked workers get back
#: what a fresh interpreter has (uvicorn's server then installs its own).
_SUPERVISOR_SIGNALS = {getattr(signal, f"SIG{name}") for name in
                       "INT TERM HUP QUIT TTIN TTOU USR1 USR2 WINCH".split()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the fork server (this module run as ``python -m tests.servers``) -------------


def _run_worker(entry: Callable[..., None], /, **kwargs: Any) -> None:
    """A worker forked by uvicorn's supervisor: the signal handlers of a fresh
    process, then uvicorn's own worker entry point."""
    for sig in _SUPERVISOR_SIGNALS:
        signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT
                      else signal.SIG_DFL)
    if os.environ.get(kill_probe.ENV):
        kill_probe.install(os.environ[kill_probe.ENV])
    entry(**kwargs)


class _ForkWorkers:
    """Stands in for uvicorn's ``spawn`` context (``uvicorn._subprocess.spawn``):
    its supervisor makes each worker with ``spawn.Process(target=, kwargs=)``."""

    def Process(self, target: Callable[..., None], kwargs: dict[str, Any]) -> Any:  # noqa: N802
        return multiprocessing.get_context("fork").Process(
            target=_run_worker, args=(target,), kwargs=kwargs)


def _serve(argv: list[str], env: dict[str, str], log: str | None) -> int:
    """In a fork of the fork server: uvicorn's command line with ``argv``,
    ``env`` as the whole environment, the output to ``log``."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the fork server's, not a server's
    os.setsid()  # its own process group: kill() takes every worker
    os.chdir(ROOT)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    out = os.open(log or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    os.environ.clear()
    os.environ.update(env)
    if env.get(kill_probe.ENV):
        kill_probe.install(env[kill_probe.ENV])  # the supervisor's own handler replaces it
    import uvicorn._subprocess
    import uvicorn.main

    uvicorn._subprocess.spawn = _ForkWorkers()  # type: ignore[assignment]
    try:
        uvicorn.main.main(args=argv, prog_name="uvicorn")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return 0


def _fork_server() -> None:
    """Import what a server start imports, then fork a server for each request
    read from stdin (a JSON line: argv, env, log) and answer with its pid;
    end at end of input.  Forks are reaped at once (SIGCHLD ignored): the test
    process watches a server by its pid and process group."""
    import importlib
    import threading
    import traceback

    for name in PRELOAD:
        importlib.import_module(name)
    assert threading.active_count() == 1, "a fork server must have no threads"
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    # Killed with its supervisor, a server's workers are orphans: adopted (and
    # reaped at once) here rather than by init, which may take a second to
    # reap them, and kill() waits until the group is gone.
    if sys.platform == "linux":
        import ctypes

        pr_set_child_subreaper = 36
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0)
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    for line in requests:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _serve(request["argv"], request["env"], request["log"])
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        answers.write(b"%d\n" % pid)
        answers.flush()


class _ForkServer:
    """The test process's handle on its fork server (started on first use)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None

    def fork(self, argv: list[str], env: Mapping[str, str], log: Path | None) -> int:
        request = json.dumps({"argv": argv, "env": dict(env),
                              "log": str(log) if log else None}).encode() + b"\n"
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "tests.servers"], cwd=ROOT,
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert self._process.stdin and self._process.stdout
            self._process.stdin.write(request)
            self._process.stdin.flush()
            answer = self._process.stdout.readline()
        assert answer, "the fork server died"
        return int(answer)

    def close(self) -> None:
        if self._process is not None:
            assert self._process.stdin
            self._process.stdin.close()
            self._process.wait(10)


_FORK_SERVER = _ForkServer()
_running: weakref.WeakSet[ServerProcess] = weakref.WeakSet()


@atexit.register
def _at_exit() -> None:
    """A test that died before its ``finally`` leaves no server behind."""
    for server in list(_running):
        server.kill()
    _FORK_SERVER.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


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
        self.pid: int | None = None  # the server's process (group leader), while it runs
        self.probe: Path | None = None  # see tests/kill_probe.py
        self.start_seconds: list[float] = []  # how long each start took, until healthy

    def start(self, timeout: float = 60) -> float:
        """Start and wait until ``/health`` answers 200 (from every worker: the
        supervisor binds the socket before the workers are up, so a 200 only
        comes from a worker that finished its lifespan start).  Returns the
        seconds it took."""
        assert self.pid is None or not _alive(self.pid), "running already"
        began = time.monotonic()
        env = self.env
        if env.get(kill_probe.ENV):  # where this start's kill lands: tests/kill_probe.py
            backend = env.get("PHENOSYNC_DATABASE_URL", "sqlite").split(":")[0]
            self.probe = (Path(env[kill_probe.ENV])
                          / f"{backend}-{self.port}-start{len(self.start_seconds):03d}")
            self.probe.parent.mkdir(parents=True, exist_ok=True)
            env = {**env, kill_probe.ENV: str(self.probe)}
        self.pid = _FORK_SERVER.fork(
            ["--factory", "server.app:create_app", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "warning", "--no-access-log",
             "--workers", str(self.workers)],
            env, self.log)
        _running.add(self)
        deadline = began + timeout
        healthy = 0
        # A new connection per probe (no keep-alive): each worker accepts its own.
        with httpx.Client(timeout=2, limits=httpx.Limits(max_keepalive_connections=0)) as probe:
            while time.monotonic() < deadline:
                if not _alive(self.pid):
                    raise AssertionError("the server exited at start"
                                         + (f"; see {self.log}" if self.log else ""))
                try:
                    if probe.get(self.base + "/health").status_code == 200:
                        healthy += 1
                        # Several workers: a few answers in a row, so most are up.
                        if healthy >= self.workers:
                            took = time.monotonic() - began
                            self.start_seconds.append(took)
                            return took
                        continue
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
        self.kill()
        raise AssertionError(f"the server did not start in {timeout} s")

    def _wait(self, seconds: float) -> bool:
        """Wait until every process of the server's group is gone (the workers
        too: they hold the listening socket and the database); False if they
        are not by then."""
        assert self.pid is not None
        deadline = time.monotonic() + seconds
        while _group_alive(self.pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def kill(self) -> None:
        """SIGKILL the whole process group: supervisor and workers, no cleanup."""
        if self.pid is None:
            return
        if self.probe is not None and _group_alive(self.pid):
            # Each worker writes where it is and dies; then the group goes.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGUSR2)
            deadline = time.monotonic() + 5
            while (len(list(self.probe.parent.glob(self.probe.name + ".*"))) < self.workers
                   and time.monotonic() < deadline):
                time.sleep(0.01)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        assert self._wait(10), f"the server ({self.pid}) survived SIGKILL"
        _running.discard(self)

    def stop(self) -> None:
        """A graceful stop (SIGTERM), then SIGKILL if it hangs."""
        if self.pid is None or not _alive(self.pid):
            return
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        if not self._wait(15):
            self.kill()
        _running.discard(self)


@contextlib.asynccontextmanager
async def uvicorn_child(env: Mapping[str, str], *, start_timeout: float = 30) -> AsyncIterator[str]:
    """The app under uvicorn in a child process (a :class:`ServerProcess`), with
    ``env`` on top of this process's environment; yields its base URL once
    ``/health`` answers 200, and stops it (SIGTERM) at the end.  The server's
    output goes to stderr at the end (pytest shows it when the test fails)."""
    with tempfile.NamedTemporaryFile(prefix="uvicorn-", suffix=".log") as log:
        server = ServerProcess(env, log=Path(log.name))
        try:
            await asyncio.to_thread(server.start, start_timeout)
            yield server.base
        finally:
            await asyncio.to_thread(server.stop)
            output = log.read().decode(errors="replace")
            if output:
                print(output, file=sys.stderr)


if __name__ == "__main__":
    _fork_server()
