"""The payments ledger as CSV or XLSX: one sheet of payments, one of their refunds, streamed
from the database in a transaction of their own (the response outlives the request's)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import sqlalchemy as sa

from contracts.money import Money
from payments.models import OrderReplica, Payment, Refund
from servicekit.db import Database
from servicekit.tabular import Column, Sheet

BATCH = 1000

PAYMENT_COLUMNS = [
    Column("business_day", "营业日", "Business day"),
    Column("payment_id", "支付ID", "Payment ID"),
    Column("order_id", "订单ID", "Order ID"),
    Column("store_id", "门店ID", "Store ID"),
    Column("method", "支付方式", "Method"),
    Column("provider", "渠道", "Provider"),
    Column("status", "状态", "Status"),
    Column("amount", "金额", "Amount"),
    Column("fee", "手续费", "Fee"),
    Column("refunded", "已退金额", "Refunded"),
    Column("fee_refunded", "已退手续费", "Fee refunded"),
    Column("provider_reference", "渠道单号", "Provider reference"),
    Column("created_at", "创建时间", "Created at"),
    Column("completed_at", "完成时间", "Completed at"),
]
REFUND_COLUMNS = [
    Column("business_day", "营业日", "Business day"),
    Column("refund_id", "退款ID", "Refund ID"),
    Column("payment_id", "支付ID", "Payment ID"),
    Column("order_id", "订单ID", "Order ID"),
    Column("store_id", "门店ID", "Store ID"),
    Column("method", "支付方式", "Method"),
    Column("status", "状态", "Status"),
    Column("amount", "金额", "Amount"),
    Column("fee_refunded", "退回手续费", "Fee refunded"),
    Column("provider_reference", "渠道单号", "Provider reference"),
    Column("reason", "原因", "Reason"),
    Column("created_at", "创建时间", "Created at"),
]


def _replica_join() -> sa.ColumnElement[bool]:
    return sa.and_(
        OrderReplica.merchant_id == Payment.merchant_id,
        OrderReplica.order_id == Payment.order_id,
    )


async def _payment_rows(
    database: Database, payments: sa.Select[Any]
) -> AsyncIterator[Sequence[Any]]:
    listed = payments.subquery()
    stmt = (
        sa.select(Payment, OrderReplica.business_day)
        .join(listed, listed.c.id == Payment.id)
        .outerjoin(OrderReplica, _replica_join())
        .order_by(OrderReplica.business_day, Payment.created_at, Payment.id)
        .execution_options(yield_per=BATCH)
    )
    async with database.transaction() as session:
        async for p, day in await session.stream(stmt):
            yield [
                day,
                p.id,
                p.order_id,
                p.store_id,
                p.method,
                p.provider,
                p.status,
                Money.of(p.amount, p.currency),
                Money.of(p.fee_amount, p.currency),
                Money.of(p.refunded_amount, p.currency),
                Money.of(p.fee_refunded_amount, p.currency),
                p.provider_reference,
                p.created_at,
                p.completed_at,
            ]


async def _refund_rows(
    database: Database, payments: sa.Select[Any]
) -> AsyncIterator[Sequence[Any]]:
    listed = payments.subquery()
    stmt = (
        sa.select(Refund, Payment.method, OrderReplica.business_day)
        .join(Payment, Payment.id == Refund.payment_id)
        .join(listed, listed.c.id == Payment.id)
        .outerjoin(OrderReplica, _replica_join())
        .order_by(OrderReplica.business_day, Refund.created_at, Refund.id)
        .execution_options(yield_per=BATCH)
    )
    async with database.transaction() as session:
        async for r, method, day in await session.stream(stmt):
            yield [
                day,
                r.id,
                r.payment_id,
                r.order_id,
                r.store_id,
                method,
                r.status,
                Money.of(r.amount, r.currency),
                Money.of(r.fee_refunded_amount, r.currency),
                r.provider_reference,
                r.reason,
                r.created_at,
            ]


def ledger_sheets(database: Database, payments: sa.Select[Any]) -> list[Sheet]:
    """``payments`` is the scoped, filtered statement of the list endpoint."""
    return [
        Sheet("支付", "Payments", PAYMENT_COLUMNS, _payment_rows(database, payments)),
        Sheet("退款", "Refunds", REFUND_COLUMNS, _refund_rows(database, payments)),
    ]
