"""Raw TCP printing (port 9100, "JetDirect"): send the bytes, and read the printer's real-time
status (``DLE EOT``) where it answers, so a printer out of paper is not sent a ticket it
would swallow."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

DLE_EOT_OFFLINE = b"\x10\x04\x02"  # bit 2: cover open; bit 5: stopped for paper end
DLE_EOT_PAPER = b"\x10\x04\x04"  # bits 2-3: near end; bits 5-6: paper end


class PrinterUnavailable(Exception):
    """The printer could not take the job (refused, unreachable, or not ready)."""


class PrinterNotReady(PrinterUnavailable):
    def __init__(self, condition: str) -> None:
        super().__init__(condition)
        self.condition = condition  # "paper_out" or "cover_open"


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    answered: bool
    paper_out: bool = False
    paper_near_end: bool = False
    cover_open: bool = False


def parse_status(offline: int, paper: int) -> PrinterStatus:
    return PrinterStatus(
        answered=True,
        cover_open=bool(offline & 0x04),
        paper_out=bool(paper & 0x60) or bool(offline & 0x20),
        paper_near_end=bool(paper & 0x0C),
    )


async def read_status(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
) -> PrinterStatus:
    writer.write(DLE_EOT_OFFLINE + DLE_EOT_PAPER)
    await writer.drain()
    try:
        answer = await asyncio.wait_for(reader.readexactly(2), timeout)
    except (TimeoutError, asyncio.IncompleteReadError):
        return PrinterStatus(answered=False)
    return parse_status(answer[0], answer[1])


async def print_tcp(
    host: str,
    port: int,
    data: bytes,
    *,
    connect_timeout: float,
    status_timeout: float,
    ask_status: bool = True,
) -> PrinterStatus:
    """Print ``data`` on ``host:port``; the status read before printing (``answered=False``
    when the printer does not answer status requests or was not asked)."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), connect_timeout
        )
    except (OSError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        raise PrinterUnavailable(f"cannot connect to {host}:{port}: {reason}") from exc
    try:
        status = PrinterStatus(answered=False)
        if ask_status:
            status = await read_status(reader, writer, status_timeout)
            if status.paper_out:
                raise PrinterNotReady("paper_out")
            if status.cover_open:
                raise PrinterNotReady("cover_open")
        writer.write(data)
        await asyncio.wait_for(writer.drain(), connect_timeout + len(data) / 10_000)
        if writer.can_write_eof():
            writer.write_eof()
        # The printer closes after reading everything; waiting for that means it has the job.
        with contextlib.suppress(TimeoutError, OSError):
            await asyncio.wait_for(reader.read(), connect_timeout)
        return status
    except (OSError, TimeoutError) as exc:
        raise PrinterUnavailable(f"{host}:{port}: {str(exc) or type(exc).__name__}") from exc
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
