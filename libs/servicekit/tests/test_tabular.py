"""Streamed CSV and XLSX: headers in the asked language, money in major units, and no text
that a spreadsheet would run as a formula."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI
from openpyxl import load_workbook

from contracts.money import Money
from servicekit.tabular import Column, Sheet, download, language_of, rows_of

COLUMNS = [Column("name", "名称", "Name"), Column("amount", "金额", "Amount")]
ROWS: list[Sequence[Any]] = [
    ["牛肉面", Money.of(1250, "CNY")],
    ['=HYPERLINK("http://x")', Money.of(-5, "CNY")],
    ["+1", Money.of(0, "CNY")],
]


def sheets() -> list[Sheet]:
    return [Sheet("销售", "Sales", COLUMNS, rows_of(ROWS))]


async def fetch(file_format: str, language: str, many: bool = False) -> httpx.Response:
    app = FastAPI()

    async def generated() -> AsyncIterator[Sequence[Any]]:
        for i in range(3):
            yield [f"row {i}", i]

    @app.get("/export")
    async def export() -> Any:
        extra = [
            Sheet("其他", "Other", [Column("a", "甲", "A"), Column("b", "乙", "B")], generated())
        ]
        return download(
            sheets() + (extra if many else []),
            file_format=file_format,  # type: ignore[arg-type]
            language=language,  # type: ignore[arg-type]
            filename="销售-2026",
        )

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get("/export")


async def test_csv_in_chinese_with_bom_money_and_no_formulas() -> None:
    response = await fetch("csv", "zh")
    assert response.headers["content-type"].startswith("text/csv")
    assert "filename*=UTF-8''%E9%94%80%E5%94%AE-2026.csv" in response.headers["content-disposition"]
    assert response.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows == [
        ["名称", "金额"],
        ["牛肉面", "12.50"],
        ['\'=HYPERLINK("http://x")', "-0.05"],
        ["'+1", "0.00"],
    ]


async def test_csv_of_several_sheets_puts_each_under_its_title() -> None:
    response = await fetch("csv", "en", many=True)
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0] == ["Sales"]
    assert rows[1] == ["Name", "Amount"]
    assert ["Other"] in rows
    assert rows[-1] == ["row 2", "2"]


async def test_xlsx_in_english_is_a_real_workbook() -> None:
    response = await fetch("xlsx", "en", many=True)
    assert response.headers["content-type"].startswith("application/vnd.openxmlformats")
    workbook = load_workbook(io.BytesIO(response.content), read_only=True)
    assert workbook.sheetnames == ["Sales", "Other"]
    values = [list(row) for row in workbook["Sales"].iter_rows(values_only=True)]
    assert values[0] == ["Name", "Amount"]
    assert values[1][0] == "牛肉面"
    assert Decimal(str(values[1][1])) == Decimal("12.50")
    assert values[2][0].startswith("'=")
    assert len(list(workbook["Other"].iter_rows(values_only=True))) == 4


def test_language_from_parameter_then_header_then_chinese() -> None:
    assert language_of("en", "zh-CN") == "en"
    assert language_of("zh", "en-US") == "zh"
    assert language_of(None, "en-GB,en;q=0.9") == "en"
    assert language_of(None, "zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert language_of(None, None) == "zh"
