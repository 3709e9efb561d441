"""Merchant endpoints: sign-up (public) and the caller's own merchant."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request

from identity.context import ClientIpDep, IdentityDep
from identity.deps import ActorDep
from identity.merchants import service
from identity.merchants.schemas import MerchantOut, MerchantUpdate, SignupOut, SignupRequest
from servicekit.errors import problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.uow import SessionDep

router = APIRouter(tags=["merchants"], route_class=IdempotentRoute)


async def _signup_scope(request: Request) -> str:
    # Nobody is signed in yet; the key alone identifies the request, and a replay needs the
    # same body too, verification code and password included.
    return "signup"


@router.post(
    "/v1/merchants",
    status_code=201,
    response_model=SignupOut,
    dependencies=[Depends(Idempotency(scope=_signup_scope))],
    responses=problem_responses(409, 422, 429),
    summary="Sign up a merchant with its first store and super admin",
)
async def signup(
    body: SignupRequest, session: SessionDep, identity: IdentityDep, ip: ClientIpDep
) -> SignupOut:
    return await service.signup(session, identity, body, ip)


@router.get(
    "/v1/merchants/{merchant_id}",
    response_model=MerchantOut,
    responses=problem_responses(401, 404),
)
async def get_merchant(merchant_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> MerchantOut:
    return await service.get(session, actor, merchant_id)


@router.patch(
    "/v1/merchants/{merchant_id}",
    response_model=MerchantOut,
    responses=problem_responses(401, 403, 404, 409, 428, 422),
    summary="Change the merchant profile (needs settings:manage)",
)
async def update_merchant(
    merchant_id: uuid.UUID, body: MerchantUpdate, session: SessionDep, actor: ActorDep
) -> MerchantOut:
    return await service.update(session, actor, merchant_id, body)
