"""Exports of orders with lines, the sales report and the month's tax, as CSV and XLSX:
headers in the asked language, every line once, money in yuan, nothing of another tenant,
and the same checks as the reports before the file starts."""

from __future__ import annotations

import csv
import io
import uuid
from decimal import Decimal
from typing import Any

from openpyxl import load_workbook

from .conftest import MANAGER, Harness, auth_headers
from .test_reports import DAY, READER, sold


def csv_rows(content: bytes) -> list[list[str]]:
    assert content.startswith("\ufeff".encode())
    return list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))


async def export(
    harness: Harness,
    merchant: uuid.UUID,
    path: str,
    headers: dict[str, str] | None = None,
    **params: Any,
) -> Any:
    return await harness.client.get(
        f"/v1/exports/{path}",
        params=params,
        headers={**auth_headers(merchant, READER), **(headers or {})},
    )


async def test_orders_with_lines_as_csv_and_xlsx(harness: Harness) -> None:
    merchant, store = uuid.uuid4(), uuid.uuid4()
    noodles = await harness.seed_product(merchant, price=1250, name="牛肉面")
    trap = await harness.seed_product(merchant, price=100, name='=HYPERLINK("x")')
    first = await sold(
        harness,
        merchant,
        store,
        [{"product_id": str(noodles), "quantity": 2}, {"product_id": str(trap), "quantity": 1}],
    )
    second = await sold(harness, merchant, store, [{"product_id": str(noodles), "quantity": 1}])
    stranger = uuid.uuid4()
    theirs = await harness.seed_product(stranger, price=999, name="Theirs")
    await sold(harness, stranger, store, [{"product_id": str(theirs), "quantity": 1}])

    response = await export(harness, merchant, "orders", business_day_from=DAY, business_day_to=DAY)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = csv_rows(response.content)
    header, body = rows[0], rows[1:]
    assert header[:2] == ["营业日", "订单号"]
    assert len(body) == 3
    column = {name: i for i, name in enumerate(header)}
    by_order = {(r[column["订单ID"]], r[column["行号"]]): r for r in body}
    line = by_order[(first["id"], "1")]
    assert line[column["订单号"]] == first["number"]
    assert line[column["商品"]] == "牛肉面"
    assert line[column["单价"]] == "12.50"
    assert line[column["行金额"]] == "25.00"
    assert line[column["税率(%)"]] == "6"
    assert line[column["订单金额"]] == "26.00"
    assert by_order[(first["id"], "2")][column["商品"]] == '\'=HYPERLINK("x")'
    assert (second["id"], "1") in by_order
    assert "Theirs" not in response.text

    english = await export(
        harness,
        merchant,
        "orders",
        headers={"Accept-Language": "en-US,en;q=0.9"},
        business_day_from=DAY,
        business_day_to=DAY,
        format="xlsx",
    )
    assert english.status_code == 200, english.text
    workbook = load_workbook(io.BytesIO(english.content), read_only=True)
    values = list(workbook["Orders"].iter_rows(values_only=True))
    assert values[0][:2] == ("Business day", "Order number")
    assert len(values) == 4
    totals = {Decimal(str(v[values[0].index("Line total")])) for v in values[1:]}
    assert totals == {Decimal("25"), Decimal("1"), Decimal("12.5")}


async def test_sales_report_and_tax_exports(harness: Harness) -> None:
    merchant, store = uuid.uuid4(), uuid.uuid4()
    noodles = await harness.seed_product(merchant, price=1000)
    await sold(harness, merchant, store, [{"product_id": str(noodles), "quantity": 3}])

    report = await export(
        harness,
        merchant,
        "sales-report",
        business_day_from=DAY,
        business_day_to=DAY,
        format="xlsx",
        lang="en",
    )
    assert report.status_code == 200, report.text
    workbook = load_workbook(io.BytesIO(report.content), read_only=True)
    assert workbook.sheetnames[:3] == ["Summary", "Tax by rate", "By method"]
    # A blank cell (no cost known: no margin) ends its row in a read-only workbook.
    summary = {
        row[0]: row[1] if len(row) > 1 else None
        for row in workbook["Summary"].iter_rows(values_only=True)
    }
    assert summary["Margin (known-cost lines)"] is None
    assert summary["Orders"] == 1
    assert Decimal(str(summary["Net"])) == Decimal("30")
    methods = list(workbook["By method"].iter_rows(values_only=True))
    assert methods[1][0] == "cash"
    assert Decimal(str(methods[1][2])) == Decimal("30")

    chinese = await export(
        harness, merchant, "sales-report", business_day_from=DAY, business_day_to=DAY
    )
    rows = csv_rows(chinese.content)
    assert rows[0] == ["汇总"]
    assert ["订单数", "1"] in rows
    assert ["净销售额", "30.00"] in rows

    tax = await export(harness, merchant, "tax", month="2026-03")
    assert tax.status_code == 200, tax.text
    tax_rows = csv_rows(tax.content)
    assert tax_rows[1] == ["营业日", "税率(%)", "含税销售额", "税额", "不含税销售额"]
    # 3000 * 600 / 10600 = 169.81 -> 170 fen.
    assert tax_rows[2] == [DAY, "6", "30.00", "1.70", "28.30"]
    assert ["2026-03", "6", "30.00", "1.70", "28.30"] in tax_rows


async def test_exports_check_rights_range_store_and_format_first(harness: Harness) -> None:
    merchant, mine = uuid.uuid4(), uuid.uuid4()
    days = {"business_day_from": DAY, "business_day_to": DAY}
    cashier = await harness.client.get(
        "/v1/exports/orders", params=days, headers=auth_headers(merchant, MANAGER)
    )
    assert cashier.status_code == 403
    elsewhere = await harness.client.get(
        "/v1/exports/orders",
        params={**days, "store_id": str(uuid.uuid4())},
        headers=auth_headers(merchant, READER, store_ids=frozenset({mine})),
    )
    assert elsewhere.status_code == 404
    reversed_range = await export(
        harness, merchant, "orders", business_day_from=DAY, business_day_to="2026-01-01"
    )
    assert reversed_range.status_code == 422
    assert reversed_range.json()["code"] == "invalid_range"
    for bad in ({**days, "format": "pdf"}, {**days, "lang": "fr"}):
        refused = await export(harness, merchant, "orders", **bad)
        assert refused.status_code == 422, bad
    bad_month = await export(harness, merchant, "tax", month="2026-00")
    assert bad_month.status_code == 422
