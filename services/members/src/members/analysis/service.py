"""Visit facts and the figures built on them.

A *visit* is a paid order of a member (``orders.order.paid``), kept as a compact fact: member,
store, business day, paid time, total and the products with their quantities. Refunds
(``orders.order.refunded``) lower its net spend (total minus the largest refunded total seen);
a fully refunded order is no visit at all. Both handlers are upserts whose result does not
depend on the order the events arrive in, nor on how often.

Figures of a period (business days, one currency, the caller's stores or one of them):

* ``members``: members with at least one visit; ``visits``: their visits;
* ``visits_per_member``: visits / members, two decimals (half up);
* ``spend``: net spend; ``average_ticket``: spend / visits, rounded half up to the minor unit;
* ``repurchase_rate``: the share of members with two visits or more, four decimals (half up);
* ``new`` / ``returning``: members whose first visit ever (in the same stores) is inside the
  period, and the others, each with their visits and spend;
* ``favourite_products``: products by quantity bought, then by visits, then by id.

A paid order without ``business_day`` (older tills) counts on the UTC date of its
``occurred_at``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.orders import OrderPaid, OrderRefunded
from contracts.money import CURRENCY_EXPONENTS, Money
from members.analysis.rfm import DEFAULT_CUTS, Rfm, RfmCuts, rfm_segment
from members.models import MemberVisit
from servicekit.auth import Principal, require_store_access
from servicekit.errors import FieldError, ValidationFailed

MAX_DAYS = 366
FAVOURITES = 10


# --- facts ---------------------------------------------------------------------------------


async def record_paid_order(session: AsyncSession, envelope: EventEnvelope) -> None:
    paid = OrderPaid.model_validate(envelope.payload)
    if paid.member_id is None or envelope.merchant_id is None:
        return
    paid_at = paid.paid_at if paid.paid_at.tzinfo else paid.paid_at.replace(tzinfo=UTC)
    values: dict[str, Any] = {
        "member_id": paid.member_id,
        "store_id": paid.store_id,
        "business_day": paid.business_day or paid.occurred_at.astimezone(UTC).date(),
        "paid_at": paid_at,
        "total": paid.total.amount,
        "currency": paid.total.currency,
        "lines": [
            {"product_id": str(line.product_id), "quantity": line.quantity} for line in paid.lines
        ],
    }
    stmt = pg_insert(MemberVisit).values(
        merchant_id=envelope.merchant_id, order_id=paid.order_id, **values
    )
    # A refund seen first left a row without the payment: complete it. A row already paid
    # stays as it is (a replay carries the same order).
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[MemberVisit.merchant_id, MemberVisit.order_id],
            set_={**{name: stmt.excluded[name] for name in values}, "updated_at": sa.func.now()},
            where=MemberVisit.paid_at.is_(None),
        )
    )


async def record_refund(session: AsyncSession, envelope: EventEnvelope) -> None:
    refund = OrderRefunded.model_validate(envelope.payload)
    if refund.member_id is None or envelope.merchant_id is None:
        return
    stmt = pg_insert(MemberVisit).values(
        merchant_id=envelope.merchant_id,
        order_id=refund.order_id,
        member_id=refund.member_id,
        store_id=refund.store_id,
        total=refund.order_total.amount,
        currency=refund.order_total.currency,
        lines=[],
        refunded_total=refund.refunded_total.amount,
        fully_refunded=refund.fully_refunded,
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[MemberVisit.merchant_id, MemberVisit.order_id],
            set_={
                "refunded_total": sa.func.greatest(
                    MemberVisit.refunded_total, stmt.excluded.refunded_total
                ),
                "fully_refunded": MemberVisit.fully_refunded | stmt.excluded.fully_refunded,
                "updated_at": sa.func.now(),
            },
        )
    )


# --- scope ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scope:
    """The visits a figure covers: one merchant, the stores the caller sees (or one of
    them), one currency."""

    merchant_id: uuid.UUID
    store_ids: frozenset[uuid.UUID] | None
    currency: str

    @classmethod
    def of(cls, principal: Principal, store_id: uuid.UUID | None, currency: str) -> Scope:
        if currency not in CURRENCY_EXPONENTS:
            raise ValidationFailed(
                [FieldError("currency", "unknown_currency", "Not a supported currency.")],
                code="unknown_currency",
            )
        stores = principal.store_ids
        if store_id is not None:
            require_store_access(principal, store_id)
            stores = frozenset({store_id})
        return cls(principal.merchant_id, stores, currency)

    def visits(self) -> list[sa.ColumnElement[bool]]:
        """Every visit of the scope, any day: paid, not fully refunded."""
        conditions: list[sa.ColumnElement[bool]] = [
            MemberVisit.merchant_id == self.merchant_id,
            MemberVisit.paid_at.is_not(None),
            MemberVisit.fully_refunded.is_(False),
            MemberVisit.currency == self.currency,
        ]
        if self.store_ids is not None:
            conditions.append(MemberVisit.store_id.in_(sorted(self.store_ids)))
        return conditions

    def money(self, amount: Any) -> Money:
        return Money.of(int(amount or 0), self.currency)


def check_day_range(day_from: date, day_to: date) -> None:
    """422 ``invalid_range`` for a range that ends before it starts or spans over a year."""
    if day_to < day_from or (day_to - day_from).days >= MAX_DAYS:
        raise ValidationFailed(
            [
                FieldError(
                    "business_day_to",
                    "invalid_range",
                    f"from business_day_from, at most {MAX_DAYS} days.",
                )
            ],
            f"A range covers 1 to {MAX_DAYS} business days.",
            code="invalid_range",
        )


NET = MemberVisit.total - sa.func.least(MemberVisit.refunded_total, MemberVisit.total)


def _in_period(day_from: date, day_to: date) -> list[sa.ColumnElement[bool]]:
    return [MemberVisit.business_day >= day_from, MemberVisit.business_day <= day_to]


def ratio(numerator: int, denominator: int, places: int) -> Decimal:
    """``numerator / denominator`` rounded half up to ``places`` decimals; 0 for nothing."""
    quantum = Decimal(1).scaleb(-places)
    if denominator == 0:
        return Decimal(0).quantize(quantum)
    return (Decimal(numerator) / Decimal(denominator)).quantize(quantum, rounding=ROUND_HALF_UP)


def average(total: int, count: int) -> int:
    """``total / count`` rounded half up (a non-negative total)."""
    if count == 0:
        return 0
    return (2 * total + count) // (2 * count)


@dataclass(frozen=True, slots=True)
class Group:
    members: int
    visits: int
    spend: int


@dataclass(frozen=True, slots=True)
class Favourite:
    product_id: uuid.UUID
    quantity: int
    visits: int


@dataclass(frozen=True, slots=True)
class Figures:
    everyone: Group
    repeat_members: int
    new: Group
    returning: Group
    favourites: list[Favourite]


async def favourite_products(
    session: AsyncSession, conditions: Sequence[sa.ColumnElement[bool]], limit: int = FAVOURITES
) -> list[Favourite]:
    line = sa.func.jsonb_array_elements(MemberVisit.lines).table_valued("value").lateral("line")
    product = line.c.value.op("->>")("product_id")
    quantity = sa.func.sum(sa.cast(line.c.value.op("->>")("quantity"), sa.BigInteger))
    visits = sa.func.count(sa.distinct(MemberVisit.order_id))
    rows = await session.execute(
        sa.select(product.label("product_id"), quantity.label("quantity"), visits.label("visits"))
        .select_from(MemberVisit)
        .join(line, sa.true())
        .where(*conditions)
        .group_by(product)
        .order_by(quantity.desc(), visits.desc(), product)
        .limit(limit)
    )
    return [Favourite(uuid.UUID(r.product_id), int(r.quantity), int(r.visits)) for r in rows]


async def figures(
    session: AsyncSession,
    scope: Scope,
    day_from: date,
    day_to: date,
    member_id: uuid.UUID | None = None,
) -> Figures:
    check_day_range(day_from, day_to)
    conditions = scope.visits()
    if member_id is not None:
        conditions.append(MemberVisit.member_id == member_id)
    period = (
        sa.select(
            MemberVisit.member_id,
            sa.func.count().label("visits"),
            sa.func.sum(NET).label("spend"),
        )
        .where(*conditions, *_in_period(day_from, day_to))
        .group_by(MemberVisit.member_id)
        .cte("period")
    )
    first = (
        sa.select(MemberVisit.member_id, sa.func.min(MemberVisit.business_day).label("first_day"))
        .where(*conditions, MemberVisit.member_id.in_(sa.select(period.c.member_id)))
        .group_by(MemberVisit.member_id)
        .cte("first")
    )
    is_new = first.c.first_day >= day_from

    def group(where: sa.ColumnElement[bool] | None) -> list[Any]:
        def f(expr: Any) -> Any:
            return expr if where is None else expr.filter(where)

        return [
            f(sa.func.count()),
            sa.func.coalesce(f(sa.func.sum(period.c.visits)), 0),
            sa.func.coalesce(f(sa.func.sum(period.c.spend)), 0),
        ]

    row = (
        await session.execute(
            sa.select(
                *group(None),
                sa.func.count().filter(period.c.visits >= 2),
                *group(is_new),
                *group(sa.not_(is_new)),
            ).select_from(period.join(first, first.c.member_id == period.c.member_id))
        )
    ).one()
    values = [int(v or 0) for v in row]
    return Figures(
        everyone=Group(*values[0:3]),
        repeat_members=values[3],
        new=Group(*values[4:7]),
        returning=Group(*values[7:10]),
        favourites=await favourite_products(session, [*conditions, *_in_period(day_from, day_to)]),
    )


@dataclass(frozen=True, slots=True)
class MemberHistory:
    first_day: date | None
    last_day: date | None


async def member_history(
    session: AsyncSession, scope: Scope, member_id: uuid.UUID
) -> MemberHistory:
    row = (
        await session.execute(
            sa.select(
                sa.func.min(MemberVisit.business_day), sa.func.max(MemberVisit.business_day)
            ).where(*scope.visits(), MemberVisit.member_id == member_id)
        )
    ).one()
    return MemberHistory(row[0], row[1])


# --- RFM -----------------------------------------------------------------------------------


async def rfm_by_member(
    session: AsyncSession,
    scope: Scope,
    as_of: date,
    *,
    member_ids: Sequence[uuid.UUID] | None = None,
    cuts: RfmCuts = DEFAULT_CUTS,
) -> dict[uuid.UUID, Rfm]:
    """The RFM of members as of the end of ``as_of``, from their visits in ``scope``: every
    member with a visit on or before ``as_of``, or exactly ``member_ids`` (a member without
    one scores 1-1-1). A tag rule calls this with the members it evaluates."""
    window_start = as_of - timedelta(days=cuts.window_days - 1)
    in_window = MemberVisit.business_day >= window_start
    stmt = (
        sa.select(
            MemberVisit.member_id,
            sa.func.max(MemberVisit.business_day).label("last_day"),
            sa.func.count().filter(in_window).label("frequency"),
            sa.func.coalesce(sa.func.sum(NET).filter(in_window), 0).label("monetary"),
        )
        .where(*scope.visits(), MemberVisit.business_day <= as_of)
        .group_by(MemberVisit.member_id)
    )
    if member_ids is not None:
        stmt = stmt.where(MemberVisit.member_id.in_(list(member_ids)))
    found = {
        r.member_id: rfm_segment((as_of - r.last_day).days, int(r.frequency), int(r.monetary), cuts)
        for r in await session.execute(stmt)
    }
    if member_ids is not None:
        for member_id in member_ids:
            found.setdefault(member_id, rfm_segment(None, 0, 0, cuts))
    return found


async def member_rfm(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    member_id: uuid.UUID,
    as_of: date,
    *,
    currency: str = "CNY",
    cuts: RfmCuts = DEFAULT_CUTS,
) -> Rfm:
    """One member's RFM over all the merchant's stores, for code acting without a caller
    (a rule-based tag evaluated on an event)."""
    scope = Scope(merchant_id, None, currency)
    return (await rfm_by_member(session, scope, as_of, member_ids=[member_id], cuts=cuts))[
        member_id
    ]
