"""The merchant's tax-rate list. A merchant that never set one uses the rates of Chinese VAT
(0 %, 1 %, 3 %, 6 %, 9 %, 13 %); a product's ``tax_rate_bps`` must be on the list."""

from __future__ import annotations

import uuid
from typing import Annotated

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, Strict
from sqlalchemy.ext.asyncio import AsyncSession

from inventory.models import TaxRate
from servicekit.auth import scoped_to_merchant
from servicekit.errors import FieldError, ValidationFailed
from servicekit.text import StorableStr

DEFAULT_RATES: dict[int, str] = {
    0: "exempt",
    100: "1%",
    300: "3%",
    600: "6%",
    900: "9%",
    1300: "13%",
}


class TaxRateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate_bps: Annotated[int, Strict(), Field(ge=0, le=10_000)]
    name: Annotated[StorableStr, Field(min_length=1, max_length=64)]


class TaxRates(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rates: Annotated[list[TaxRateIn], Field(min_length=1, max_length=50)]


async def rates_of(session: AsyncSession, merchant_id: uuid.UUID) -> dict[int, str]:
    rows = (
        await session.execute(
            scoped_to_merchant(sa.select(TaxRate.rate_bps, TaxRate.name), TaxRate, merchant_id)
        )
    ).all()
    return {rate: name for rate, name in rows} if rows else dict(DEFAULT_RATES)


async def require_rate(
    session: AsyncSession, merchant_id: uuid.UUID, rate_bps: int, field: str = "tax_rate_bps"
) -> None:
    rates = await rates_of(session, merchant_id)
    if rate_bps not in rates:
        allowed = ", ".join(str(rate) for rate in sorted(rates))
        raise ValidationFailed(
            [
                FieldError(
                    field, "unknown_tax_rate", f"must be one of the merchant's rates: {allowed}."
                )
            ]
        )


def out(rates: dict[int, str]) -> TaxRates:
    return TaxRates(rates=[TaxRateIn(rate_bps=r, name=n) for r, n in sorted(rates.items())])


async def replace(session: AsyncSession, merchant_id: uuid.UUID, data: TaxRates) -> TaxRates:
    wanted = {rate.rate_bps: rate.name for rate in data.rates}
    if len(wanted) != len(data.rates):
        raise ValidationFailed([FieldError("rates", "duplicate_rate", "one entry per rate.")])
    await session.execute(scoped_to_merchant(sa.delete(TaxRate), TaxRate, merchant_id))
    session.add_all(
        TaxRate(merchant_id=merchant_id, rate_bps=rate, name=name) for rate, name in wanted.items()
    )
    await session.flush()
    return out(wanted)
