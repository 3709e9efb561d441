"""Bulk import from CSV and XLSX: dry run, per-row results, a long file's progress,
re-imports that change nothing, and the export that imports back."""

from __future__ import annotations

import io
import uuid
from typing import Any

from openpyxl import Workbook, load_workbook

from servicekit.auth import Role
from servicekit.testing.tokens import bearer_headers
from servicekit.testing.wait import eventually

from .conftest import Harness

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


async def upload(
    harness: Harness,
    merchant: uuid.UUID,
    content: bytes,
    content_type: str = "text/csv",
    *,
    dry_run: bool = False,
    key: str | None = None,
) -> dict[str, Any]:
    response = await harness.client.post(
        "/v1/product-imports",
        params={"dry_run": str(dry_run).lower()},
        content=content,
        headers={
            **harness.auth(merchant),
            "Content-Type": content_type,
            "Idempotency-Key": key or uuid.uuid4().hex,
        },
    )
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()

    async def finished() -> bool:
        nonlocal job
        read = await harness.client.get(
            f"/v1/product-imports/{job['id']}", headers=harness.auth(merchant)
        )
        job = read.json()
        return bool(job["status"] == "completed")

    await eventually(finished, timeout=60.0)
    return job


def csv_file(rows: list[str]) -> bytes:
    header = "商品编码,商品名称,条码,售价,进价,单位,税率"
    return ("\n".join([header, *rows]) + "\n").encode("utf-8-sig")


async def test_a_csv_import_dry_run_then_for_real_then_again(harness: Harness) -> None:
    merchant = uuid.uuid4()
    code = harness.ean13(f"69{uuid.uuid4().int % 10**10:010d}")
    rows = [
        f"TEA-1,乌龙茶,{code},12.50,8.00,瓶,1300",
        "TEA-2,绿茶,,9.9,,,",
        "BAD-1,Broken price,,12.345,,,",
        "BAD-2,Odd tax,,3.00,,,700",
    ]
    checked = await upload(harness, merchant, csv_file(rows), dry_run=True)
    assert checked["counts"] == {"created": 2, "error": 2}
    by_row = {r["row"]: r for r in checked["results"]}
    assert by_row[4]["errors"][0]["field"] == "price"
    assert by_row[5]["errors"][0]["code"] == "unknown_tax_rate"
    listed = await harness.client.get("/v1/products", headers=harness.auth(merchant))
    assert listed.json()["items"] == []

    key = uuid.uuid4().hex
    done = await upload(harness, merchant, csv_file(rows), key=key)
    assert done["counts"] == {"created": 2, "error": 2}
    assert done["processed_rows"] == done["total_rows"] == 4
    tea = await harness.client.get(
        f"/v1/products/by-barcode/{code}", headers=harness.auth(merchant)
    )
    assert tea.json()["price"] == {"amount": 1250, "currency": "CNY"}
    assert tea.json()["cost"] == {"amount": 800, "currency": "CNY"}
    assert (tea.json()["unit"], tea.json()["tax_rate_bps"]) == ("瓶", 1300)
    await harness.wait_events("inventory.product.created", merchant, 2)
    # The same upload resent with its key is the same job.
    resent = await harness.client.post(
        "/v1/product-imports",
        params={"dry_run": "false"},
        content=csv_file(rows),
        headers={**harness.auth(merchant), "Content-Type": "text/csv", "Idempotency-Key": key},
    )
    assert resent.json()["id"] == done["id"]

    again = await upload(harness, merchant, csv_file(rows))
    assert again["counts"] == {"unchanged": 2, "error": 2}
    changed = await upload(
        harness, merchant, csv_file([rows[0].replace("12.50", "13.00"), rows[1]])
    )
    assert changed["counts"] == {"updated": 1, "unchanged": 1}
    assert changed["results"][0]["changed"] == ["price"]
    assert len(harness.events("inventory.product.created", merchant)) == 2


async def test_an_xlsx_import_a_long_file_and_the_export_round_trip(harness: Harness) -> None:
    merchant = uuid.uuid4()
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["sku", "name", "barcode", "price", "is_tobacco", "tobacco_code"])
    barcode = harness.ean13(f"69{uuid.uuid4().int % 10**10:010d}")
    sheet.append(["CIG-1", "Zhonghua", int(barcode), 45.0, "是", "6901028075022"])
    for i in range(250):
        sheet.append([f"SNACK-{i:04d}", f"Snack {i}", None, 3.5, "否", None])
    out = io.BytesIO()
    workbook.save(out)
    job = await upload(harness, merchant, out.getvalue(), XLSX)
    assert job["counts"] == {"created": 251}
    assert job["processed_rows"] == 251
    assert [r["row"] for r in job["results"]][:2] == [2, 3]
    cig = await harness.client.get(
        f"/v1/products/by-barcode/{barcode}", headers=harness.auth(merchant)
    )
    assert cig.status_code == 200
    assert cig.json()["is_tobacco"] is True
    assert cig.json()["price"] == {"amount": 4500, "currency": "CNY"}

    exported = await harness.client.get(
        "/v1/catalog-export", params={"format": "xlsx"}, headers=harness.auth(merchant)
    )
    assert exported.status_code == 200
    book = load_workbook(io.BytesIO(exported.content), read_only=True)
    rows = list(book.worksheets[0].iter_rows(values_only=True))
    assert len(rows) == 252
    assert rows[1][:3] == ("CIG-1", "Zhonghua", barcode)
    as_csv = await harness.client.get("/v1/catalog-export", headers=harness.auth(merchant))
    back = await upload(harness, merchant, as_csv.content)
    assert back["counts"] == {"unchanged": 251}


async def test_imports_belong_to_hq_of_one_merchant(harness: Harness) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    manager = bearer_headers(
        harness_key(),
        merchant,
        scopes=frozenset({"catalog:manage"}),
        store_ids=frozenset({store}),
        role=Role.STORE_MANAGER,
    )
    refused = await harness.client.post(
        "/v1/product-imports",
        content=csv_file(["A-1,x,,1.00,,,"]),
        headers={**manager, "Content-Type": "text/csv"},
    )
    assert refused.status_code == 403
    job = await upload(harness, merchant, csv_file(["A-1,x,,1.00,,,"]))
    other = await harness.client.get(
        f"/v1/product-imports/{job['id']}", headers=harness.auth(uuid.uuid4())
    )
    assert other.status_code == 404
    broken = await harness.client.post(
        "/v1/product-imports",
        content=b"PK\x03\x04 not really a spreadsheet",
        headers={**harness.auth(merchant), "Content-Type": XLSX},
    )
    assert broken.status_code == 422
    assert broken.json()["errors"][0]["code"] == "unreadable_file"
    no_price = await harness.client.post(
        "/v1/product-imports",
        content=b"sku,name\nA,b\n",
        headers={**harness.auth(merchant), "Content-Type": "text/csv"},
    )
    assert no_price.status_code == 422
    assert no_price.json()["errors"][0]["code"] == "missing_column"


def harness_key() -> Any:
    from .conftest import KEY

    return KEY
