"""A fake network receipt printer: listens on TCP like a printer's port 9100, decodes the
ESC/POS it receives back to text (GB18030 in Chinese mode), answers real-time status requests
and keeps what it printed, one entry per cut.

Tests drive it in-process; ``python -m device_gateway.printing.fakeprinter --port 9100``
runs it on its own (``make up`` starts one) and prints every ticket to the console.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Printout:
    """One cut-off piece of paper."""

    text: str
    qr_codes: list[str]
    raw: bytes
    received_at: float = field(default_factory=time.monotonic)


class EscPosDecoder:
    """Feed bytes in; complete printouts come out at each cut. Unknown commands are skipped
    by their documented lengths so that text after them still decodes."""

    # ESC x n: commands with one parameter byte.
    _ESC_ONE = frozenset(b"!-2EGJMRSTVadpt{3 U\\$c")
    _GS_ONE = frozenset(b"!BHfhwbLW")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._text = bytearray()
        self._pieces: list[str] = []
        self._chinese = False
        self._qr: list[str] = []
        self._raw = bytearray()
        self.status_requests: list[int] = []

    def _flush_text(self) -> None:
        if self._text:
            encoding = "gb18030" if self._chinese else "cp437"
            self._pieces.append(bytes(self._text).decode(encoding, errors="replace"))
            self._text.clear()

    def feed(self, data: bytes) -> tuple[list[Printout], list[int]]:
        """Printouts completed by ``data`` and the ``DLE EOT n`` status requests in it."""
        self._buffer.extend(data)
        done: list[Printout] = []
        requests: list[int] = []
        buf = self._buffer
        i = 0
        while i < len(buf):
            b = buf[i]
            need = self._command_length(buf, i)
            if need is None:
                break  # incomplete command: wait for more bytes
            if need == 0:
                self._text.append(b)
                self._raw.append(b)
                i += 1
                continue
            command = bytes(buf[i : i + need])
            i += need
            if command[:2] == b"\x10\x04":
                requests.append(command[2])
                continue  # real-time: not part of the document
            self._raw.extend(command)
            self._apply(command, done)
        del buf[:i]
        return done, requests

    def _command_length(self, buf: bytearray, i: int) -> int | None:
        """Bytes of the command at ``i`` (0: a text byte), or None if it is incomplete."""
        b = buf[i]
        rest = len(buf) - i
        if self._chinese and b >= 0x80:
            return 0
        if b == 0x0A:
            return 1
        if b == 0x10:  # DLE EOT n / DLE ENQ n
            return 3 if rest >= 3 else None
        if b == 0x1B:
            if rest < 2:
                return None
            c = buf[i + 1]
            if c == 0x40:
                return 2
            if c == 0x64 or c in self._ESC_ONE:
                return 3 if rest >= 3 else None
            return 2
        if b == 0x1C:
            if rest < 2:
                return None
            c = buf[i + 1]
            if c in (0x26, 0x2E):
                return 2
            return 3 if rest >= 3 else None
        if b == 0x1D:
            if rest < 2:
                return None
            c = buf[i + 1]
            if c == 0x28:  # GS ( k pL pH data
                if rest < 5:
                    return None
                size = 5 + buf[i + 3] + 256 * buf[i + 4]
                return size if rest >= size else None
            if c == 0x56:  # GS V m [n]
                if rest < 3:
                    return None
                return 4 if buf[i + 2] in (0x41, 0x42, 65, 66) else 3
            if c in self._GS_ONE:
                return 3 if rest >= 3 else None
            return 2
        return 0

    def _apply(self, command: bytes, done: list[Printout]) -> None:
        head = command[:2]
        if command == b"\n":
            self._flush_text()
            self._pieces.append("\n")
        elif head == b"\x1c\x26":
            self._flush_text()
            self._chinese = True
        elif head == b"\x1c\x2e":
            self._flush_text()
            self._chinese = False
        elif head == b"\x1b\x64":  # ESC d n: feed n lines
            self._flush_text()
            self._pieces.append("\n" * command[2])
        elif head == b"\x1d\x28" and len(command) > 7 and command[5:8] == b"1P0":
            self._qr.append(command[8:].decode("utf-8", errors="replace"))
        elif head == b"\x1d\x56":
            self._flush_text()
            done.append(
                Printout(text="".join(self._pieces), qr_codes=list(self._qr), raw=bytes(self._raw))
            )
            self._pieces.clear()
            self._qr.clear()
            self._raw.clear()
        else:
            self._flush_text()


class FakePrinter:
    """A printer on ``host:port``. ``paper_out`` and ``cover_open`` change what its status
    answers; ``stop()`` makes it refuse connections until ``start()`` again."""

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        *,
        answers_status: bool = True,
        on_print: Callable[[Printout], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.answers_status = answers_status
        self.paper_out = False
        self.cover_open = False
        self.printed: list[Printout] = []
        self.connections = 0
        self.on_print = on_print
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, reuse_address=True
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    @property
    def texts(self) -> list[str]:
        return [p.text for p in self.printed]

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[Printout]:
        """Wait until ``count`` printouts came out in total."""
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.printed) >= count), timeout
            )
        return self.printed[:count]

    def _status(self, n: int) -> int:
        if n == 2:
            return 0x12 | (0x04 if self.cover_open else 0) | (0x20 if self.paper_out else 0)
        if n == 4:
            return 0x12 | (0x60 if self.paper_out else 0)
        return 0x16

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        decoder = EscPosDecoder()
        try:
            while data := await reader.read(65536):
                printouts, requests = decoder.feed(data)
                if requests and self.answers_status:
                    writer.write(bytes(self._status(n) for n in requests))
                    await writer.drain()
                if printouts:
                    async with self._changed:
                        self.printed.extend(printouts)
                        self._changed.notify_all()
                    if self.on_print is not None:
                        for printout in printouts:
                            self.on_print(printout)
        except (OSError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _run(host: str, port: int) -> None:
    def show(printout: Printout) -> None:
        print(f"---- printed on {host}:{port} ----\n{printout.text}", flush=True)
        for code in printout.qr_codes:
            print(f"[QR] {code}", flush=True)

    printer = FakePrinter(port, host, on_print=show)
    await printer.start()
    print(f"fake printer listening on {host}:{port}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake ESC/POS network printer.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args.host, args.port))


if __name__ == "__main__":
    main()
