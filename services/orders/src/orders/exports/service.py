"""The sheets of each export. Orders stream from the database in batches inside a transaction
of their own (the response outlives the request's); reports are small and built first."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from contracts.money import Money
from orders.models import Order, OrderLine
from orders.reports.schemas import SalesReport, TaxMonth
from orders.reports.service import Scope
from servicekit.db import Database
from servicekit.tabular import Column, Sheet, rows_of

BATCH = 1000

ORDER_LINE_COLUMNS = [
    Column("business_day", "营业日", "Business day"),
    Column("number", "订单号", "Order number"),
    Column("order_id", "订单ID", "Order ID"),
    Column("store_id", "门店ID", "Store ID"),
    Column("channel", "渠道", "Channel"),
    Column("status", "状态", "Status"),
    Column("source", "来源", "Source"),
    Column("late", "迟到同步", "Late arrival"),
    Column("till_id", "收银机", "Till"),
    Column("cashier_id", "收银员ID", "Cashier ID"),
    Column("occurred_at", "下单时间", "Occurred at"),
    Column("order_total", "订单金额", "Order total"),
    Column("order_paid", "已付金额", "Paid"),
    Column("order_refunded", "已退金额", "Refunded"),
    Column("line", "行号", "Line"),
    Column("product_id", "商品ID", "Product ID"),
    Column("product", "商品", "Product"),
    Column("quantity", "数量", "Quantity"),
    Column("unit_price", "单价", "Unit price"),
    Column("discount", "折扣", "Discount"),
    Column("line_total", "行金额", "Line total"),
    Column("tax_rate", "税率(%)", "Tax rate (%)"),
    Column("tax", "税额", "Tax"),
    Column("price_mismatch", "价格差异", "Price differs from catalog"),
]


def _rate(bps: int | None) -> Decimal:
    """Basis points as a percentage: 600 -> 6."""
    return Decimal(bps or 0) / 100


def _percent(bps: int | None) -> Decimal | None:
    """A margin in basis points as a percentage, blank when not known or not shown."""
    return None if bps is None else Decimal(bps) / 100


async def _order_line_rows(database: Database, scope: Scope) -> AsyncIterator[Sequence[Any]]:
    stmt = (
        sa.select(Order, OrderLine)
        .join(
            OrderLine,
            sa.and_(OrderLine.merchant_id == Order.merchant_id, OrderLine.order_id == Order.id),
        )
        .where(*scope.orders())
        .order_by(Order.business_day, Order.store_id, Order.number, Order.id, OrderLine.position)
        .execution_options(yield_per=BATCH)
    )
    async with database.transaction() as session:
        result = await session.stream(stmt)
        async for order, line in result:

            def money(amount: int, currency: str = order.currency) -> Money:
                return Money.of(amount, currency)

            yield [
                order.business_day,
                order.number,
                order.id,
                order.store_id,
                order.channel,
                order.status,
                order.source,
                order.late,
                order.till_id,
                order.cashier_id,
                order.occurred_at,
                money(order.total),
                money(order.paid_total),
                money(order.refunded_total),
                line.position + 1,
                line.product_id,
                line.name,
                line.quantity,
                money(line.unit_price),
                money(line.discount),
                money(line.total),
                _rate(line.tax_rate_bps),
                money(line.tax),
                line.price_mismatch,
            ]


def orders_sheets(database: Database, scope: Scope) -> list[Sheet]:
    return [Sheet("订单明细", "Orders", ORDER_LINE_COLUMNS, _order_line_rows(database, scope))]


SUMMARY_COLUMNS = [Column("item", "项目", "Item"), Column("value", "数值", "Value")]


def report_sheets(report: SalesReport, language: str) -> list[Sheet]:
    s = report.summary
    zh = language == "zh"

    def label(chinese: str, english: str) -> str:
        return chinese if zh else english

    summary: list[Sequence[Any]] = [
        [label("营业日起", "From business day"), report.business_day_from],
        [label("营业日止", "To business day"), report.business_day_to],
        [label("门店", "Store"), report.store_id or label("全部", "All")],
        [label("币种", "Currency"), report.currency],
        [label("订单数", "Orders"), s.order_count],
        [label("销售总额", "Gross"), s.gross],
        [label("折扣", "Discounts"), s.discounts],
        [label("净销售额", "Net"), s.net],
        [label("税额", "Tax"), s.tax],
        [label("退款", "Refunds"), s.refunds],
        [label("退款笔数", "Refund count"), s.refund_count],
        [label("退款后净额", "Net after refunds"), s.net_after_refunds],
        [label("客单价", "Average ticket"), s.average_ticket],
        [label("迟到同步订单", "Late arrivals"), s.late_arrivals],
        [label("价格差异行", "Price mismatches"), s.price_mismatches],
        [label("成本(仅成本已知行)", "Cost (known-cost lines)"), s.margin.cost],
        [label("毛利(仅成本已知行)", "Margin (known-cost lines)"), s.margin.margin],
        [label("毛利率(%)", "Margin (%)"), _percent(s.margin.margin_bps)],
        [label("成本未知数量", "Quantity without cost"), s.margin.cost_unknown_quantity],
        [label("成本未知销售额", "Revenue without cost"), s.margin.cost_unknown_revenue],
    ]
    tax_columns = [
        Column("rate", "税率(%)", "Tax rate (%)"),
        Column("sales", "含税销售额", "Sales (tax incl.)"),
        Column("tax", "税额", "Tax"),
        Column("net_of_tax", "不含税销售额", "Sales net of tax"),
    ]
    return [
        Sheet("汇总", "Summary", SUMMARY_COLUMNS, rows_of(summary)),
        Sheet(
            "税率",
            "Tax by rate",
            tax_columns,
            rows_of([[_rate(t.rate_bps), t.sales, t.tax, t.net_of_tax] for t in s.tax_by_rate]),
        ),
        Sheet(
            "支付方式",
            "By method",
            [
                Column("method", "支付方式", "Method"),
                Column("tenders", "收款笔数", "Payments"),
                Column("captured", "收款金额", "Captured"),
                Column("refunds", "退款笔数", "Refunds"),
                Column("refunded", "退款金额", "Refunded"),
                Column("net", "净额", "Net"),
            ],
            rows_of(
                [
                    [m.method, m.tender_count, m.captured, m.refund_count, m.refunded, m.net]
                    for m in report.by_method
                ]
            ),
        ),
        Sheet(
            "时段",
            "By hour",
            [
                Column("hour", "小时", "Hour"),
                Column("orders", "订单数", "Orders"),
                Column("net", "净销售额", "Net"),
            ],
            rows_of([[h.hour, h.order_count, h.net] for h in report.by_hour]),
        ),
        Sheet(
            "渠道",
            "By channel",
            [
                Column("channel", "渠道", "Channel"),
                Column("orders", "订单数", "Orders"),
                Column("gross", "销售总额", "Gross"),
                Column("discounts", "折扣", "Discounts"),
                Column("net", "净销售额", "Net"),
            ],
            rows_of(
                [[c.channel, c.order_count, c.gross, c.discounts, c.net] for c in report.by_channel]
            ),
        ),
        _products("热销(数量)", "Top by quantity", report.top_products_by_quantity),
        _products("热销(金额)", "Top by revenue", report.top_products_by_revenue),
        Sheet(
            "收银员",
            "By cashier",
            [
                Column("cashier", "收银员ID", "Cashier ID"),
                Column("orders", "订单数", "Orders"),
                Column("net", "净销售额", "Net"),
            ],
            rows_of([[c.cashier_id, c.order_count, c.net] for c in report.by_cashier]),
        ),
        Sheet(
            "班次",
            "By shift",
            [
                Column("shift", "班次ID", "Shift ID"),
                Column("till", "收银机", "Till"),
                Column("cashier", "收银员ID", "Cashier ID"),
                Column("status", "状态", "Status"),
                Column("opened_at", "开班时间", "Opened at"),
                Column("closed_at", "交班时间", "Closed at"),
                Column("orders", "订单数", "Orders"),
                Column("sales", "销售额", "Sales"),
                Column("method", "支付方式", "Method"),
                Column("expected", "应有", "Expected"),
                Column("counted", "实点", "Counted"),
                Column("over_short", "长短款", "Over/short"),
            ],
            rows_of(
                [
                    [
                        shift.id,
                        shift.till_id,
                        shift.cashier_id,
                        shift.status,
                        shift.opened_at,
                        shift.closed_at,
                        shift.order_count,
                        shift.sales,
                        figures.method,
                        figures.expected,
                        figures.counted,
                        figures.over_short,
                    ]
                    for shift in report.by_shift
                    for figures in shift.by_method
                ]
            ),
        ),
        Sheet(
            "迟到同步",
            "Late arrivals",
            [
                Column("number", "订单号", "Order number"),
                Column("order_id", "订单ID", "Order ID"),
                Column("store_id", "门店ID", "Store ID"),
                Column("business_day", "营业日", "Business day"),
                Column("occurred_at", "下单时间", "Occurred at"),
                Column("synced_at", "同步时间", "Synced at"),
            ],
            rows_of(
                [
                    [o.number, o.order_id, o.store_id, o.business_day, o.occurred_at, o.synced_at]
                    for o in report.late_arrivals
                ]
            ),
        ),
    ]


def _products(zh: str, en: str, products: Sequence[Any]) -> Sheet:
    return Sheet(
        zh,
        en,
        [
            Column("product_id", "商品ID", "Product ID"),
            Column("product", "商品", "Product"),
            Column("quantity", "数量", "Quantity"),
            Column("revenue", "销售额", "Revenue"),
            Column("tax", "税额", "Tax"),
            Column("cost", "成本(仅成本已知行)", "Cost (known-cost lines)"),
            Column("margin", "毛利(仅成本已知行)", "Margin (known-cost lines)"),
            Column("margin_pct", "毛利率(%)", "Margin (%)"),
            Column("cost_unknown_quantity", "成本未知数量", "Quantity without cost"),
            Column("cost_unknown_revenue", "成本未知销售额", "Revenue without cost"),
        ],
        rows_of(
            [
                [
                    p.product_id,
                    p.name,
                    p.quantity,
                    p.revenue,
                    p.tax,
                    p.cost,
                    p.margin,
                    _percent(p.margin_bps),
                    p.cost_unknown_quantity,
                    p.cost_unknown_revenue,
                ]
                for p in products
            ]
        ),
    )


def tax_sheets(month: TaxMonth) -> list[Sheet]:
    columns = [
        Column("business_day", "营业日", "Business day"),
        Column("rate", "税率(%)", "Tax rate (%)"),
        Column("sales", "含税销售额", "Sales (tax incl.)"),
        Column("tax", "税额", "Tax"),
        Column("net_of_tax", "不含税销售额", "Sales net of tax"),
    ]
    days: list[Sequence[Any]] = [
        [d.business_day, _rate(d.rate_bps), d.sales, d.tax, d.net_of_tax] for d in month.days
    ]
    totals: list[Sequence[Any]] = [
        [month.month, _rate(t.rate_bps), t.sales, t.tax, t.net_of_tax] for t in month.totals
    ]
    return [
        Sheet("按日", "By day", columns, rows_of(days)),
        Sheet("月合计", "Month total", columns, rows_of(totals)),
    ]


def export_name(kind: str, store_id: uuid.UUID | None, first: date, last: date) -> str:
    where = str(store_id)[:8] if store_id else "all"
    return f"{kind}-{where}-{first:%Y%m%d}-{last:%Y%m%d}"
