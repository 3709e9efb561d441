"""The sales report: for a range of business days (in each store's timezone) and the stores
the caller may see, what the orders sold, how they were paid and refunded, by hour, channel,
product, cashier and shift, and which orders arrived late.

Sales are orders that took their money (paid, completed, partially or fully refunded).
Tenders and refunds count in the business day of their order, whatever day the money moved:
payments attributes them the same way, so ``by_method`` matches its daily figures to the fen.
"""

from __future__ import annotations

import calendar
import uuid
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.money import CURRENCY_EXPONENTS, Money
from orders.models import Order, OrderLine, Refund, Shift, Store, Tender, refund_of_a_tender
from orders.numbering.service import DEFAULT_TIMEZONE
from orders.reports.filters import check_day_range
from orders.reports.schemas import (
    CashierLine,
    ChannelLine,
    HourLine,
    LateArrival,
    Margin,
    MethodLine,
    ProductLine,
    SalesReport,
    Summary,
    TaxLine,
    TaxMonth,
    TaxMonthLine,
)
from orders.shifts import service as shifts
from servicekit.auth import Principal, require_store_access
from servicekit.errors import FieldError, ValidationFailed

#: Orders that took their money: what a report counts as sales.
SALE_STATES = ("paid", "completed", "partially_refunded", "refunded")
TOP_PRODUCTS = 10
MAX_SHIFTS = 200
MAX_LATE_LISTED = 100
#: Costs are a catalog manager's figures, in reports as in the catalog.
SEES_COST = "catalog:manage"

_KNOWN_COST = OrderLine.unit_cost.is_not(None)


def _margin_columns() -> tuple[Any, ...]:
    """Known-cost lines, their revenue and cost, unknown-cost quantity and revenue."""
    return (
        sa.func.count().filter(_KNOWN_COST),
        sa.func.coalesce(sa.func.sum(OrderLine.total).filter(_KNOWN_COST), 0),
        sa.func.coalesce(sa.func.sum(OrderLine.unit_cost * OrderLine.quantity), 0),
        sa.func.coalesce(sa.func.sum(OrderLine.quantity).filter(~_KNOWN_COST), 0),
        sa.func.coalesce(sa.func.sum(OrderLine.total).filter(~_KNOWN_COST), 0),
    )


def _margin(
    scope: Scope,
    known_lines: Any,
    known_revenue: Any,
    cost: Any,
    unknown_quantity: Any,
    unknown_revenue: Any,
) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "cost_unknown_quantity": int(unknown_quantity),
        "cost_unknown_revenue": scope.money(unknown_revenue),
    }
    known_revenue, cost = int(known_revenue), int(cost)
    if not scope.principal.has(SEES_COST) or not known_lines:
        return figures
    margin = known_revenue - cost
    bps = None
    if known_revenue:
        magnitude = (2 * abs(margin) * 10_000 + known_revenue) // (2 * known_revenue)
        bps = magnitude if margin >= 0 else -magnitude
    return {
        **figures,
        "cost": scope.money(cost),
        "margin": scope.money(margin),
        "margin_bps": bps,
    }


class Scope:
    """The orders a report covers: the caller's merchant and stores, one store or all, a
    range of business days, one currency."""

    def __init__(
        self,
        principal: Principal,
        *,
        day_from: date,
        day_to: date,
        store_id: uuid.UUID | None,
        currency: str,
    ) -> None:
        check_day_range(day_from, day_to)
        if currency not in CURRENCY_EXPONENTS:
            raise ValidationFailed(
                [FieldError("currency", "unknown_currency", "Not a supported currency.")],
                code="unknown_currency",
            )
        if store_id is not None:
            require_store_access(principal, store_id)
        self.principal = principal
        self.day_from = day_from
        self.day_to = day_to
        self.store_id = store_id
        self.currency = currency

    def orders(self) -> list[sa.ColumnElement[bool]]:
        """Conditions on ``Order`` for every order of the scope, sold or not."""
        conditions: list[sa.ColumnElement[bool]] = [
            Order.merchant_id == self.principal.merchant_id,
            Order.business_day >= self.day_from,
            Order.business_day <= self.day_to,
            Order.currency == self.currency,
        ]
        if self.store_id is not None:
            conditions.append(Order.store_id == self.store_id)
        if self.principal.store_ids is not None:
            conditions.append(Order.store_id.in_(sorted(self.principal.store_ids)))
        return conditions

    def sales(self) -> list[sa.ColumnElement[bool]]:
        return [*self.orders(), Order.status.in_(SALE_STATES)]

    def money(self, amount: Any) -> Money:
        return Money.of(int(amount or 0), self.currency)


def _lines_of(scope: Scope) -> sa.ColumnElement[bool]:
    return sa.and_(
        OrderLine.merchant_id == Order.merchant_id,
        OrderLine.order_id == Order.id,
    )


async def _tax_by_rate(session: AsyncSession, scope: Scope) -> list[TaxLine]:
    rows = await session.execute(
        sa.select(
            sa.func.coalesce(OrderLine.tax_rate_bps, 0).label("rate"),
            sa.func.sum(OrderLine.total),
            sa.func.sum(OrderLine.tax),
        )
        .select_from(OrderLine)
        .join(Order, _lines_of(scope))
        .where(*scope.sales())
        .group_by(sa.text("rate"))
        .order_by(sa.text("rate"))
    )
    return [
        TaxLine(
            rate_bps=int(rate),
            sales=scope.money(sales),
            tax=scope.money(tax),
            net_of_tax=scope.money(int(sales or 0) - int(tax or 0)),
        )
        for rate, sales, tax in rows.all()
    ]


async def _summary(session: AsyncSession, scope: Scope, taxes: list[TaxLine]) -> Summary:
    count, gross, discounts, net = (
        await session.execute(
            sa.select(
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(Order.subtotal), 0),
                sa.func.coalesce(sa.func.sum(Order.discount_total), 0),
                sa.func.coalesce(sa.func.sum(Order.total), 0),
            ).where(*scope.sales())
        )
    ).one()
    # Every late order of the range, sold or not yet paid: the list below shows the same.
    late = await session.scalar(
        sa.select(sa.func.count()).select_from(Order).where(*scope.orders(), Order.late)
    )
    refund_count, refunded = (
        await session.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(Refund.amount), 0))
            .join(
                Order,
                sa.and_(Refund.merchant_id == Order.merchant_id, Refund.order_id == Order.id),
            )
            .where(*scope.sales(), Refund.currency == scope.currency, refund_of_a_tender())
        )
    ).one()
    mismatches = await session.scalar(
        sa.select(sa.func.count())
        .select_from(OrderLine)
        .join(Order, _lines_of(scope))
        .where(*scope.sales(), OrderLine.price_mismatch)
    )
    margin = (
        await session.execute(
            sa.select(*_margin_columns())
            .select_from(OrderLine)
            .join(Order, _lines_of(scope))
            .where(*scope.sales())
        )
    ).one()
    count, net = int(count), int(net)
    return Summary(
        order_count=count,
        gross=scope.money(gross),
        discounts=scope.money(discounts),
        net=scope.money(net),
        tax=Money.total((t.tax for t in taxes), scope.currency),
        tax_by_rate=taxes,
        refunds=scope.money(refunded),
        refund_count=int(refund_count),
        net_after_refunds=scope.money(net - int(refunded)),
        average_ticket=scope.money((2 * net + count) // (2 * count) if count else 0),
        late_arrivals=int(late or 0),
        price_mismatches=int(mismatches or 0),
        margin=Margin(**_margin(scope, *margin)),
    )


async def _by_method(session: AsyncSession, scope: Scope) -> list[MethodLine]:
    # Every order of the range, sold or not: a capture on a cancelled order is money that
    # moved (and went back), and the payments ledger counts it too.
    tenders = await session.execute(
        sa.select(Tender.method, sa.func.count(), sa.func.sum(Tender.amount))
        .join(Order, sa.and_(Tender.merchant_id == Order.merchant_id, Tender.order_id == Order.id))
        .where(*scope.orders(), Tender.currency == scope.currency)
        .group_by(Tender.method)
    )
    refunds = await session.execute(
        sa.select(Refund.method, sa.func.count(), sa.func.sum(Refund.amount))
        .join(Order, sa.and_(Refund.merchant_id == Order.merchant_id, Refund.order_id == Order.id))
        .where(*scope.orders(), Refund.currency == scope.currency, refund_of_a_tender())
        .group_by(Refund.method)
    )
    cells: dict[str, list[int]] = {}
    for method, count, amount in tenders.all():
        cells.setdefault(method, [0, 0, 0, 0])[0:2] = [int(count), int(amount)]
    for method, count, amount in refunds.all():
        cells.setdefault(method, [0, 0, 0, 0])[2:4] = [int(count), int(amount)]
    return [
        MethodLine(
            method=method,
            tender_count=tender_count,
            captured=scope.money(captured),
            refund_count=refund_count,
            refunded=scope.money(refunded),
            net=scope.money(captured - refunded),
        )
        for method, (tender_count, captured, refund_count, refunded) in sorted(cells.items())
    ]


async def _by_hour(session: AsyncSession, scope: Scope) -> list[HourLine]:
    local = sa.func.timezone(sa.func.coalesce(Store.timezone, DEFAULT_TIMEZONE), Order.occurred_at)
    hour = sa.cast(sa.func.extract("hour", local), sa.Integer).label("hour")
    rows = await session.execute(
        sa.select(hour, sa.func.count(), sa.func.sum(Order.total))
        .select_from(Order)
        .outerjoin(
            Store, sa.and_(Store.merchant_id == Order.merchant_id, Store.store_id == Order.store_id)
        )
        .where(*scope.sales())
        .group_by(hour)
        .order_by(hour)
    )
    return [
        HourLine(hour=int(h), order_count=int(count), net=scope.money(net))
        for h, count, net in rows.all()
    ]


async def _by_channel(session: AsyncSession, scope: Scope) -> list[ChannelLine]:
    rows = await session.execute(
        sa.select(
            Order.channel,
            sa.func.count(),
            sa.func.sum(Order.subtotal),
            sa.func.sum(Order.discount_total),
            sa.func.sum(Order.total),
        )
        .where(*scope.sales())
        .group_by(Order.channel)
        .order_by(Order.channel)
    )
    return [
        ChannelLine(
            channel=channel,
            order_count=int(count),
            gross=scope.money(gross),
            discounts=scope.money(discounts),
            net=scope.money(net),
        )
        for channel, count, gross, discounts, net in rows.all()
    ]


async def _top_products(session: AsyncSession, scope: Scope, by: str) -> list[ProductLine]:
    quantity = sa.func.sum(OrderLine.quantity).label("quantity")
    revenue = sa.func.sum(OrderLine.total).label("revenue")
    ranking = (quantity, revenue) if by == "quantity" else (revenue, quantity)
    rows = await session.execute(
        sa.select(
            OrderLine.product_id,
            # Names are captured per line: a renamed product shows its latest one.
            sa.func.array_agg(aggregate_order_by(OrderLine.name, Order.occurred_at.desc()))[1],
            quantity,
            revenue,
            sa.func.sum(OrderLine.tax),
            *_margin_columns(),
        )
        .select_from(OrderLine)
        .join(Order, _lines_of(scope))
        .where(*scope.sales())
        .group_by(OrderLine.product_id)
        .order_by(ranking[0].desc(), ranking[1].desc(), OrderLine.product_id)
        .limit(TOP_PRODUCTS)
    )
    return [
        ProductLine(
            product_id=product_id,
            name=name,
            quantity=int(qty),
            revenue=scope.money(rev),
            tax=scope.money(tax),
            **_margin(scope, *margin),
        )
        for product_id, name, qty, rev, tax, *margin in rows.all()
    ]


async def _by_cashier(session: AsyncSession, scope: Scope) -> list[CashierLine]:
    rows = await session.execute(
        sa.select(Order.cashier_id, sa.func.count(), sa.func.sum(Order.total))
        .where(*scope.sales())
        .group_by(Order.cashier_id)
        .order_by(sa.func.sum(Order.total).desc(), Order.cashier_id)
    )
    return [
        CashierLine(cashier_id=cashier, order_count=int(count), net=scope.money(net))
        for cashier, count, net in rows.all()
    ]


async def _shifts(session: AsyncSession, scope: Scope) -> tuple[list[Shift], bool]:
    conditions: list[sa.ColumnElement[bool]] = [
        Shift.merchant_id == scope.principal.merchant_id,
        Shift.business_day >= scope.day_from,
        Shift.business_day <= scope.day_to,
        Shift.currency == scope.currency,
    ]
    if scope.store_id is not None:
        conditions.append(Shift.store_id == scope.store_id)
    if scope.principal.store_ids is not None:
        conditions.append(Shift.store_id.in_(sorted(scope.principal.store_ids)))
    found = list(
        (
            await session.execute(
                sa.select(Shift)
                .where(*conditions)
                .order_by(Shift.opened_at, Shift.id)
                .limit(MAX_SHIFTS + 1)
            )
        ).scalars()
    )
    return found[:MAX_SHIFTS], len(found) > MAX_SHIFTS


async def _late(session: AsyncSession, scope: Scope) -> list[LateArrival]:
    rows = await session.execute(
        sa.select(Order)
        .where(*scope.orders(), Order.late)
        .order_by(Order.synced_at.desc().nulls_last(), Order.id)
        .limit(MAX_LATE_LISTED)
    )
    return [
        LateArrival(
            order_id=o.id,
            store_id=o.store_id,
            number=o.number,
            business_day=o.business_day,
            occurred_at=o.occurred_at,
            synced_at=o.synced_at,
        )
        for o in rows.scalars()
    ]


async def sales_report(
    session: AsyncSession,
    principal: Principal,
    *,
    day_from: date,
    day_to: date,
    store_id: uuid.UUID | None = None,
    currency: str = "CNY",
) -> SalesReport:
    scope = Scope(principal, day_from=day_from, day_to=day_to, store_id=store_id, currency=currency)
    taxes = await _tax_by_rate(session, scope)
    shift_rows, truncated = await _shifts(session, scope)
    return SalesReport(
        business_day_from=day_from,
        business_day_to=day_to,
        store_id=store_id,
        currency=currency,
        summary=await _summary(session, scope, taxes),
        by_method=await _by_method(session, scope),
        by_hour=await _by_hour(session, scope),
        by_channel=await _by_channel(session, scope),
        top_products_by_quantity=await _top_products(session, scope, "quantity"),
        top_products_by_revenue=await _top_products(session, scope, "revenue"),
        by_cashier=await _by_cashier(session, scope),
        # The shift's own report, so over/short reads the same here as at the till.
        by_shift=[await shifts.report(session, shift) for shift in shift_rows],
        by_shift_truncated=truncated,
        late_arrivals=await _late(session, scope),
        costs_shown=principal.has(SEES_COST),
    )


async def tax_month(
    session: AsyncSession,
    principal: Principal,
    *,
    year: int,
    month: int,
    store_id: uuid.UUID | None = None,
    currency: str = "CNY",
) -> TaxMonth:
    """The month's sales per tax rate, day by day and in total."""
    first = date(year, month, 1)
    scope = Scope(
        principal,
        day_from=first,
        day_to=date(year, month, calendar.monthrange(year, month)[1]),
        store_id=store_id,
        currency=currency,
    )
    rate = sa.func.coalesce(OrderLine.tax_rate_bps, 0).label("rate")
    rows = await session.execute(
        sa.select(
            Order.business_day, rate, sa.func.sum(OrderLine.total), sa.func.sum(OrderLine.tax)
        )
        .select_from(OrderLine)
        .join(Order, _lines_of(scope))
        .where(*scope.sales())
        .group_by(Order.business_day, rate)
        .order_by(Order.business_day, rate)
    )
    days = [
        TaxMonthLine(
            business_day=day,
            rate_bps=int(rate_bps),
            sales=scope.money(sales),
            tax=scope.money(tax),
            net_of_tax=scope.money(int(sales) - int(tax)),
        )
        for day, rate_bps, sales, tax in rows.all()
    ]
    totals: dict[int, list[int]] = {}
    for line in days:
        cell = totals.setdefault(line.rate_bps, [0, 0])
        cell[0] += line.sales.amount
        cell[1] += line.tax.amount
    return TaxMonth(
        month=f"{year:04d}-{month:02d}",
        store_id=store_id,
        currency=currency,
        days=days,
        totals=[
            TaxLine(
                rate_bps=rate_bps,
                sales=scope.money(sales),
                tax=scope.money(tax),
                net_of_tax=scope.money(sales - tax),
            )
            for rate_bps, (sales, tax) in sorted(totals.items())
        ],
    )
