"""The offline batch sync.

A batch is one transaction: every order in it is validated in memory against what the batch
read at its start (catalog, members, shifts, ids already taken), and only the orders that pass
are written, with their lines, tenders, refunds and events, in a handful of bulk statements.
A rejected order therefore leaves nothing behind, and the rest of the batch goes through.

Exactly once: the client's order id is the key. Every order key of the batch is locked (in id
order, so two overlapping batches cannot deadlock) before the batch looks for orders it
already holds; a second batch carrying the same orders waits for the first to commit and then
finds them (``already_synced``). Numbers are taken per store and business day after the order
locks, days in ascending order, for the same reason.

Each line freezes the product's cost in force when the till sold it, as best the replica knows
it (``orders.catalog.costs``).

Offline tenders and refunds are recorded on the order as it is written (so the order is paid,
or refunded, at once) and announced to payments (``orders.order.offline_tendered`` and
``orders.order.offline_refunded``), which records them under the same ids; its own
``payments.payment.*`` events then find them here already and change nothing.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any, cast

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.orders import (
    OfflinePayment,
    OrderOfflineRefunded,
    OrderOfflineTendered,
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
    ReturnedLine,
)
from contracts.events.orders import OrderLine as LinePayload
from contracts.events.orders import Tender as TenderPayload
from contracts.ids import new_id
from contracts.money import Money
from contracts.registry import make_envelope
from orders.catalog.costs import CostHistory, cost_history
from orders.catalog.handlers import PRICE_ONLY_STATUS
from orders.models import (
    CatalogProduct,
    CatalogStorePrice,
    Member,
    Order,
    OrderLine,
    Refund,
    Shift,
    Store,
    Tender,
)
from orders.models import (
    SyncBatch as SyncBatchRow,
)
from orders.numbering.service import (
    business_day,
    format_number,
    store_code,
    store_zone,
    take_numbers,
)
from orders.order.service import (
    CLOCK_SKEW,
    MAX_ORDER_AMOUNT,
    PRODUCER,
    accept_returned_lines,
    ensure_store_writable,
    request_hash,
    summary_out,
)
from orders.order.tax import line_tax
from orders.shifts.service import shift_at, shifts_of_till
from orders.sync.schemas import (
    BatchOut,
    DayHeld,
    SyncBatch,
    SyncBatchOut,
    SyncOrder,
    SyncProblem,
    SyncResult,
    SyncState,
)
from servicekit.auth import Principal, require_store_access
from servicekit.errors import FieldError, Problem, ValidationFailed, field_path, problem_type
from servicekit.outbox import add_events

_LOCK_KEYS = sa.text(
    "SELECT count(pg_advisory_xact_lock(hashtextextended("
    "'order:' || CAST(:merchant AS text) || ':' || CAST(k.id AS text), 0))) "
    "FROM unnest(CAST(:ids AS uuid[])) WITH ORDINALITY AS k(id, n)"
)


def _bulk_insert(table: sa.Table, key: sa.Column[Any]) -> sa.Insert:
    """A Core INSERT for many rows at once. With RETURNING, SQLAlchemy sends the rows as a
    few multi-row ``INSERT ... VALUES`` statements (insertmanyvalues) instead of one execution
    per row, and the statement is compiled once whatever the batch size; the ORM's bulk path
    would also build its own bookkeeping per row."""
    return sa.insert(table).returning(key)


_INSERT_ORDERS = _bulk_insert(Order.__table__, Order.__table__.c.id)  # type: ignore[arg-type]
_INSERT_LINES = _bulk_insert(OrderLine.__table__, OrderLine.__table__.c.id)  # type: ignore[arg-type]
_INSERT_TENDERS = _bulk_insert(Tender.__table__, Tender.__table__.c.payment_id)  # type: ignore[arg-type]
_INSERT_REFUNDS = _bulk_insert(Refund.__table__, Refund.__table__.c.refund_id)  # type: ignore[arg-type]


class _Rejected(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


def _reject(code: str, detail: str, errors: list[FieldError] | None = None) -> _Rejected:
    return _Rejected(ValidationFailed(errors or [], detail, code=code))


def _problem_out(problem: Problem) -> SyncProblem:
    return SyncProblem(
        type=problem.type,
        title=problem.title,
        status=problem.status,
        code=problem.code,
        detail=problem.detail,
        errors=[e.as_dict() for e in problem.errors],
    )


def _invalid_shape(exc: ValidationError) -> SyncProblem:
    return SyncProblem(
        type=problem_type("validation_failed"),
        title="Unprocessable Entity",
        status=422,
        code="validation_failed",
        detail="The order has invalid fields.",
        errors=[
            {
                "field": field_path([str(x) if isinstance(x, str) else x for x in e["loc"]]),
                "code": e["type"],
                "message": e["msg"],
            }
            for e in exc.errors(include_url=False)
        ],
    )


@dataclass
class _Context:
    """What the batch read once, at its start."""

    principal: Principal
    store: Store
    till_id: str
    now: datetime
    today: date
    products_by_id: dict[uuid.UUID, CatalogProduct]
    products_by_barcode: dict[str, CatalogProduct]
    store_prices: dict[uuid.UUID, CatalogStorePrice]
    members: set[uuid.UUID]
    till_shifts: list[Shift]
    named_shifts: dict[uuid.UUID, Shift]
    taken_payment_ids: set[uuid.UUID]
    taken_refund_ids: set[uuid.UUID]
    costs: CostHistory


@dataclass
class _Prepared:
    index: int
    body: SyncOrder
    digest: str
    day: date
    order: dict[str, Any]
    lines: list[dict[str, Any]]
    tenders: list[dict[str, Any]]
    refunds: list[dict[str, Any]]
    mismatches: int
    events: list[BaseModel] = field(default_factory=list)


def _catalog_price(ctx: _Context, product: CatalogProduct) -> Money:
    own = ctx.store_prices.get(product.product_id)
    if own is not None and own.price is not None and own.currency is not None:
        return Money.of(own.price, own.currency)
    return Money.of(product.price, product.currency)


def _prepare(ctx: _Context, index: int, body: SyncOrder) -> _Prepared:
    merchant_id = ctx.principal.merchant_id
    if body.occurred_at > ctx.now + CLOCK_SKEW:
        raise _reject(
            "occurred_in_future",
            "The order is dated in the future.",
            [FieldError("occurred_at", "occurred_in_future", "is ahead of the server's clock.")],
        )
    if body.member_id is not None and body.member_id not in ctx.members:
        raise _reject(
            "unknown_member",
            "No such member for this merchant.",
            [FieldError("member_id", "unknown_member", "No such member.")],
        )
    if body.shift_id is not None:
        shift = ctx.named_shifts.get(body.shift_id)
        if shift is None or shift.store_id != ctx.store.store_id:
            raise _reject(
                "unknown_shift",
                "No such shift in this store.",
                [FieldError("shift_id", "unknown_shift", "No such shift in this store.")],
            )
    else:
        shift = shift_at(ctx.till_shifts, body.occurred_at)
    errors: list[FieldError] = []
    order_id = body.id
    lines: list[dict[str, Any]] = []
    currency: str | None = None
    subtotal = discount_total = tax_total = 0
    mismatches = 0
    for i, line in enumerate(body.lines):
        if line.product_id is not None:
            product, where = ctx.products_by_id.get(line.product_id), f"lines[{i}].product_id"
        else:
            assert line.barcode is not None
            product, where = ctx.products_by_barcode.get(line.barcode), f"lines[{i}].barcode"
        if product is None or product.status == PRICE_ONLY_STATUS:
            # A product created on the till while offline: reported, never guessed.
            errors.append(FieldError(where, "unknown_product", "No such product in the catalog."))
            continue
        catalog = _catalog_price(ctx, product)
        price = line.unit_price
        discount = line.discount or Money.zero(price.currency)
        if price.currency != catalog.currency or discount.currency != price.currency:
            errors.append(
                FieldError(f"lines[{i}].unit_price", "currency_mismatch", "wrong currency.")
            )
            continue
        currency = currency or price.currency
        if price.currency != currency:
            errors.append(FieldError("lines", "currency_mismatch", "all lines share a currency."))
            continue
        gross = price.amount * line.quantity
        if gross > MAX_ORDER_AMOUNT:
            errors.append(
                FieldError(
                    f"lines[{i}].quantity", "amount_out_of_range", "price times quantity too large."
                )
            )
            continue
        if discount.amount > gross:
            errors.append(
                FieldError(
                    f"lines[{i}].discount", "discount_out_of_range", "exceeds the line's price."
                )
            )
            continue
        total = gross - discount.amount
        tax = line_tax(total, product.tax_rate_bps)
        mismatch = price.amount != catalog.amount
        mismatches += mismatch
        subtotal += gross
        discount_total += discount.amount
        tax_total += tax
        lines.append(
            {
                "id": new_id(),
                "merchant_id": merchant_id,
                "order_id": order_id,
                "position": i,
                "product_id": product.product_id,
                "name": product.name,
                "quantity": line.quantity,
                "unit_price": price.amount,
                "discount": discount.amount,
                "total": total,
                "price_overridden": mismatch,
                "kitchen_station": product.kitchen_station,
                "notes": line.notes,
                "modifiers": list(line.modifiers),
                "tax_rate_bps": product.tax_rate_bps,
                "tax": tax,
                "catalog_unit_price": catalog.amount if mismatch else None,
                "price_mismatch": mismatch,
                "unit_cost": ctx.costs.at(product.product_id, body.occurred_at, price.currency),
            }
        )
    if errors:
        raise _reject("validation_failed", "The order has invalid lines.", errors)
    assert currency is not None
    total = subtotal - discount_total
    if subtotal > MAX_ORDER_AMOUNT:
        raise _reject("amount_out_of_range", "The order is too large.")
    if total <= 0:
        raise _reject(
            "total_not_positive",
            "The order's total must be above zero.",
            [FieldError("lines", "total_not_positive", "the total must be above zero.")],
        )
    # Tenders and refunds.
    tender_rows: list[dict[str, Any]] = []
    tendered_by_payment: dict[uuid.UUID, int] = {}
    for i, tender in enumerate(body.tenders):
        where = f"tenders[{i}]"
        if tender.amount.currency != currency:
            errors.append(FieldError(f"{where}.amount", "currency_mismatch", "wrong currency."))
        elif tender.method in ("stored_value", "points"):
            errors.append(
                FieldError(
                    f"{where}.method",
                    f"{tender.method}_offline",
                    "stored value and points need the member's balance: take them online.",
                )
            )
        elif tender.payment_id in ctx.taken_payment_ids or tender.payment_id in tendered_by_payment:
            errors.append(
                FieldError(f"{where}.payment_id", "payment_id_conflict", "payment id already used.")
            )
        else:
            tendered_by_payment[tender.payment_id] = tender.amount.amount
            tender_rows.append(
                {
                    "merchant_id": merchant_id,
                    "payment_id": tender.payment_id,
                    "order_id": order_id,
                    "method": tender.method,
                    "currency": currency,
                    "amount": tender.amount.amount,
                    "recorded_at": ctx.now,
                    "shift_id": shift.id if shift is not None else None,
                    "occurred_at": tender.occurred_at or body.occurred_at,
                }
            )
    paid_total = sum(tendered_by_payment.values())
    if not errors and paid_total > total:
        errors.append(
            FieldError("tenders", "overpaid", "the tenders exceed the order's total (give change).")
        )
    refund_rows: list[dict[str, Any]] = []
    refunded_by_payment: dict[uuid.UUID, int] = defaultdict(int)
    methods = {t.payment_id: t.method for t in body.tenders}
    for i, refund in enumerate(body.refunds):
        where = f"refunds[{i}]"
        if refund.payment_id not in tendered_by_payment:
            errors.append(
                FieldError(f"{where}.payment_id", "unknown_payment", "not a tender of this order.")
            )
        elif refund.amount.currency != currency:
            errors.append(FieldError(f"{where}.amount", "currency_mismatch", "wrong currency."))
        elif refund.refund_id in ctx.taken_refund_ids or any(
            r["refund_id"] == refund.refund_id for r in refund_rows
        ):
            errors.append(
                FieldError(f"{where}.refund_id", "refund_id_conflict", "refund id already used.")
            )
        elif (
            refunded_by_payment[refund.payment_id] + refund.amount.amount
            > tendered_by_payment[refund.payment_id]
        ):
            errors.append(
                FieldError(f"{where}.amount", "refund_exceeds_payment", "more than was paid.")
            )
        else:
            refunded_by_payment[refund.payment_id] += refund.amount.amount
            refund_shift = shift_at(ctx.till_shifts, refund.occurred_at) or shift
            refund_rows.append(
                {
                    "merchant_id": merchant_id,
                    "refund_id": refund.refund_id,
                    "order_id": order_id,
                    "payment_id": refund.payment_id,
                    "method": methods[refund.payment_id],
                    "currency": currency,
                    "amount": refund.amount.amount,
                    "requested_returned_lines": [
                        {"product_id": str(x.product_id), "quantity": x.quantity}
                        for x in refund.returned_lines
                    ],
                    "returned_lines": [],
                    "announced_at": None,
                    "recorded_at": ctx.now,
                    "shift_id": refund_shift.id if refund_shift is not None else None,
                    "occurred_at": refund.occurred_at,
                }
            )
    if errors:
        raise _reject("validation_failed", "The order's payments are invalid.", errors)
    day = business_day(body.occurred_at, store_zone(ctx.store))
    late = day < ctx.today or (
        shift is not None and shift.closed_at is not None and shift.closed_at <= ctx.now
    )
    order = {
        "merchant_id": merchant_id,
        "id": order_id,
        "store_id": ctx.store.store_id,
        "channel": body.channel,
        "member_id": body.member_id,
        "table_label": body.table,
        "people_count": body.people_count,
        "status": "placed",
        "currency": currency,
        "subtotal": subtotal,
        "discount_total": discount_total,
        "total": total,
        "paid_total": paid_total,
        "refunded_total": 0,
        "request_hash": request_hash(body),
        "cancel_reason": None,
        "occurred_at": body.occurred_at,
        "placed_at": ctx.now,
        "paid_at": None,
        "completed_at": None,
        "cancelled_at": None,
        "version": 1,
        "created_at": ctx.now,
        "updated_at": ctx.now,
        "number": None,
        "business_day": day,
        "till_id": shift.till_id if shift is not None else ctx.till_id,
        "shift_id": shift.id if shift is not None else None,
        "cashier_id": (shift.cashier_id if shift is not None else None) or ctx.principal.subject,
        "source": "offline",
        "synced_at": ctx.now,
        "late": late,
        "tax_total": tax_total,
    }
    return _Prepared(
        index, body, order["request_hash"], day, order, lines, tender_rows, refund_rows, mismatches
    )


def _money(prepared: _Prepared, amount: int) -> Money:
    return Money.of(amount, prepared.order["currency"])


def _line_payloads(prepared: _Prepared) -> list[LinePayload]:
    return [
        LinePayload(
            line_id=line["id"],
            product_id=line["product_id"],
            name=line["name"],
            quantity=line["quantity"],
            unit_price=_money(prepared, line["unit_price"]),
            discount=_money(prepared, line["discount"]),
            total=_money(prepared, line["total"]),
            kitchen_station=line["kitchen_station"],
            notes=line["notes"],
            modifiers=line["modifiers"],
            tax_rate_bps=line["tax_rate_bps"],
            tax=_money(prepared, line["tax"]),
        )
        for line in prepared.lines
    ]


def _settle(prepared: _Prepared, now: datetime) -> None:
    """The order's state after its offline tenders and refunds, and its events, in the order
    a consumer must see them (the same events an online order's life would produce)."""
    order, body = prepared.order, prepared.body
    lines = _line_payloads(prepared)
    prepared.events.append(
        OrderPlaced(
            order_id=order["id"],
            store_id=order["store_id"],
            channel=order["channel"],
            member_id=order["member_id"],
            table=order["table_label"],
            lines=lines,
            subtotal=_money(prepared, order["subtotal"]),
            discount_total=_money(prepared, order["discount_total"]),
            total=_money(prepared, order["total"]),
            placed_at=now,
            number=order["number"],
            business_day=order["business_day"],
            tax_total=_money(prepared, order["tax_total"]),
            source="offline",
            till_id=order["till_id"],
            shift_id=order["shift_id"],
        )
    )
    by_id = {t.payment_id: t for t in body.tenders}
    for row in prepared.tenders:
        tender = by_id[row["payment_id"]]
        prepared.events.append(
            OrderOfflineTendered(
                payment_id=tender.payment_id,
                order_id=order["id"],
                store_id=order["store_id"],
                method=tender.method,
                amount=tender.amount,
                tendered=tender.tendered,
                provider_reference=tender.provider_reference,
                till_id=order["till_id"],
                occurred_at=row["occurred_at"],
            )
        )
    if not prepared.tenders or order["paid_total"] < order["total"]:
        # Not paid in full offline: refunds wait, as online, until the order is paid.
        return
    order["status"], order["version"], order["paid_at"] = "paid", 2, now
    prepared.events.append(
        OrderPaid(
            order_id=order["id"],
            store_id=order["store_id"],
            channel=order["channel"],
            member_id=order["member_id"],
            lines=lines,
            subtotal=_money(prepared, order["subtotal"]),
            discount_total=_money(prepared, order["discount_total"]),
            total=_money(prepared, order["total"]),
            tenders=[
                TenderPayload(
                    payment_id=t["payment_id"],
                    method=t["method"],
                    amount=_money(prepared, t["amount"]),
                )
                for t in prepared.tenders
            ],
            occurred_at=order["occurred_at"],
            paid_at=now,
            number=order["number"],
            business_day=order["business_day"],
            tax_total=_money(prepared, order["tax_total"]),
        )
    )
    sold: dict[uuid.UUID, int] = defaultdict(int)
    for line in prepared.lines:
        sold[line["product_id"]] += line["quantity"]
    returned: dict[uuid.UUID, int] = {}
    refunded = 0
    by_refund = {r.refund_id: r for r in body.refunds}
    for row in sorted(prepared.refunds, key=lambda r: (r["occurred_at"], r["refund_id"])):
        refund = by_refund[row["refund_id"]]
        paid_with = by_id[refund.payment_id]
        row["returned_lines"] = accept_returned_lines(
            row["requested_returned_lines"], sold, returned
        )
        row["announced_at"] = now
        refunded += row["amount"]
        fully = refunded >= order["paid_total"]
        order["status"] = "refunded" if fully else "partially_refunded"
        order["version"] += 1
        order["refunded_total"] = refunded
        prepared.events.append(
            OrderOfflineRefunded(
                refund_id=refund.refund_id,
                payment_id=refund.payment_id,
                order_id=order["id"],
                store_id=order["store_id"],
                amount=refund.amount,
                returned_lines=[
                    ReturnedLine(product_id=x.product_id, quantity=x.quantity)
                    for x in refund.returned_lines
                ],
                reason=refund.reason,
                till_id=order["till_id"],
                occurred_at=refund.occurred_at,
                payment=OfflinePayment(
                    method=paid_with.method,
                    amount=paid_with.amount,
                    tendered=paid_with.tendered,
                    provider_reference=paid_with.provider_reference,
                    occurred_at=paid_with.occurred_at or body.occurred_at,
                ),
            )
        )
        prepared.events.append(
            OrderRefunded(
                order_id=order["id"],
                store_id=order["store_id"],
                member_id=order["member_id"],
                refund_id=refund.refund_id,
                payment_id=refund.payment_id,
                amount=refund.amount,
                refunded_total=_money(prepared, refunded),
                order_total=_money(prepared, order["total"]),
                returned_lines=[ReturnedLine.model_validate(x) for x in row["returned_lines"]],
                fully_refunded=fully,
            )
        )


async def _context(
    session: AsyncSession,
    principal: Principal,
    store: Store,
    till_id: str,
    orders: list[SyncOrder],
    now: datetime,
) -> _Context:
    merchant_id = principal.merchant_id
    ids = {line.product_id for o in orders for line in o.lines if line.product_id is not None}
    barcodes = {line.barcode for o in orders for line in o.lines if line.barcode is not None}
    by_id: dict[uuid.UUID, CatalogProduct] = {}
    by_barcode: dict[str, CatalogProduct] = {}
    if ids:
        rows = await session.execute(
            sa.select(CatalogProduct).where(
                CatalogProduct.merchant_id == merchant_id, CatalogProduct.product_id.in_(ids)
            )
        )
        by_id = {p.product_id: p for p in rows.scalars()}
    if barcodes:
        rows = await session.execute(
            sa.select(CatalogProduct).where(
                CatalogProduct.merchant_id == merchant_id, CatalogProduct.barcode.in_(barcodes)
            )
        )
        by_barcode = {p.barcode: p for p in rows.scalars() if p.barcode is not None}
    product_ids = {p.product_id for p in [*by_id.values(), *by_barcode.values()]}
    store_prices = {}
    if product_ids:
        store_prices = {
            row.product_id: row
            for row in (
                await session.execute(
                    sa.select(CatalogStorePrice).where(
                        CatalogStorePrice.merchant_id == merchant_id,
                        CatalogStorePrice.store_id == store.store_id,
                        CatalogStorePrice.product_id.in_(product_ids),
                        CatalogStorePrice.price.is_not(None),
                    )
                )
            ).scalars()
        }
    member_ids = {o.member_id for o in orders if o.member_id is not None}
    members: set[uuid.UUID] = set()
    if member_ids:
        members = set(
            (
                await session.execute(
                    sa.select(Member.member_id).where(
                        Member.merchant_id == merchant_id, Member.member_id.in_(member_ids)
                    )
                )
            ).scalars()
        )
    named = {o.shift_id for o in orders if o.shift_id is not None}
    named_shifts: dict[uuid.UUID, Shift] = {}
    if named:
        named_shifts = {
            s.id: s
            for s in (
                await session.execute(
                    sa.select(Shift).where(Shift.merchant_id == merchant_id, Shift.id.in_(named))
                )
            ).scalars()
        }
    payment_ids = {t.payment_id for o in orders for t in o.tenders}
    refund_ids = {r.refund_id for o in orders for r in o.refunds}
    taken_payments: set[uuid.UUID] = set()
    taken_refunds: set[uuid.UUID] = set()
    if payment_ids:
        taken_payments = set(
            (
                await session.execute(
                    sa.select(Tender.payment_id).where(
                        Tender.merchant_id == merchant_id, Tender.payment_id.in_(payment_ids)
                    )
                )
            ).scalars()
        )
    if refund_ids:
        taken_refunds = set(
            (
                await session.execute(
                    sa.select(Refund.refund_id).where(
                        Refund.merchant_id == merchant_id, Refund.refund_id.in_(refund_ids)
                    )
                )
            ).scalars()
        )
    return _Context(
        principal=principal,
        store=store,
        till_id=till_id,
        now=now,
        today=business_day(now, store_zone(store)),
        products_by_id=by_id,
        products_by_barcode=by_barcode,
        store_prices=store_prices,
        members=members,
        till_shifts=await shifts_of_till(session, merchant_id, store.store_id, till_id),
        named_shifts=named_shifts,
        taken_payment_ids=taken_payments,
        taken_refund_ids=taken_refunds,
        costs=await cost_history(session, merchant_id, product_ids),
    )


def _envelope(order: dict[str, Any], payload: BaseModel, now: datetime) -> EventEnvelope:
    return make_envelope(
        payload,
        producer=PRODUCER,
        aggregate_id=order["id"],
        merchant_id=order["merchant_id"],
        store_id=order["store_id"],
        occurred_at=now,
    )


async def sync_batch(session: AsyncSession, principal: Principal, body: SyncBatch) -> SyncBatchOut:
    require_store_access(principal, body.store_id)
    store = await ensure_store_writable(
        session, principal.merchant_id, body.store_id, must_be_known=True
    )
    assert store is not None
    now = datetime.now(UTC)
    results: dict[int, SyncResult] = {}
    valid: dict[uuid.UUID, tuple[int, SyncOrder]] = {}
    for index, raw in enumerate(body.orders):
        raw_id = raw.get("id") if isinstance(raw, dict) else None
        try:
            parsed = SyncOrder.model_validate(raw)
        except ValidationError as exc:
            try:
                reported_id = uuid.UUID(str(raw_id)) if raw_id is not None else None
            except ValueError:
                reported_id = None
            results[index] = SyncResult(
                index=index,
                order_id=reported_id,
                status="rejected",
                order=None,
                problem=_invalid_shape(exc),
            )
            continue
        if parsed.id in valid:
            results[index] = SyncResult(
                index=index,
                order_id=parsed.id,
                status="rejected",
                order=None,
                problem=_problem_out(
                    _reject("duplicate_in_batch", "The order appears twice in the batch.").problem
                ),
            )
            continue
        valid[parsed.id] = (index, parsed)
    ids = sorted(valid)
    if ids:
        await session.execute(
            _LOCK_KEYS, {"merchant": str(principal.merchant_id), "ids": [str(i) for i in ids]}
        )
    existing = {}
    if ids:
        existing = {
            o.id: o
            for o in (
                await session.execute(
                    sa.select(Order).where(
                        Order.merchant_id == principal.merchant_id, Order.id.in_(ids)
                    )
                )
            ).scalars()
        }
    fresh: list[tuple[int, SyncOrder]] = []
    for order_id in ids:
        index, parsed = valid[order_id]
        held = existing.get(order_id)
        if held is None:
            fresh.append((index, parsed))
        elif held.request_hash == request_hash(parsed) and principal.can_see_store(held.store_id):
            results[index] = SyncResult(
                index=index, order_id=order_id, status="already_synced", order=summary_out(held)
            )
        else:
            results[index] = SyncResult(
                index=index,
                order_id=order_id,
                status="rejected",
                order=None,
                problem=SyncProblem(
                    type=problem_type("order_id_conflict"),
                    title="Conflict",
                    status=409,
                    code="order_id_conflict",
                    detail="An order with this id exists with different contents.",
                ),
            )
    prepared: list[_Prepared] = []
    if fresh:
        ctx = await _context(session, principal, store, body.till_id, [o for _, o in fresh], now)
        for index, parsed in fresh:
            try:
                prepared.append(_prepare(ctx, index, parsed))
            except _Rejected as rejected:
                results[index] = SyncResult(
                    index=index,
                    order_id=parsed.id,
                    status="rejected",
                    order=None,
                    problem=_problem_out(rejected.problem),
                )
    await _write(session, store, prepared, now)
    for item in prepared:
        results[item.index] = SyncResult(
            index=item.index,
            order_id=item.body.id,
            status="created",
            # The row as written, read as an order: no ORM instance (and its state) per order.
            order=summary_out(cast(Order, SimpleNamespace(**item.order))),
            price_mismatches=item.mismatches,
        )
    ordered = [results[i] for i in range(len(body.orders))]
    counts = {
        status: sum(1 for r in ordered if r.status == status)
        for status in ("created", "already_synced", "rejected")
    }
    batch_id = new_id()
    session.add(
        SyncBatchRow(
            id=batch_id,
            merchant_id=principal.merchant_id,
            store_id=body.store_id,
            till_id=body.till_id,
            received_at=now,
            **counts,
        )
    )
    await session.flush()
    return SyncBatchOut(
        batch_id=batch_id, store_id=body.store_id, till_id=body.till_id, results=ordered, **counts
    )


async def _write(
    session: AsyncSession, store: Store, prepared: list[_Prepared], now: datetime
) -> None:
    if not prepared:
        return
    # Numbers in the order the till took the orders, days ascending (see the module doc).
    by_day: dict[date, list[_Prepared]] = defaultdict(list)
    for item in prepared:
        by_day[item.day].append(item)
    code = store_code(store, store.store_id)
    for day in sorted(by_day):
        items = sorted(by_day[day], key=lambda p: (p.body.occurred_at, p.body.id))
        first = await take_numbers(session, store.merchant_id, store.store_id, day, len(items))
        for offset, item in enumerate(items):
            item.order["number"] = format_number(code, day, first + offset)
    events: list[EventEnvelope] = []
    for item in prepared:
        _settle(item, now)
        events.extend(_envelope(item.order, payload, now) for payload in item.events)
    await session.execute(_INSERT_ORDERS, [p.order for p in prepared])
    await session.execute(_INSERT_LINES, [line for p in prepared for line in p.lines])
    tenders = [t for p in prepared for t in p.tenders]
    if tenders:
        await session.execute(_INSERT_TENDERS, tenders)
    refunds = [r for p in prepared for r in p.refunds]
    if refunds:
        await session.execute(_INSERT_REFUNDS, refunds)
    await add_events(session, events)


async def sync_state(
    session: AsyncSession, principal: Principal, store_id: uuid.UUID, till_id: str
) -> SyncState:
    require_store_access(principal, store_id)
    last = (
        await session.execute(
            sa.select(SyncBatchRow)
            .where(
                SyncBatchRow.merchant_id == principal.merchant_id,
                SyncBatchRow.store_id == store_id,
                SyncBatchRow.till_id == till_id,
            )
            .order_by(SyncBatchRow.received_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    rows = await session.execute(
        sa.select(
            Order.business_day,
            sa.func.count(),
            sa.func.sum(Order.total),
            sa.func.min(Order.currency),
            sa.func.count().filter(Order.late),
        )
        .where(
            Order.merchant_id == principal.merchant_id,
            Order.store_id == store_id,
            Order.till_id == till_id,
        )
        .group_by(Order.business_day)
        .order_by(Order.business_day.desc())
        .limit(62)
    )
    return SyncState(
        store_id=store_id,
        till_id=till_id,
        last_batch=None
        if last is None
        else BatchOut(
            batch_id=last.id,
            received_at=last.received_at,
            created=last.created,
            already_synced=last.already_synced,
            rejected=last.rejected,
        ),
        days=[
            DayHeld(
                business_day=day,
                orders=int(count),
                total=Money.of(int(total), currency) if currency else None,
                late=int(late),
            )
            for day, count, total, currency, late in rows.all()
        ],
    )
