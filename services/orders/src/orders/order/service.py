"""Order logic: placement priced from the catalog replica and by the pricing engine with the
store's promotions and the member's coupons (refusing unknown stores and members, future
dates and amounts out of range; quoting runs the same without writing), the state machine,
tenders and refunds from payments' events in any order (returned goods checked against the
order), and kitchen tickets.

Every state change writes its ``orders.*`` event to the outbox in the same transaction.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events.orders import (
    KitchenTicketCreated,
    OrderCancelled,
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
    ReturnedLine,
    TicketLine,
)
from contracts.events.orders import OrderLine as LinePayload
from contracts.events.orders import Tender as TenderPayload
from contracts.ids import new_id
from contracts.money import Money
from contracts.registry import make_envelope
from orders.catalog.costs import current_cost
from orders.catalog.handlers import PRICE_ONLY_STATUS
from orders.coupons import service as coupons
from orders.models import (
    CatalogProduct,
    CatalogStorePrice,
    Member,
    Order,
    OrderLine,
    Refund,
    Store,
    Tender,
    refund_of_a_tender,
)
from orders.numbering.service import (
    business_day,
    format_number,
    store_code,
    store_zone,
    take_numbers,
)
from orders.order.schemas import (
    AdjustmentOut,
    LineIn,
    LineOut,
    OrderCreate,
    OrderOut,
    OrderSummary,
    RefundOut,
    ReturnedLineOut,
    TaxOut,
    TenderOut,
)
from orders.order.tax import line_tax, tax_by_rate
from orders.promotions import engine, pricing
from orders.promotions import service as promotions
from orders.promotions.schemas import (
    AppliedCouponOut,
    AppliedPromotionOut,
    QuoteLineOut,
    QuoteOut,
    RejectedCouponOut,
    RejectedPromotionOut,
)
from orders.shifts.service import shift_for_order
from servicekit.auth import Principal, require_store_access
from servicekit.errors import (
    Conflict,
    FieldError,
    Forbidden,
    IllegalState,
    Locked,
    NotFound,
    Problem,
    ValidationFailed,
)
from servicekit.outbox import add_event

PRODUCER = "orders"
DISCOUNT_SCOPE = "orders:discount"
#: Channels whose lines with a kitchen station are sent to the kitchen.
KITCHEN_CHANNELS = frozenset({"pos", "mini_program", "qr_table"})
#: The largest amount an order or one of its lines may reach, in minor units: the largest
#: integer a JSON client parsing numbers as doubles still reads exactly.
MAX_ORDER_AMOUNT = 2**53 - 1
#: How far ahead of our clock a till's clock may run before its ``occurred_at`` is refused.
CLOCK_SKEW = timedelta(minutes=5)
#: States in which the order's money was taken and refunds are announced.
PAID_STATES = frozenset({"paid", "completed", "partially_refunded", "refunded"})

TRANSITIONS: dict[str, frozenset[str]] = {
    "open": frozenset({"placed", "cancelled"}),
    "placed": frozenset({"paid", "cancelled"}),
    "paid": frozenset({"completed", "partially_refunded", "refunded"}),
    "completed": frozenset({"partially_refunded", "refunded"}),
    "partially_refunded": frozenset({"partially_refunded", "refunded"}),
    "cancelled": frozenset(),
    "refunded": frozenset(),
}


def transition(order: Order, target: str) -> None:
    """Move ``order`` to ``target`` or answer 409 ``illegal_transition``."""
    if target not in TRANSITIONS[order.status]:
        raise IllegalState(
            "illegal_transition",
            f"An order that is {order.status} cannot become {target}.",
            current_status=order.status,
            requested_status=target,
        )
    order.status = target
    order.version += 1
    order.updated_at = datetime.now(UTC)


async def _emit(
    session: AsyncSession,
    order: Order,
    payload: BaseModel,
    *,
    aggregate_id: uuid.UUID | None = None,
    causation_id: uuid.UUID | None = None,
    correlation_id: uuid.UUID | None = None,
) -> None:
    envelope = make_envelope(
        payload,
        producer=PRODUCER,
        aggregate_id=aggregate_id or order.id,
        merchant_id=order.merchant_id,
        store_id=order.store_id,
        causation_id=causation_id,
        correlation_id=correlation_id,
    )
    await add_event(session, envelope)


def _money(order: Order, amount: int) -> Money:
    return Money.of(amount, order.currency)


def _transient(problem: Problem) -> Problem:
    """Mark an answer that may change once a replica catches up, so it is never kept as the
    final answer to an ``Idempotency-Key``."""
    problem.transient = True
    return problem


async def lock_order_key(
    session: AsyncSession, merchant_id: uuid.UUID, order_id: uuid.UUID
) -> None:
    """Serialise placing an order with recording its payments and refunds.

    A tender or refund can arrive before its order (an offline till) and the two transactions
    cannot see each other's uncommitted rows; without a common lock each could miss the other
    and the payment would never settle the order. The lock is held until commit.
    """
    await session.execute(
        sa.select(
            sa.func.pg_advisory_xact_lock(
                sa.func.hashtextextended(f"order:{merchant_id}:{order_id}", 0)
            )
        )
    )


# --- reading ---------------------------------------------------------------------------------


async def load(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    order_id: uuid.UUID,
    *,
    for_update: bool = False,
) -> Order | None:
    stmt = sa.select(Order).where(Order.merchant_id == merchant_id, Order.id == order_id)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def load_for_event(
    session: AsyncSession, merchant_id: uuid.UUID, order_id: uuid.UUID
) -> Order | None:
    """The order, row-locked, for recording a payment's or refund's event.

    A visible order row means its placement committed, settlement included. When there is
    none yet, the order key's lock makes a concurrent placement either finish first (and be
    found now) or wait until this event's row is committed (and see it when it settles)."""
    order = await load(session, merchant_id, order_id, for_update=True)
    if order is None:
        await lock_order_key(session, merchant_id, order_id)
        order = await load(session, merchant_id, order_id, for_update=True)
    return order


async def get_visible(
    session: AsyncSession, principal: Principal, order_id: uuid.UUID, *, for_update: bool = False
) -> Order:
    order = await load(session, principal.merchant_id, order_id, for_update=for_update)
    if order is None or not principal.can_see_store(order.store_id):
        raise NotFound("Order not found.")
    return order


def summary_out(order: Order) -> OrderSummary:
    return OrderSummary(
        id=order.id,
        store_id=order.store_id,
        channel=order.channel,
        member_id=order.member_id,
        table=order.table_label,
        people_count=order.people_count,
        status=order.status,
        subtotal=_money(order, order.subtotal),
        discount_total=_money(order, order.discount_total),
        total=_money(order, order.total),
        paid_total=_money(order, order.paid_total),
        refunded_total=_money(order, order.refunded_total),
        cancel_reason=order.cancel_reason,
        occurred_at=order.occurred_at,
        placed_at=order.placed_at,
        paid_at=order.paid_at,
        completed_at=order.completed_at,
        cancelled_at=order.cancelled_at,
        version=order.version,
        created_at=order.created_at,
        number=order.number,
        business_day=order.business_day,
        tax_total=_money(order, order.tax_total),
        till_id=order.till_id,
        shift_id=order.shift_id,
        cashier_id=order.cashier_id,
        source=order.source,
        synced_at=order.synced_at,
        late=order.late,
    )


async def _lines(session: AsyncSession, order: Order) -> list[OrderLine]:
    rows = await session.execute(
        sa.select(OrderLine)
        .where(OrderLine.merchant_id == order.merchant_id, OrderLine.order_id == order.id)
        .order_by(OrderLine.position)
    )
    return list(rows.scalars())


async def _tenders(
    session: AsyncSession, merchant_id: uuid.UUID, order_id: uuid.UUID
) -> list[Tender]:
    rows = await session.execute(
        sa.select(Tender)
        .where(Tender.merchant_id == merchant_id, Tender.order_id == order_id)
        .order_by(Tender.recorded_at, Tender.payment_id)
    )
    return list(rows.scalars())


async def _refunds(session: AsyncSession, order: Order) -> list[Refund]:
    rows = await session.execute(
        sa.select(Refund)
        .where(Refund.merchant_id == order.merchant_id, Refund.order_id == order.id)
        .order_by(Refund.recorded_at, Refund.refund_id)
    )
    return list(rows.scalars())


async def order_out(session: AsyncSession, order: Order) -> OrderOut:
    lines = await _lines(session, order)
    tenders = await _tenders(session, order.merchant_id, order.id)
    return _order_out(order, lines, tenders, await _refunds(session, order))


def _order_out(
    order: Order, lines: list[OrderLine], tenders: list[Tender], refunds: list[Refund]
) -> OrderOut:
    return OrderOut(
        **summary_out(order).model_dump(),
        lines=[
            LineOut(
                line_id=line.id,
                product_id=line.product_id,
                name=line.name,
                quantity=line.quantity,
                unit_price=_money(order, line.unit_price),
                discount=_money(order, line.discount),
                total=_money(order, line.total),
                price_overridden=line.price_overridden,
                kitchen_station=line.kitchen_station,
                notes=line.notes,
                modifiers=line.modifiers,
                tax_rate_bps=line.tax_rate_bps,
                tax=_money(order, line.tax),
                catalog_unit_price=(
                    None
                    if line.catalog_unit_price is None
                    else _money(order, line.catalog_unit_price)
                ),
                price_mismatch=line.price_mismatch,
                adjustments=[AdjustmentOut.model_validate(a) for a in line.adjustments],
            )
            for line in lines
        ],
        tax_by_rate=[
            TaxOut(rate_bps=rate, tax=_money(order, tax))
            for rate, tax in tax_by_rate((line.tax_rate_bps, line.tax) for line in lines).items()
        ],
        tenders=[
            TenderOut(
                payment_id=t.payment_id,
                method=t.method,
                amount=Money.of(t.amount, t.currency),
                recorded_at=t.recorded_at,
                shift_id=t.shift_id,
            )
            for t in tenders
        ],
        refunds=[
            RefundOut(
                refund_id=r.refund_id,
                payment_id=r.payment_id,
                method=r.method,
                amount=Money.of(r.amount, r.currency),
                returned_lines=[ReturnedLineOut.model_validate(x) for x in r.returned_lines],
                requested_returned_lines=[
                    ReturnedLineOut.model_validate(x) for x in r.requested_returned_lines
                ],
                announced=r.announced_at is not None,
                recorded_at=r.recorded_at,
            )
            for r in refunds
        ],
    )


# --- placing -----------------------------------------------------------------------------------


#: Request fields added after orders were first stored: left out of the digest while unset, so
#: an order stored before them still matches its resend.
_LATER_FIELDS = ("till_id", "shift_id", "coupon_ids")


def request_hash(body: BaseModel) -> str:
    # Looked up in the model's fields: a missing attribute would make pydantic build an
    # AttributeError, which costs more than the rest of the digest.
    fields = type(body).model_fields
    unset = {name for name in _LATER_FIELDS if name not in fields or getattr(body, name) is None}
    canonical = json.dumps(
        body.model_dump(mode="json", exclude=unset), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


async def ensure_store_writable(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    store_id: uuid.UUID,
    *,
    must_be_known: bool = False,
) -> Store | None:
    """423 when identity locked the store. A new order needs a store identity announced for
    this merchant (422 ``unknown_store`` otherwise, the same for another merchant's store);
    orders placed before the store replica existed stay changeable. Returns the store."""
    store = await session.get(Store, (merchant_id, store_id))
    if store is None:
        if must_be_known:
            raise _transient(
                ValidationFailed(
                    [FieldError("store_id", "unknown_store", "No such store.")],
                    "No such store for this merchant.",
                    code="unknown_store",
                )
            )
        return None
    if store.status != "active":
        raise Locked(
            f"The store is {store.status.replace('_', '-')}: it takes no new sales or changes.",
            code=f"store_{store.status}",
        )
    return store


@dataclass
class _Priced:
    line: LineIn
    product: CatalogProduct
    unit_price: Money
    overridden: bool
    discount: Money
    #: Where the unit price came from (``store``, ``hq`` or ``override``) and its version.
    price_source: str = "hq"
    price_version: int | None = None
    adjustments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def gross(self) -> Money:
        return self.unit_price * self.line.quantity


async def _resolve_products(
    session: AsyncSession, merchant_id: uuid.UUID, lines: list[LineIn]
) -> list[CatalogProduct]:
    ids = {line.product_id for line in lines if line.product_id is not None}
    barcodes = {line.barcode for line in lines if line.barcode is not None}
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
    errors: list[FieldError] = []
    found: list[CatalogProduct] = []
    for i, line in enumerate(lines):
        if line.product_id is not None:
            product, field = by_id.get(line.product_id), f"lines[{i}].product_id"
        else:
            assert line.barcode is not None
            product, field = by_barcode.get(line.barcode), f"lines[{i}].barcode"
        if product is None or product.status == PRICE_ONLY_STATUS:
            errors.append(FieldError(field, "unknown_product", "No such product in the catalog."))
        elif product.status != "active":
            errors.append(FieldError(field, "product_inactive", "The product is not on sale."))
        else:
            found.append(product)
    if any(e.code == "unknown_product" for e in errors):
        # A product created a moment ago may not have reached the catalog replica yet: the
        # till's retry runs again instead of replaying this answer.
        raise _transient(ValidationFailed(errors))
    if errors:
        raise ValidationFailed(errors)
    return found


async def _price_lines(
    session: AsyncSession, merchant_id: uuid.UUID, body: OrderCreate
) -> list[_Priced]:
    products = await _resolve_products(session, merchant_id, body.lines)
    store_prices = {
        row.product_id: row
        for row in (
            await session.execute(
                sa.select(CatalogStorePrice).where(
                    CatalogStorePrice.merchant_id == merchant_id,
                    CatalogStorePrice.store_id == body.store_id,
                    CatalogStorePrice.product_id.in_({p.product_id for p in products}),
                    CatalogStorePrice.price.is_not(None),
                )
            )
        ).scalars()
    }
    priced: list[_Priced] = []
    errors: list[FieldError] = []
    for i, (line, product) in enumerate(zip(body.lines, products, strict=True)):
        own = store_prices.get(product.product_id)
        source_version: int | None
        if own is not None and own.price is not None and own.currency is not None:
            catalog_price = Money.of(own.price, own.currency)
            source, source_version = "store", own.version
        else:
            catalog_price = Money.of(product.price, product.currency)
            source, source_version = "hq", product.price_version
        if line.unit_price is not None:
            source, source_version = "override", None
        unit_price = line.unit_price or catalog_price
        if unit_price.currency != catalog_price.currency:
            errors.append(
                FieldError(f"lines[{i}].unit_price", "currency_mismatch", "wrong currency.")
            )
            continue
        if unit_price.is_negative:
            errors.append(
                FieldError(f"lines[{i}].unit_price", "negative_amount", "must not be negative.")
            )
            continue
        # Integers first: Money refuses amounts beyond a BIGINT, and a line of 100,000 units
        # at a huge price must be a 422, not an error while building it.
        if unit_price.amount * line.quantity > MAX_ORDER_AMOUNT:
            errors.append(
                FieldError(
                    f"lines[{i}].quantity",
                    "amount_out_of_range",
                    f"price times quantity exceeds {MAX_ORDER_AMOUNT} minor units.",
                )
            )
            continue
        discount = line.discount or Money.zero(unit_price.currency)
        item = _Priced(
            line,
            product,
            unit_price,
            line.unit_price is not None,
            discount,
            source,
            source_version,
        )
        if discount.currency != unit_price.currency:
            errors.append(
                FieldError(f"lines[{i}].discount", "currency_mismatch", "wrong currency.")
            )
        elif discount.is_negative or discount > item.gross:
            errors.append(
                FieldError(
                    f"lines[{i}].discount",
                    "discount_out_of_range",
                    "must be between zero and the line's price times its quantity.",
                )
            )
        else:
            priced.append(item)
    if not errors and len({p.unit_price.currency for p in priced}) > 1:
        errors.append(FieldError("lines", "currency_mismatch", "all lines must share a currency."))
    if not errors and sum(p.gross.amount for p in priced) > MAX_ORDER_AMOUNT:
        errors.append(
            FieldError(
                "lines", "amount_out_of_range", f"the order exceeds {MAX_ORDER_AMOUNT} minor units."
            )
        )
    if not errors and sum(p.gross.amount - p.discount.amount for p in priced) <= 0:
        errors.append(
            FieldError(
                "lines",
                "total_not_positive",
                "the order's total must be above zero: an order is paid only by a payment.",
            )
        )
    if errors:
        raise ValidationFailed(errors)
    return priced


async def _check_member(
    session: AsyncSession, merchant_id: uuid.UUID, member_id: uuid.UUID | None
) -> Member | None:
    if member_id is None:
        return None
    known = await session.get(Member, (merchant_id, member_id))
    if known is None:
        # Refused rather than kept: the points of an order for a member nobody knows would be
        # lost without a word. A member created a moment ago may not have reached us yet,
        # hence transient: the till's retry runs again instead of replaying this answer.
        raise _transient(
            ValidationFailed(
                [FieldError("member_id", "unknown_member", "No such member.")],
                "No such member for this merchant.",
                code="unknown_member",
            )
        )
    return known


def _check_occurred_at(body: OrderCreate, now: datetime) -> None:
    if body.occurred_at > now + CLOCK_SKEW:
        raise ValidationFailed(
            [
                FieldError(
                    "occurred_at",
                    "occurred_in_future",
                    "is more than five minutes ahead of the server's clock.",
                )
            ],
            "The order is dated in the future.",
            code="occurred_in_future",
        )


@dataclass
class _Promoted:
    """The engine's result for a request, what to store to price it again, and the coupons
    it named that the replica does not know or knows only as voided."""

    result: engine.Result
    inputs: dict[str, Any]
    unknown_coupons: list[uuid.UUID]
    voided_coupons: list[uuid.UUID]


#: Reasons a coupon is refused that come from its redemption state, not from the order.
_HELD_REASONS = frozenset({"coupon_unavailable", "coupon_used", "coupon_voided"})


async def _promote(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    body: OrderCreate,
    store: Store | None,
    member: Member | None,
    priced: list[_Priced],
) -> _Promoted:
    """Run the pricing engine over the priced lines with the store's promotions and the
    named coupons; each line's discount becomes what the engine gave it."""
    currency = priced[0].unit_price.currency
    context = engine.Context(
        currency=currency,
        store_id=body.store_id,
        local_time=body.occurred_at.astimezone(store_zone(store)).replace(tzinfo=None),
        moment=body.occurred_at,
        member_id=body.member_id,
        member_level=member.level if member is not None else None,
    )
    inputs = [
        pricing.PricedInput(
            engine.LineInput(
                product_id=p.product.product_id,
                category_id=p.product.category_id,
                quantity=p.line.quantity,
                unit_price=p.unit_price.amount,
                manual_discount=p.discount.amount,
                manual=p.overridden or p.line.discount is not None,
            ),
            p.price_source,
            p.price_version,
        )
        for p in priced
    ]
    running = await promotions.current_for_store(session, merchant_id, body.store_id)
    coupon_ids = body.coupon_ids or []
    loaded = await coupons.load_inputs(session, merchant_id, coupon_ids)
    result = engine.price([i.line for i in inputs], running, loaded.inputs, context)
    for item, line in zip(priced, result.lines, strict=True):
        item.discount = Money.of(line.discount, currency)
        item.adjustments = [
            AdjustmentOut(
                source=a.source,
                id=a.id,
                version_id=a.version_id,
                name=a.name,
                amount=Money.of(a.amount, currency),
            ).model_dump(mode="json")
            for a in line.adjustments
        ]
    if result.total <= 0:
        raise ValidationFailed(
            [
                FieldError(
                    "lines",
                    "total_not_positive",
                    "the order's total after discounts must be above zero.",
                )
            ]
        )
    return _Promoted(
        result,
        pricing.inputs_json(inputs, context, running, coupon_ids),
        loaded.unknown,
        loaded.voided,
    )


def _refuse_coupons(promoted: _Promoted, coupon_ids: list[uuid.UUID]) -> None:
    """Placing an order redeems every coupon it names or none: unknown, held elsewhere, used
    and inapplicable coupons are refused with the reason."""
    position = {coupon_id: i for i, coupon_id in enumerate(coupon_ids)}
    if promoted.unknown_coupons:
        # Issued a moment ago, perhaps: the retry runs again instead of replaying this.
        raise _transient(
            ValidationFailed(
                [
                    FieldError(f"coupon_ids[{position[c]}]", "coupon_not_found", "No such coupon.")
                    for c in promoted.unknown_coupons
                ],
                "No such coupon for this merchant.",
                code="coupon_not_found",
            )
        )
    rejected = [(c, "coupon_voided") for c in promoted.voided_coupons] + [
        (r.id, r.reason) for r in promoted.result.rejected_coupons
    ]
    held = [(c, reason) for c, reason in rejected if reason in _HELD_REASONS]
    if held:
        raise Conflict(
            "A coupon is held by another order, used or withdrawn.",
            code="coupon_unavailable",
            coupons=[{"coupon_id": str(c), "reason": reason} for c, reason in held],
        )
    if rejected:
        raise ValidationFailed(
            [
                FieldError(f"coupon_ids[{position[c]}]", reason, "The coupon does not apply.")
                for c, reason in rejected
            ],
            "A coupon does not apply to this order.",
            code="coupon_not_applicable",
        )


async def _prepare(
    session: AsyncSession, principal: Principal, body: OrderCreate, now: datetime
) -> tuple[Store | None, list[_Priced], _Promoted]:
    """What quoting and placing share: the checks, the catalog's prices and the engine."""
    adjusted = any(line.discount is not None or line.unit_price is not None for line in body.lines)
    if adjusted and not principal.has(DISCOUNT_SCOPE):
        raise Forbidden(
            "Discounts and price overrides require the 'orders:discount' permission.",
            missing_permission=DISCOUNT_SCOPE,
        )
    _check_occurred_at(body, now)
    store = await ensure_store_writable(
        session, principal.merchant_id, body.store_id, must_be_known=True
    )
    member = await _check_member(session, principal.merchant_id, body.member_id)
    priced = await _price_lines(session, principal.merchant_id, body)
    promoted = await _promote(session, principal.merchant_id, body, store, member, priced)
    return store, priced, promoted


async def quote(session: AsyncSession, principal: Principal, body: OrderCreate) -> QuoteOut:
    """What the order would cost, without writing anything. Coupons that would be refused
    when placing are listed with the reason (``coupon_not_found`` among them)."""
    require_store_access(principal, body.store_id)
    _, priced, promoted = await _prepare(session, principal, body, datetime.now(UTC))
    result = promoted.result
    currency = result.currency

    def money(amount: int) -> Money:
        return Money.of(amount, currency)

    taxes = [line_tax((p.gross - p.discount).amount, p.product.tax_rate_bps) for p in priced]
    return QuoteOut(
        store_id=body.store_id,
        member_id=body.member_id,
        subtotal=money(result.subtotal),
        discount_total=money(result.discount_total),
        total=money(result.total),
        tax_total=money(sum(taxes)),
        lines=[
            QuoteLineOut(
                product_id=p.product.product_id,
                name=p.product.name,
                quantity=p.line.quantity,
                unit_price=p.unit_price,
                subtotal=p.gross,
                discount=p.discount,
                total=p.gross - p.discount,
                tax=money(tax),
                adjustments=[AdjustmentOut.model_validate(a) for a in p.adjustments],
            )
            for p, tax in zip(priced, taxes, strict=True)
        ],
        promotions=[
            AppliedPromotionOut(
                promotion_id=a.promotion_id,
                version_id=a.version_id,
                name=a.name,
                kind=a.kind,
                amount=money(a.amount),
            )
            for a in result.promotions
        ],
        rejected_promotions=[
            RejectedPromotionOut(
                promotion_id=r.id, version_id=r.version_id or r.id, name=r.name, reason=r.reason
            )
            for r in result.rejected_promotions
            if r.reason != "other_store"
        ],
        coupons=[
            AppliedCouponOut(coupon_id=c, amount=money(amount))
            for c, amount in result.coupons.items()
        ],
        rejected_coupons=[
            RejectedCouponOut(coupon_id=c, reason="coupon_not_found")
            for c in promoted.unknown_coupons
        ]
        + [RejectedCouponOut(coupon_id=c, reason="coupon_voided") for c in promoted.voided_coupons]
        + [RejectedCouponOut(coupon_id=r.id, reason=r.reason) for r in result.rejected_coupons],
    )


async def place_order(
    session: AsyncSession, principal: Principal, body: OrderCreate
) -> tuple[OrderOut, bool]:
    """Place the order; ``(order, False)`` when this exact order was placed before."""
    require_store_access(principal, body.store_id)
    digest = request_hash(body)
    await lock_order_key(session, principal.merchant_id, body.id)
    existing = await load(session, principal.merchant_id, body.id)
    if existing is not None:
        return await _existing(session, principal, existing, digest), False
    now = datetime.now(UTC)
    store, priced, promoted = await _prepare(session, principal, body, now)
    _refuse_coupons(promoted, body.coupon_ids or [])
    shift = await shift_for_order(
        session,
        principal.merchant_id,
        body.store_id,
        till_id=body.till_id,
        shift_id=body.shift_id,
        occurred_at=None,
    )
    currency = priced[0].unit_price.currency
    subtotal = Money.total((p.gross for p in priced), currency)
    discount_total = Money.total((p.discount for p in priced), currency)
    taxes = [line_tax((p.gross - p.discount).amount, p.product.tax_rate_bps) for p in priced]
    day = business_day(body.occurred_at, store_zone(store))
    sequence = await take_numbers(session, principal.merchant_id, body.store_id, day)
    number = format_number(store_code(store, body.store_id), day, sequence)
    inserted = await session.scalars(
        pg.insert(Order)
        .values(
            merchant_id=principal.merchant_id,
            id=body.id,
            store_id=body.store_id,
            channel=body.channel,
            member_id=body.member_id,
            table_label=body.table,
            people_count=body.people_count,
            status="placed",
            currency=currency,
            subtotal=subtotal.amount,
            discount_total=discount_total.amount,
            total=(subtotal - discount_total).amount,
            paid_total=0,
            refunded_total=0,
            request_hash=digest,
            occurred_at=body.occurred_at,
            placed_at=now,
            version=1,
            number=number,
            business_day=day,
            till_id=body.till_id or (shift.till_id if shift is not None else None),
            shift_id=shift.id if shift is not None else None,
            cashier_id=principal.subject,
            source="online",
            tax_total=sum(taxes),
            pricing=promoted.inputs,
        )
        .on_conflict_do_nothing(index_elements=[Order.merchant_id, Order.id])
        # The row as inserted, server defaults included, becomes the session's Order: no
        # second read. The order key's lock keeps others off it until commit.
        .returning(Order),
        execution_options={"populate_existing": True},
    )
    order = inserted.one_or_none()
    if order is None:
        # Cannot happen under the order key's lock; kept as a guard should that ever change.
        raced = await load(session, principal.merchant_id, body.id)
        assert raced is not None
        return await _existing(session, principal, raced, digest), False
    lines = [
        OrderLine(
            id=new_id(),
            merchant_id=order.merchant_id,
            order_id=order.id,
            position=i,
            product_id=p.product.product_id,
            name=p.product.name,
            quantity=p.line.quantity,
            unit_price=p.unit_price.amount,
            discount=p.discount.amount,
            total=(p.gross - p.discount).amount,
            price_overridden=p.overridden,
            kitchen_station=p.product.kitchen_station,
            notes=p.line.notes,
            modifiers=list(p.line.modifiers),
            tax_rate_bps=p.product.tax_rate_bps,
            tax=tax,
            catalog_unit_price=None,
            price_mismatch=False,
            adjustments=p.adjustments,
            unit_cost=current_cost(p.product, currency),
        )
        for i, (p, tax) in enumerate(zip(priced, taxes, strict=True))
    ]
    session.add_all(lines)
    await session.flush()
    if promoted.result.coupons:
        # The engine applies a coupon only to an order of the member holding it.
        assert body.member_id is not None
        for coupon_id, amount in promoted.result.coupons.items():
            await coupons.reserve(session, order, coupon_id, body.member_id, amount)
    payload_lines = [_line_payload(order, line) for line in lines]
    await _emit(
        session,
        order,
        OrderPlaced(
            order_id=order.id,
            store_id=order.store_id,
            channel=body.channel,
            member_id=order.member_id,
            table=order.table_label,
            lines=payload_lines,
            subtotal=subtotal,
            discount_total=discount_total,
            total=_money(order, order.total),
            placed_at=now,
            number=order.number,
            business_day=order.business_day,
            tax_total=_money(order, order.tax_total),
            source="online",
            till_id=order.till_id,
            shift_id=order.shift_id,
        ),
    )
    if order.channel in KITCHEN_CHANNELS:
        await _kitchen_tickets(session, order, lines)
    # Payments taken offline may have reached us before the order did.
    settled = await settle(session, order)
    # Built from what this transaction wrote and read: the lines are these, the tenders are
    # those settle counted, and refunds are read only when settle saw any.
    refunds = await _refunds(session, order) if settled.refunds else []
    return _order_out(order, lines, settled.tenders, refunds), True


async def _existing(
    session: AsyncSession, principal: Principal, order: Order, digest: str
) -> OrderOut:
    if not principal.can_see_store(order.store_id) or order.request_hash != digest:
        raise Conflict(
            "An order with this id already exists with different contents.",
            code="order_id_conflict",
        )
    return await order_out(session, order)


def _line_payload(order: Order, line: OrderLine) -> LinePayload:
    return LinePayload(
        line_id=line.id,
        product_id=line.product_id,
        name=line.name,
        quantity=line.quantity,
        unit_price=_money(order, line.unit_price),
        discount=_money(order, line.discount),
        total=_money(order, line.total),
        kitchen_station=line.kitchen_station,
        notes=line.notes,
        modifiers=list(line.modifiers),
        tax_rate_bps=line.tax_rate_bps,
        tax=_money(order, line.tax),
    )


async def _kitchen_tickets(session: AsyncSession, order: Order, lines: list[OrderLine]) -> None:
    """One ticket per station, lines in order-entry order."""
    by_station: dict[str, list[OrderLine]] = defaultdict(list)
    for line in lines:
        if line.kitchen_station:
            by_station[line.kitchen_station].append(line)
    for station, station_lines in by_station.items():
        ticket_id = new_id()
        await _emit(
            session,
            order,
            KitchenTicketCreated(
                ticket_id=ticket_id,
                order_id=order.id,
                store_id=order.store_id,
                station=station,
                table=order.table_label,
                lines=[
                    TicketLine(
                        name=line.name,
                        quantity=line.quantity,
                        notes=line.notes,
                        modifiers=list(line.modifiers),
                    )
                    for line in station_lines
                ],
            ),
            aggregate_id=ticket_id,
        )


# --- state changes from the API ------------------------------------------------------------------


async def cancel(
    session: AsyncSession, principal: Principal, order_id: uuid.UUID, reason: str | None
) -> OrderOut:
    order = await get_visible(session, principal, order_id, for_update=True)
    await ensure_store_writable(session, order.merchant_id, order.store_id)
    held = order.paid_total - order.refunded_total
    if held > 0 and order.status != "cancelled":
        # Cancelling would keep the customer's money against an order that sells nothing.
        raise IllegalState(
            "order_has_payments",
            "The order holds payments: refund them before cancelling it.",
            paid_total=_money(order, order.paid_total),
            refunded_total=_money(order, order.refunded_total),
        )
    transition(order, "cancelled")
    order.cancelled_at = datetime.now(UTC)
    order.cancel_reason = reason
    await coupons.release_for_order(session, order, "cancelled")
    await _emit(
        session,
        order,
        OrderCancelled(order_id=order.id, store_id=order.store_id, reason=reason),
    )
    return await order_out(session, order)


async def complete(session: AsyncSession, principal: Principal, order_id: uuid.UUID) -> OrderOut:
    order = await get_visible(session, principal, order_id, for_update=True)
    await ensure_store_writable(session, order.merchant_id, order.store_id)
    transition(order, "completed")
    order.completed_at = datetime.now(UTC)
    return await order_out(session, order)


# --- payments ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settled:
    """What :func:`settle` read: the order's tenders and how many refunds it has."""

    tenders: list[Tender]
    refunds: int


async def settle(
    session: AsyncSession,
    order: Order,
    *,
    causation_id: uuid.UUID | None = None,
    correlation_id: uuid.UUID | None = None,
) -> Settled:
    """Bring ``paid_total`` and ``refunded_total`` up to date from the tenders and refunds; a
    placed order whose tenders cover its total becomes paid and announces it, then announces
    the refunds that arrived before it was paid. The caller holds the order's row lock.

    Tenders of a cancelled order (a capture after the cancel, refunded by payments) are
    counted and shown but never reopen or pay it."""
    tenders = await _tenders(session, order.merchant_id, order.id)
    if order.shift_id is not None and any(t.shift_id is None for t in tenders):
        # Tenders recorded before their order arrived: they belong in the order's shift.
        for tender in tenders:
            tender.shift_id = tender.shift_id or order.shift_id
    paid_total = sum(t.amount for t in tenders if t.currency == order.currency)
    refunded, unannounced, refund_count = (
        await session.execute(
            sa.select(
                sa.func.coalesce(
                    sa.func.sum(Refund.amount).filter(Refund.currency == order.currency), 0
                ),
                sa.func.count().filter(Refund.announced_at.is_(None)),
                sa.func.count(),
            ).where(
                Refund.merchant_id == order.merchant_id,
                Refund.order_id == order.id,
                refund_of_a_tender(),
            )
        )
    ).one()
    # Only a change is written: settling an order nothing was paid for yet (every placement)
    # costs no UPDATE.
    if order.paid_total != paid_total or order.refunded_total != int(refunded):
        order.paid_total = paid_total
        order.refunded_total = int(refunded)
        order.updated_at = datetime.now(UTC)
    if order.status == "placed" and tenders and order.total > 0 and order.paid_total >= order.total:
        transition(order, "paid")
        order.paid_at = datetime.now(UTC)
        lines = await _lines(session, order)
        await _emit(
            session,
            order,
            OrderPaid(
                order_id=order.id,
                store_id=order.store_id,
                channel=order.channel,
                member_id=order.member_id,
                lines=[_line_payload(order, line) for line in lines],
                subtotal=_money(order, order.subtotal),
                discount_total=_money(order, order.discount_total),
                total=_money(order, order.total),
                tenders=[
                    TenderPayload(
                        payment_id=t.payment_id,
                        method=t.method,
                        amount=Money.of(t.amount, t.currency),
                    )
                    for t in tenders
                ],
                occurred_at=order.occurred_at,
                paid_at=order.paid_at,
                number=order.number,
                business_day=order.business_day,
                tax_total=_money(order, order.tax_total),
            ),
            causation_id=causation_id,
            correlation_id=correlation_id,
        )
        await coupons.redeem_for_order(session, order)
    if unannounced:
        await announce_refunds(
            session, order, causation_id=causation_id, correlation_id=correlation_id
        )
    return Settled(tenders, int(refund_count))


_RETURNED_SO_FAR = sa.text(
    """
    SELECT e.value->>'product_id', sum((e.value->>'quantity')::numeric)
    FROM order_refunds r, jsonb_array_elements(r.returned_lines) e
    WHERE r.merchant_id = :merchant_id AND r.order_id = :order_id
      AND r.announced_at IS NOT NULL
    GROUP BY 1
    """
)


async def _returned_so_far(session: AsyncSession, order: Order) -> dict[uuid.UUID, int]:
    rows = await session.execute(
        _RETURNED_SO_FAR, {"merchant_id": order.merchant_id, "order_id": order.id}
    )
    return {uuid.UUID(product): int(quantity) for product, quantity in rows.all()}


async def _sold(session: AsyncSession, order: Order) -> dict[uuid.UUID, int]:
    rows = await session.execute(
        sa.select(OrderLine.product_id, sa.func.sum(OrderLine.quantity))
        .where(OrderLine.merchant_id == order.merchant_id, OrderLine.order_id == order.id)
        .group_by(OrderLine.product_id)
    )
    return {product: int(quantity) for product, quantity in rows.all()}


def accept_returned_lines(
    requested: list[dict[str, Any]], sold: dict[uuid.UUID, int], returned: dict[uuid.UUID, int]
) -> list[dict[str, Any]]:
    """The goods orders takes back: only products on the order, at most sold minus already
    returned (``returned`` is updated). Requested lines of one product are added up first."""
    wanted: dict[uuid.UUID, int] = {}
    for line in requested:
        product = uuid.UUID(str(line["product_id"]))
        wanted[product] = wanted.get(product, 0) + int(line["quantity"])
    accepted: list[dict[str, Any]] = []
    for product, quantity in wanted.items():
        room = sold.get(product, 0) - returned.get(product, 0)
        take = min(quantity, room)
        if take > 0:
            returned[product] = returned.get(product, 0) + take
            accepted.append({"product_id": str(product), "quantity": take})
    return accepted


async def announce_refunds(
    session: AsyncSession,
    order: Order,
    *,
    causation_id: uuid.UUID | None = None,
    correlation_id: uuid.UUID | None = None,
) -> None:
    """Announce, oldest first, the refunds recorded but not yet announced for a paid order
    (row-locked by the caller), each with only the returned lines orders accepts: inventory
    restocks from ``orders.order.refunded`` and must never restock what was not sold. A
    refund of an order that was never paid (cancelled, or not yet paid) waits unannounced."""
    if order.status not in PAID_STATES:
        return
    pending = list(
        (
            await session.execute(
                sa.select(Refund)
                .where(
                    Refund.merchant_id == order.merchant_id,
                    Refund.order_id == order.id,
                    Refund.announced_at.is_(None),
                    refund_of_a_tender(),
                )
                .order_by(Refund.recorded_at, Refund.refund_id)
            )
        ).scalars()
    )
    if not pending:
        return
    wants_goods = any(refund.requested_returned_lines for refund in pending)
    sold = await _sold(session, order) if wants_goods else {}
    returned = await _returned_so_far(session, order) if wants_goods else {}
    announced_total = order.refunded_total - sum(
        r.amount for r in pending if r.currency == order.currency
    )
    now = datetime.now(UTC)
    for refund in pending:
        refund.returned_lines = accept_returned_lines(
            refund.requested_returned_lines, sold, returned
        )
        refund.announced_at = now
        if refund.currency == order.currency:
            announced_total += refund.amount
        fully = announced_total >= order.paid_total
        target = "refunded" if fully else "partially_refunded"
        if order.status != "refunded":
            transition(order, target)
            if target == "refunded":
                await coupons.release_for_order(session, order, "refunded")
        await _emit(
            session,
            order,
            OrderRefunded(
                order_id=order.id,
                store_id=order.store_id,
                member_id=order.member_id,
                refund_id=refund.refund_id,
                payment_id=refund.payment_id,
                amount=Money.of(refund.amount, refund.currency),
                refunded_total=_money(order, announced_total),
                order_total=_money(order, order.total),
                returned_lines=[ReturnedLine.model_validate(x) for x in refund.returned_lines],
                fully_refunded=fully,
            ),
            causation_id=causation_id,
            correlation_id=correlation_id,
        )


def returned_lines_json(lines: list[ReturnedLine]) -> list[dict[str, Any]]:
    return [line.model_dump(mode="json") for line in lines]
