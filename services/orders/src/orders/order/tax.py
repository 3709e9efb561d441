"""Tax on tax-inclusive prices (as in China): a line's tax is the part of its total that is
tax at the product's rate, ``total * rate / (10000 + rate)`` with the rate in basis points,
rounded half up to the fen once per line. An order's tax per rate is the sum of its lines' tax
at that rate, so reports and receipts add up to the fen without re-rounding."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable


def line_tax(total: int, rate_bps: int) -> int:
    """The tax included in ``total`` (minor units, not negative) at ``rate_bps``."""
    if rate_bps <= 0 or total <= 0:
        return 0
    denominator = 10_000 + rate_bps
    return (2 * total * rate_bps + denominator) // (2 * denominator)


def tax_by_rate(lines: Iterable[tuple[int | None, int]]) -> dict[int, int]:
    """``{rate_bps: tax}`` from ``(rate_bps, tax)`` pairs, rates ascending."""
    totals: dict[int, int] = defaultdict(int)
    for rate, tax in lines:
        totals[rate or 0] += tax
    return dict(sorted(totals.items()))
