"""An MQTT broker (amqtt) for the local stack and the tests.

Anonymous clients are accepted and nothing is persisted. In the background it runs on its own
event loop in a daemon thread of the calling process, so it never competes with the caller's
loop; in the foreground it is the process's main job.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from typing import Any

from servicekit.embedded._process import ManagedServer
from servicekit.embedded.errors import EmbeddedServerError


def broker_config(host: str, port: int) -> dict[str, Any]:
    """amqtt configuration: one TCP listener, anonymous access, no $SYS topics or packet logs."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


def _new_broker(host: str, port: int) -> Any:
    try:
        from amqtt.broker import Broker
    except ImportError as exc:
        raise EmbeddedServerError(
            "the amqtt package is not installed (countertop-servicekit[embedded])"
        ) from exc
    return Broker(broker_config(host, port))


class EmbeddedMqtt(ManagedServer):
    """An amqtt broker on ``host:port``."""

    def __init__(
        self, port: int, host: str = "127.0.0.1", *, startup_timeout: float = 10.0
    ) -> None:
        self.port = port
        self.host = host
        self.startup_timeout = startup_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """``mqtt://HOST:PORT``."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the broker in a background thread; returns once it listens."""
        if self.running:
            return
        self._started.clear()
        self._error = None
        self._thread = threading.Thread(
            target=self._serve, name=f"embedded-mqtt-{self.port}", daemon=True
        )
        self._thread.start()
        if not self._started.wait(self.startup_timeout):
            self.stop()
            raise EmbeddedServerError(
                f"the MQTT broker did not start on {self.host}:{self.port} "
                f"within {self.startup_timeout}s"
            )
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise EmbeddedServerError(
                f"the MQTT broker could not start on {self.host}:{self.port}: {self._error}"
            ) from self._error

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()
            self._loop = None

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        try:
            broker = _new_broker(self.host, self.port)
            await broker.start()
        except Exception as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        await self._stopping.wait()
        await broker.shutdown()

    def stop(self, timeout: float = 10.0) -> None:
        """Disconnect every client and stop listening; returns once the broker thread ended."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None:
            # RuntimeError: the loop already closed, so the broker is down.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout)
        if thread.is_alive():
            raise EmbeddedServerError(f"the MQTT broker did not stop within {timeout}s")
        self._thread = None

    def run_foreground(self) -> int:
        """Run the broker as this process's main job until SIGINT, SIGTERM or SIGHUP.
        Returns the exit status for the process: 0 after a clean stop, 1 if it could not start.
        """
        return asyncio.run(self._foreground())

    async def _foreground(self) -> int:
        try:
            broker = _new_broker(self.host, self.port)
            await broker.start()
        except Exception as exc:
            print(f"the MQTT broker could not start on {self.host}:{self.port}: {exc}", flush=True)
            return 1
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, stop.set)
        print(f"MQTT broker ready at {self.url}", flush=True)
        await stop.wait()
        await broker.shutdown()
        return 0
