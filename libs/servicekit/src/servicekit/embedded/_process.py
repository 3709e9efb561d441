"""Child-process plumbing shared by the embedded servers.

Every server runs as a child of the Python process that starts it, and two promises hold for
each: stopping it stops its whole process tree, and on Linux it is told to stop when its parent
dies, so a killed test run or local stack does not leave a server holding a port or a data
directory.
"""

from __future__ import annotations

import abc
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, Self

import psutil

from servicekit.embedded.errors import EmbeddedServerError

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class RunAs:
    """The system account a child runs under (PostgreSQL refuses to run as root)."""

    uid: int
    gid: int


def _parent_death_hook(sig: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel to send ``sig`` to the child when its parent exits.

    Linux clears this setting when the process changes credentials; ``subprocess`` switches
    user before it calls ``preexec_fn``, so the request survives the switch to ``RunAs``.
    The kernel ties the request to the thread that forks, so the server also gets ``sig`` when
    the thread that started it ends.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(sig))
        # The parent may have died between fork and prctl; nobody would signal us then.
        if os.getppid() != parent:
            os._exit(1)

    return hook


def spawn(
    argv: Sequence[str],
    *,
    run_as: RunAs | None = None,
    stop_with_parent: int | None = signal.SIGTERM,
    own_process_group: bool = False,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server process.

    ``stop_with_parent`` is the signal the child receives if this process dies first;
    ``own_process_group`` keeps a terminal's Ctrl-C (or a process manager signalling our group)
    away from the child, so that the signal it gets is the one chosen by its supervisor.
    """
    extra: dict[str, Any] = {}
    if run_as is not None and run_as.uid != os.geteuid():
        extra.update(user=run_as.uid, group=run_as.gid, extra_groups=[])
    hook = _parent_death_hook(stop_with_parent) if stop_with_parent is not None else None
    try:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            preexec_fn=hook,
            process_group=0 if own_process_group else None,
            close_fds=True,
            **extra,
        )
    except OSError as exc:
        raise EmbeddedServerError(f"cannot start {argv[0]}: {exc}") from exc


def stop_tree(proc: subprocess.Popen[bytes], steps: Sequence[tuple[signal.Signals, float]]) -> None:
    """Stop ``proc`` and everything it started.

    Each step sends a signal and waits up to its timeout; the next step escalates. SIGKILL is
    the last resort. Children are collected before signalling because once their parent is
    gone nothing links them to it any more.
    """
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    for sig, timeout in steps:
        if proc.poll() is not None:
            break
        try:
            proc.send_signal(sig)
            proc.wait(timeout)
            break
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            break
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    _, alive = psutil.wait_procs(descendants, timeout=5)
    for child in alive:
        try:
            child.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(alive, timeout=5)


def listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself listens on TCP ``port`` (a bare connect test would also
    succeed against another program that holds the port)."""
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in connections)


def tail(path: Path, offset: int = 0, limit: int = 4000) -> str:
    """The end of a log file written from ``offset`` on, for error messages."""
    try:
        with path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            end = log.tell()
            log.seek(max(offset, end - limit))
            return log.read().decode("utf-8", "replace")
    except OSError:
        return ""


class Foreground:
    """Supervise one server process in the foreground.

    The first SIGINT, SIGTERM or SIGHUP sends the server the first of ``stop_signals``; each
    further one escalates to the next. A signal that arrives before the server is attached is
    delivered as soon as it is.
    """

    _HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, stop_signals: Sequence[signal.Signals]) -> None:
        if not stop_signals:
            raise ValueError("stop_signals must not be empty")
        self._stop_signals = list(stop_signals)
        self._requests = 0
        self._sent = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._previous: dict[int, Any] = {}

    @property
    def stop_requested(self) -> bool:
        return self._requests > 0

    def __enter__(self) -> Foreground:
        for sig in self._HANDLED:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def attach(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        self._forward()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._requests += 1
        self._forward()

    def _forward(self) -> None:
        proc = self._proc
        while proc is not None and self._sent < self._requests and proc.poll() is None:
            sig = self._stop_signals[min(self._sent, len(self._stop_signals) - 1)]
            self._sent += 1
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                return

    def wait_until(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Poll ``ready`` until it holds; ``False`` if the server exited, a stop was requested
        or ``timeout`` passed first."""
        proc = self._require_proc()
        deadline = time.monotonic() + timeout
        while proc.poll() is None and not self.stop_requested:
            if ready():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return False

    def wait(self) -> int:
        """Wait for the server to exit and return its exit status."""
        proc = self._require_proc()
        return proc.wait()

    def _require_proc(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RuntimeError("no process attached")
        return self._proc


class ManagedServer(abc.ABC):
    """``with server:`` starts it and stops it, whatever happens in between."""

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
