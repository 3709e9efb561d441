"""HTTP endpoints of the merchant's tax-rate list: ``/v1/tax-rates``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from inventory.catalog.service import require_merchant_wide
from inventory.taxes import service
from inventory.taxes.service import TaxRates
from servicekit.auth import Principal, PrincipalDep, require
from servicekit.errors import problem_responses
from servicekit.uow import SessionDep

router = APIRouter(prefix="/v1/tax-rates", tags=["catalog"])

CatalogWriter = Annotated[Principal, Depends(require("catalog:manage"))]


@router.get("")
async def get_tax_rates(principal: PrincipalDep, session: SessionDep) -> TaxRates:
    """The rates products may carry (the default VAT list until the merchant sets its own)."""
    return service.out(await service.rates_of(session, principal.merchant_id))


@router.put("", responses=problem_responses(403, 422))
async def set_tax_rates(body: TaxRates, principal: CatalogWriter, session: SessionDep) -> TaxRates:
    """Replace the list (``catalog:manage``, merchant-wide). Products already carrying a rate
    that leaves the list keep it until they are changed."""
    require_merchant_wide(principal)
    return await service.replace(session, principal.merchant_id, body)
