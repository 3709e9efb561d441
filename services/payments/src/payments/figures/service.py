"""Daily figures from the payments ledger: for a range of business days (each payment and
refund counts in its order's business day, the one orders reports it in) and the stores the
caller may see, what each method captured, refunded, cost in fees and settled."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.money import Money
from payments.figures.filters import check_day_range, in_business_days
from payments.figures.schemas import CurrencyFigures, MethodFigures, PaymentFiguresOut
from payments.models import Payment, Refund
from servicekit.auth import Principal, require_store_access, scoped

#: Payments that took money, whatever was refunded since.
CAPTURED = ("succeeded", "partially_refunded", "refunded")


async def daily_figures(
    session: AsyncSession,
    principal: Principal,
    *,
    day_from: date,
    day_to: date,
    store_id: uuid.UUID | None,
) -> PaymentFiguresOut:
    check_day_range(day_from, day_to)
    # Sales only: a stored-value recharge is money the merchant owes back in goods, not
    # revenue (and its spending is counted as the ``stored_value`` tender of the sales).
    base = scoped(sa.select(Payment), Payment, principal).where(
        Payment.purpose == "order", in_business_days(day_from, day_to)
    )
    if store_id is not None:
        require_store_access(principal, store_id)
        base = base.where(Payment.store_id == store_id)
    scoped_payments = base.subquery()
    p = scoped_payments.c

    captured_rows = await session.execute(
        sa.select(
            p.currency,
            p.method,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(p.amount), 0),
            sa.func.coalesce(sa.func.sum(p.fee_amount), 0),
        )
        .where(p.status.in_(CAPTURED))
        .group_by(p.currency, p.method)
    )
    refund_rows = await session.execute(
        sa.select(
            Refund.currency,
            p.method,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(Refund.amount), 0),
            sa.func.coalesce(sa.func.sum(Refund.fee_refunded_amount), 0),
        )
        .join(scoped_payments, Refund.payment_id == p.id)
        # A late capture on a failed payment and its automatic refund net to nothing: neither
        # counts, here as in orders' report (orders never counted that payment as a tender).
        .where(Refund.status == "succeeded", p.status.in_(CAPTURED))
        .group_by(Refund.currency, p.method)
    )
    pending = await session.scalar(
        sa.select(sa.func.count()).select_from(scoped_payments).where(p.status == "pending")
    )

    # (currency, method) -> [payments, captured, fees, refunds, refunded, fees refunded]
    cells: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0])
    for currency, method, count, amount, fees in captured_rows.all():
        cell = cells[(currency, method)]
        cell[0], cell[1], cell[2] = int(count), int(amount), int(fees)
    for currency, method, count, amount, fees_back in refund_rows.all():
        cell = cells[(currency, method)]
        cell[3], cell[4], cell[5] = int(count), int(amount), int(fees_back)

    by_currency: dict[str, list[MethodFigures]] = defaultdict(list)
    for (currency, method), (count, captured, fees, refunds, refunded, fees_back) in sorted(
        cells.items()
    ):
        by_currency[currency].append(
            MethodFigures(
                method=method,
                payment_count=count,
                captured=Money.of(captured, currency),
                refund_count=refunds,
                refunded=Money.of(refunded, currency),
                net=Money.of(captured - refunded, currency),
                fees=Money.of(fees, currency),
                fees_refunded=Money.of(fees_back, currency),
                settled=Money.of(captured - refunded - fees + fees_back, currency),
            )
        )
    return PaymentFiguresOut(
        business_day_from=day_from,
        business_day_to=day_to,
        store_id=store_id,
        currencies=[_totals(currency, methods) for currency, methods in by_currency.items()],
        pending_count=int(pending or 0),
    )


def _totals(currency: str, methods: list[MethodFigures]) -> CurrencyFigures:
    def total(field: str) -> Money:
        return Money.total((getattr(m, field) for m in methods), currency)

    return CurrencyFigures(
        currency=currency,
        payment_count=sum(m.payment_count for m in methods),
        captured=total("captured"),
        refund_count=sum(m.refund_count for m in methods),
        refunded=total("refunded"),
        net=total("net"),
        fees=total("fees"),
        fees_refunded=total("fees_refunded"),
        settled=total("settled"),
        by_method=methods,
    )
