"""Reading an uploaded member file (CSV in UTF-8 or GB18030, or XLSX) into rows of text keyed
by our column names; the headers our users' spreadsheets already carry are understood too."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from decimal import Decimal
from typing import Final

from servicekit.errors import FieldError, ValidationFailed

MAX_ROWS: Final = 50_000
MAX_BYTES: Final = 10 * 1024 * 1024
XLSX: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

COLUMNS: Final = (
    "phone",
    "name",
    "birthday",
    "level",
    "tags",
    "opening_points",
    "opening_stored_value_principal",
    "opening_stored_value_bonus",
    "stored_value_currency",
)
#: Headers in Chinese (ours in the export, and the usual ones of other systems), and the
#: English headers of the export, mapped to our columns.
ALIASES: Final[dict[str, str]] = {
    "手机号": "phone",
    "手机": "phone",
    "手机号码": "phone",
    "电话": "phone",
    "姓名": "name",
    "会员姓名": "name",
    "名字": "name",
    "生日": "birthday",
    "出生日期": "birthday",
    "等级": "level",
    "会员等级": "level",
    "标签": "tags",
    "期初积分": "opening_points",
    "opening points": "opening_points",
    "期初储值本金": "opening_stored_value_principal",
    "期初储值赠送": "opening_stored_value_bonus",
    "储值币种": "stored_value_currency",
}


def _header(name: object) -> str:
    text = str(name or "").strip()
    return ALIASES.get(text, ALIASES.get(text.lower(), text.lower().replace(" ", "_")))


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()  # Excel keeps a date as a datetime at midnight
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # and every number as a float: 13800138000.0
    if isinstance(value, float):
        return str(Decimal(str(value)))
    return str(value).strip()


def read_rows(content: bytes, content_type: str) -> list[dict[str, str]]:
    """The file's rows as ``{column: text}`` (only our columns); 422 for a file that cannot
    be read, has no rows, too many, or no phone column."""
    if len(content) > MAX_BYTES:
        raise ValidationFailed(
            [FieldError("file", "file_too_large", "at most 10 MB.")], code="file_too_large"
        )
    kind = content_type.split(";")[0].strip().lower()
    try:
        spreadsheet = kind == XLSX or content[:2] == b"PK"  # an XLSX file is a ZIP archive
        rows = _read_xlsx(content) if spreadsheet else _read_csv(content)
    except (ValueError, KeyError, OSError, csv.Error) as exc:
        raise ValidationFailed(
            [FieldError("file", "unreadable_file", f"not a CSV or XLSX file: {exc}")],
            code="unreadable_file",
        ) from None
    if rows is None:
        raise ValidationFailed(
            [FieldError("file", "missing_column", "needs the column phone (手机号).")],
            code="missing_column",
        )
    if not rows:
        raise ValidationFailed(
            [FieldError("file", "empty_file", "no rows under the header.")], code="empty_file"
        )
    if len(rows) > MAX_ROWS:
        raise ValidationFailed(
            [FieldError("file", "too_many_rows", f"at most {MAX_ROWS}.")], code="too_many_rows"
        )
    return rows


def _unguarded(text: str) -> str:
    """Text without the apostrophe an export puts before ``= + - @`` so that a spreadsheet
    never runs it as a formula: an exported file imports back as it is."""
    if len(text) > 1 and text[0] == "'" and text[1] in "=+-@":
        return text[1:]
    return text


def _keep(header: list[str], cells: list[str]) -> dict[str, str]:
    return {
        name: _unguarded(value)
        for name, value in zip(header, cells, strict=False)
        if name in COLUMNS
    }


def _read_csv(content: bytes) -> list[dict[str, str]] | None:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = content.decode("gb18030")  # what Excel in China saves as CSV
    if "\x00" in text:
        raise ValueError("contains NUL characters")
    reader = csv.reader(io.StringIO(text))
    header = [_header(name) for name in next(reader, [])]
    if "phone" not in header:
        return None
    return [
        _keep(header, [cell.strip() for cell in row])
        for row in reader
        if any(cell.strip() for cell in row)
    ]


def _read_xlsx(content: bytes) -> list[dict[str, str]] | None:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as exc:  # a broken archive surfaces as zipfile's or openpyxl's own errors
        raise ValueError(type(exc).__name__) from None
    try:
        values = workbook.worksheets[0].iter_rows(values_only=True)
        header = [_header(name) for name in next(values, ())]
        if "phone" not in header:
            return None
        rows = []
        for row in values:
            cells = [_cell(value) for value in row]
            if any(cells):
                if any("\x00" in cell for cell in cells):
                    raise ValueError("contains NUL characters")
                rows.append(_keep(header, cells))
        return rows
    finally:
        workbook.close()
