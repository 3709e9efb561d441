"""Streamed CSV and XLSX downloads with headers in the reader's language.

A download is one or more sheets, each a title, its columns (a key and a header in Chinese
and in English) and an async stream of rows, so a service never holds a large export in
memory. CSV goes out row by row as UTF-8 with a byte order mark (so spreadsheet programs read
Chinese correctly); several sheets follow one another, each under its title. XLSX is written
with openpyxl's write-only workbook (rows go to disk as they come) and sent in chunks.

Money goes out in major units with the currency's decimals (``Money.to_decimal_str``). Text
that a spreadsheet would run as a formula (starting with ``= + - @``, tab or carriage return)
is prefixed with an apostrophe: a product name must never become a formula on an
accountant's machine.
"""

from __future__ import annotations

import asyncio
import csv
import io
import tempfile
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final, Literal
from urllib.parse import quote
from uuid import UUID

from fastapi.responses import StreamingResponse
from openpyxl import Workbook

from contracts.money import Money

Format = Literal["csv", "xlsx"]
Language = Literal["zh", "en"]

MEDIA_TYPES: Final[dict[str, str]] = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
_CHUNK: Final = 64 * 1024
#: Excel refuses sheet titles over 31 characters and these characters.
_TITLE_FORBIDDEN: Final = str.maketrans({c: " " for c in "[]:*?/\\"})


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    zh: str
    en: str

    def header(self, language: Language) -> str:
        return self.zh if language == "zh" else self.en


@dataclass(frozen=True, slots=True)
class Sheet:
    title_zh: str
    title_en: str
    columns: Sequence[Column]
    rows: AsyncIterator[Sequence[Any]]

    def title(self, language: Language) -> str:
        return self.title_zh if language == "zh" else self.title_en


def language_of(requested: str | None, accept_language: str | None) -> Language:
    """``?lang=`` when given, else the first language of ``Accept-Language``; Chinese unless
    English is asked for."""
    if requested:
        return "en" if requested.lower().startswith("en") else "zh"
    if accept_language:
        first = accept_language.split(",")[0].strip().lower()
        if first.startswith("en"):
            return "en"
    return "zh"


def _safe_text(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def cell(value: Any) -> Any:
    """A value as a spreadsheet cell: money in major units, ids and dates as text, text safe
    from formula injection. Numbers stay numbers."""
    if value is None:
        return None
    if isinstance(value, Money):
        return Decimal(value.to_decimal_str())
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal | float):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return _safe_text(str(value))


def _csv_line(values: Iterable[Any]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(
        "" if v is None else str(v) for v in (cell(v) for v in values)
    )
    return buffer.getvalue().encode("utf-8")


async def csv_stream(sheets: Sequence[Sheet], language: Language) -> AsyncIterator[bytes]:
    yield "\ufeff".encode()
    for index, sheet in enumerate(sheets):
        if len(sheets) > 1:
            if index:
                yield b"\r\n"
            yield _csv_line([sheet.title(language)])
        yield _csv_line(c.header(language) for c in sheet.columns)
        async for row in sheet.rows:
            yield _csv_line(row)


async def xlsx_stream(sheets: Sequence[Sheet], language: Language) -> AsyncIterator[bytes]:
    workbook = Workbook(write_only=True)
    for sheet in sheets:
        title = sheet.title(language).translate(_TITLE_FORBIDDEN)[:31] or "Sheet"
        worksheet = workbook.create_sheet(title=title)
        worksheet.append([c.header(language) for c in sheet.columns])
        async for row in sheet.rows:
            worksheet.append([cell(v) for v in row])
    with tempfile.TemporaryFile() as file:
        # Zipping the parts is CPU work: keep the event loop free meanwhile.
        await asyncio.to_thread(workbook.save, file)
        file.seek(0)
        while chunk := await asyncio.to_thread(file.read, _CHUNK):
            yield chunk


def download(
    sheets: Sequence[Sheet], *, file_format: Format, language: Language, filename: str
) -> StreamingResponse:
    """A streamed attachment named ``filename`` plus the format's extension."""
    body = csv_stream(sheets, language) if file_format == "csv" else xlsx_stream(sheets, language)
    name = f"{filename}.{file_format}"
    return StreamingResponse(
        body,
        media_type=MEDIA_TYPES[file_format],
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
            "Content-Language": "zh-CN" if language == "zh" else "en",
        },
    )


async def rows_of(items: Iterable[Sequence[Any]]) -> AsyncIterator[Sequence[Any]]:
    """Rows already in memory (a report's few lines) as a sheet's stream."""
    for item in items:
        yield item
