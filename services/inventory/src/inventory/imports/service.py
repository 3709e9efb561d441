"""Bulk import of products from CSV or Excel (扫码录入 and 手动录入 have their endpoints;
this is Excel 批量导入), and export of the catalog in the same columns.

An upload becomes an import job holding the file's rows; a background worker applies them
a chunk per transaction, and the job's ``processed_rows`` moves in the same transaction as
the chunk's products, so the progress is exact and a crash resumes after the last chunk.
Rows are matched by SKU: a row for a SKU the catalog has updates that product if anything
differs and is ``unchanged`` otherwise, so importing the same file again changes nothing.
A dry run checks every row the same way and writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.ids import new_id
from contracts.money import Money
from inventory.catalog.schemas import ProductCreate, ProductUpdate
from inventory.catalog.service import (
    check_references,
    create_product,
    sees_cost,
    update_product,
)
from inventory.models import Product, ProductBarcode, ProductImport
from servicekit.auth import Principal, Role, scoped, scoped_to_merchant
from servicekit.db import Database
from servicekit.errors import FieldError, Problem, ValidationFailed, field_errors

log = logging.getLogger(__name__)

MAX_ROWS = 10_000
MAX_BYTES = 5 * 1024 * 1024
CHUNK = 200
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
COLUMNS = [
    "sku",
    "name",
    "barcode",
    "category_id",
    "unit",
    "price",
    "cost",
    "currency",
    "tax_rate_bps",
    "is_tobacco",
    "tobacco_code",
    "status",
]
#: Headers of the spreadsheets our users already keep, mapped to our columns.
ALIASES = {
    "商品编码": "sku",
    "编码": "sku",
    "货号": "sku",
    "商品名称": "name",
    "名称": "name",
    "条码": "barcode",
    "条形码": "barcode",
    "分类": "category_id",
    "单位": "unit",
    "售价": "price",
    "零售价": "price",
    "进价": "cost",
    "成本价": "cost",
    "币种": "currency",
    "税率": "tax_rate_bps",
    "烟草": "is_tobacco",
    "烟草编码": "tobacco_code",
    "状态": "status",
}
_TRUE = {"true", "1", "yes", "y", "是"}
_FALSE = {"false", "0", "no", "n", "否", ""}


def _header(name: object) -> str:
    text = str(name or "").strip()
    return ALIASES.get(text, text.lower())


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # Excel keeps every number as a float: 6901234567892.0
    if isinstance(value, float):
        return str(Decimal(str(value)))
    return str(value).strip()


def read_rows(content: bytes, content_type: str) -> list[dict[str, str]]:
    """The file's rows as ``{column: text}``; 422 for a file that cannot be read."""
    if len(content) > MAX_BYTES:
        raise ValidationFailed([FieldError("file", "file_too_large", "at most 5 MB.")])
    kind = content_type.split(";")[0].strip().lower()
    try:
        spreadsheet = kind == XLSX or content[:2] == b"PK"  # an XLSX file is a ZIP archive
        rows = _read_xlsx(content) if spreadsheet else _read_csv(content)
    except (ValueError, KeyError, OSError, csv.Error) as exc:
        raise ValidationFailed(
            [FieldError("file", "unreadable_file", f"not a CSV or XLSX file: {exc}")]
        ) from None
    if not rows:
        raise ValidationFailed([FieldError("file", "empty_file", "no rows under the header.")])
    if len(rows) > MAX_ROWS:
        raise ValidationFailed([FieldError("file", "too_many_rows", f"at most {MAX_ROWS}.")])
    missing = [c for c in ("sku", "name", "price") if c not in rows[0]]
    if missing:
        raise ValidationFailed(
            [FieldError("file", "missing_column", f"needs the column {c}.") for c in missing]
        )
    return rows


def _read_csv(content: bytes) -> list[dict[str, str]]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = content.decode("gb18030")  # what Excel in China saves as CSV
    if "\x00" in text:
        raise ValueError("contains NUL characters")
    reader = csv.reader(io.StringIO(text))
    header = [_header(name) for name in next(reader, [])]
    return [
        {name: value.strip() for name, value in zip(header, row, strict=False) if name}
        for row in reader
        if any(cell.strip() for cell in row)
    ]


def _read_xlsx(content: bytes) -> list[dict[str, str]]:
    from openpyxl import load_workbook  # only a spreadsheet upload needs it

    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as exc:  # a broken archive surfaces as zipfile's or openpyxl's own errors
        raise ValueError(type(exc).__name__) from None
    try:
        sheet = workbook.worksheets[0]
        values = sheet.iter_rows(values_only=True)
        header = [_header(name) for name in next(values, ())]
        rows = []
        for row in values:
            cells = [_cell(value) for value in row]
            if any(cells):
                if any("\x00" in cell for cell in cells):
                    raise ValueError("contains NUL characters")
                rows.append({name: cell for name, cell in zip(header, cells, strict=False) if name})
        return rows
    finally:
        workbook.close()


def _principal(job: ProductImport) -> Principal:
    """The caller who uploaded the file, as the worker acts for them: the upload itself
    needed merchant-wide ``catalog:manage``."""
    return Principal(
        subject=job.created_by,
        merchant_id=job.merchant_id,
        role=Role.HQ_ADMIN,
        scopes=frozenset({"catalog:manage"}),
        store_ids=None,
        token_id=f"import:{job.id}",
        expires_at=datetime.now(UTC) + timedelta(minutes=5),
    )


def _fields(row: dict[str, str]) -> tuple[dict[str, Any], list[FieldError]]:
    """The row as product fields (only the columns it has), or what is wrong with it."""
    errors: list[FieldError] = []
    fields: dict[str, Any] = {}
    currency = (row.get("currency") or "CNY").upper()
    for column in ("sku", "name", "unit", "tobacco_code", "status", "category_id", "barcode"):
        if column in row:
            value = row[column]
            if value or column in ("sku", "name"):
                fields[column] = value
            elif column not in ("unit", "status"):
                fields[column] = None
    for column in ("price", "cost"):
        if column in row and (row[column] or column == "price"):
            try:
                fields[column] = Money.parse(row[column], currency).model_dump()
            except (ValueError, InvalidOperation):
                errors.append(FieldError(column, "invalid_amount", f"not an amount of {currency}."))
    if row.get("tax_rate_bps"):
        try:
            fields["tax_rate_bps"] = int(row["tax_rate_bps"])
        except ValueError:
            errors.append(FieldError("tax_rate_bps", "invalid", "a whole number of basis points."))
    if "is_tobacco" in row:
        flag = row["is_tobacco"].strip().lower()
        if flag in _TRUE:
            fields["is_tobacco"] = True
        elif flag in _FALSE:
            fields["is_tobacco"] = False
        else:
            errors.append(FieldError("is_tobacco", "invalid", "true or false."))
    return fields, errors


def _differs(product: Product, data: ProductCreate, sent: set[str]) -> dict[str, Any]:
    """The fields the row changes, as a PATCH body."""
    changed: dict[str, Any] = {}
    current: dict[str, Any] = {
        "name": product.name,
        "barcode": product.barcode,
        "category_id": product.category_id,
        "unit": product.unit,
        "price": Money.of(product.price, product.currency),
        "cost": Money.of(product.cost, product.currency) if product.cost is not None else None,
        "tax_rate_bps": product.tax_rate_bps,
        "is_tobacco": product.is_tobacco,
        "tobacco_code": product.tobacco_code,
        "status": product.status,
    }
    for name, value in current.items():
        if name in sent and getattr(data, name) != value:
            changed[name] = getattr(data, name)
    return changed


async def _barcode_taken(
    session: AsyncSession, merchant_id: uuid.UUID, barcode: str | None, product_id: uuid.UUID | None
) -> bool:
    if barcode is None:
        return False
    owner = await session.scalar(
        scoped_to_merchant(sa.select(ProductBarcode.product_id), ProductBarcode, merchant_id).where(
            ProductBarcode.barcode == barcode
        )
    )
    return owner is not None and owner != product_id


async def import_row(
    session: AsyncSession, principal: Principal, number: int, row: dict[str, str], dry_run: bool
) -> dict[str, Any]:
    result: dict[str, Any] = {"row": number, "sku": row.get("sku") or None}
    fields, errors = _fields(row)
    if not errors:
        try:
            data = ProductCreate.model_validate(fields)
        except ValidationError as exc:
            errors = field_errors(exc.errors())
    if errors:
        return {**result, "status": "error", "errors": [e.as_dict() for e in errors]}
    sent = set(fields) - {"sku"}
    product = (
        await session.execute(
            scoped(sa.select(Product), Product, principal).where(Product.sku == data.sku)
        )
    ).scalar_one_or_none()
    try:
        async with session.begin_nested():
            if product is None:
                if dry_run:
                    await check_references(
                        session,
                        principal.merchant_id,
                        category_id=data.category_id,
                        tax_rate_bps=data.tax_rate_bps,
                    )
                    if await _barcode_taken(session, principal.merchant_id, data.barcode, None):
                        raise ValidationFailed(
                            [FieldError("barcode", "duplicate_barcode", "another product's.")]
                        )
                    return {**result, "status": "created", "product_id": None}
                created = await create_product(session, principal, data)
                return {**result, "status": "created", "product_id": str(created.id)}
            changed = _differs(product, data, sent)
            if not changed:
                return {**result, "status": "unchanged", "product_id": str(product.id)}
            if dry_run:
                await check_references(
                    session,
                    principal.merchant_id,
                    category_id=changed.get("category_id"),
                    tax_rate_bps=changed.get("tax_rate_bps"),
                )
                if await _barcode_taken(
                    session, principal.merchant_id, changed.get("barcode"), product.id
                ):
                    raise ValidationFailed(
                        [FieldError("barcode", "duplicate_barcode", "another product's.")]
                    )
            else:
                update = ProductUpdate.model_validate({"version": product.version, **changed})
                await update_product(session, principal, product.id, update)
            return {
                **result,
                "status": "updated",
                "product_id": str(product.id),
                "changed": sorted(changed),
            }
    except Problem as problem:
        errors = problem.errors or [FieldError("row", problem.code, problem.detail or "")]
        return {**result, "status": "error", "errors": [e.as_dict() for e in errors]}
    except Exception:
        # The savepoint is gone with the row: one row the database refuses must not stop the
        # rest of the file, nor keep the worker retrying the same chunk forever.
        log.exception("import row %d of merchant %s failed", number, principal.merchant_id)
        failure = FieldError("row", "row_failed", "The row could not be stored.")
        return {**result, "status": "error", "errors": [failure.as_dict()]}


async def start(
    session: AsyncSession, principal: Principal, content: bytes, content_type: str, dry_run: bool
) -> ProductImport:
    rows = read_rows(content, content_type)
    job = ProductImport(
        merchant_id=principal.merchant_id,
        id=new_id(),
        dry_run=dry_run,
        status="running",
        rows=rows,
        total_rows=len(rows),
        processed_rows=0,
        results=[],
        created_by=principal.subject,
        created_at=datetime.now(UTC),
    )
    session.add(job)
    await session.flush()
    return job


async def process_chunk(session: AsyncSession) -> bool:
    """Apply the next chunk of the oldest running import no other worker holds; ``False``
    when there is nothing to do."""
    job = await session.scalar(
        sa.select(ProductImport)
        .where(ProductImport.status == "running")
        .order_by(ProductImport.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if job is None:
        return False
    principal = _principal(job)
    start_at = job.processed_rows
    rows = job.rows[start_at : start_at + CHUNK]
    results = []
    for offset, row in enumerate(rows):
        # Row numbers as a spreadsheet shows them: the header is row 1.
        results.append(
            await import_row(session, principal, start_at + offset + 2, row, job.dry_run)
        )
    job.results = [*job.results, *results]
    job.processed_rows = start_at + len(rows)
    if job.processed_rows >= job.total_rows:
        job.status = "completed"
        job.finished_at = datetime.now(UTC)
    await session.flush()
    return True


async def run_worker(database: Database, interval: float) -> None:
    while True:
        try:
            while True:
                async with database.transaction() as session:
                    busy = await process_chunk(session)
                if not busy:
                    break
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("importing products failed; retrying")
        await asyncio.sleep(interval)


async def start_worker(runtime: Any) -> None:
    interval = float(getattr(runtime.settings, "import_poll_interval", 1.0))
    runtime.extras["import_worker"] = asyncio.create_task(
        run_worker(runtime.database, interval), name="inventory-imports"
    )


async def stop_worker(runtime: Any) -> None:
    task = runtime.extras.get("import_worker")
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- export ------------------------------------------------------------------------------


async def export_rows(session: AsyncSession, principal: Principal) -> list[list[str]]:
    show_cost = sees_cost(principal)
    rows = [COLUMNS]
    products = await session.stream_scalars(
        scoped(sa.select(Product), Product, principal).order_by(Product.sku)
    )
    async for product in products:
        price = Money.of(product.price, product.currency)
        cost = (
            Money.of(product.cost, product.currency).to_decimal_str()
            if show_cost and product.cost is not None
            else ""
        )
        rows.append(
            [
                product.sku,
                product.name,
                product.barcode or "",
                str(product.category_id or ""),
                product.unit,
                price.to_decimal_str(),
                cost,
                product.currency,
                str(product.tax_rate_bps),
                "true" if product.is_tobacco else "false",
                product.tobacco_code or "",
                product.status,
            ]
        )
    return rows


def to_csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        writer.writerow([_safe(cell) for cell in row])
    return out.getvalue().encode("utf-8-sig")  # the BOM makes Excel read UTF-8


def to_xlsx(rows: list[list[str]]) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("products")
    for row in rows:
        # Text cells throughout: a barcode must not become 6.90123E+12.
        sheet.append([_safe(cell) for cell in row])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _safe(cell: str) -> str:
    # A spreadsheet runs a cell starting with these as a formula.
    if (cell and cell[0] in "=+@") or (cell.startswith("-") and not _is_number(cell)):
        return "'" + cell
    return cell


def _is_number(text: str) -> bool:
    try:
        Decimal(text)
    except InvalidOperation:
        return False
    return True
