"""Handover endpoints."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends

from identity.context import ClientIpDep, IdentityDep
from identity.deps import ActorDep
from identity.handover import service
from identity.handover.schemas import (
    HandoverAccept,
    HandoverComplete,
    HandoverCreate,
    HandoverOut,
)
from servicekit.errors import problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.uow import SessionDep

router = APIRouter(tags=["handover"], route_class=IdempotentRoute)


@router.post(
    "/v1/handovers",
    status_code=201,
    response_model=HandoverOut,
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(401, 403, 409, 422, 429),
    summary="Start handing the super admin role to someone (a code goes to their phone)",
)
async def start_handover(
    body: HandoverCreate,
    session: SessionDep,
    actor: ActorDep,
    identity: IdentityDep,
    ip: ClientIpDep,
) -> HandoverOut:
    return await service.start(session, identity, actor, body, ip)


@router.get(
    "/v1/handovers/{handover_id}",
    response_model=HandoverOut,
    responses=problem_responses(401, 403, 404),
)
async def get_handover(handover_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> HandoverOut:
    return await service.get(session, actor, handover_id)


@router.post(
    "/v1/handovers/{handover_id}/accept",
    response_model=HandoverOut,
    responses=problem_responses(404, 409, 422),
    summary="The incoming super admin accepts with the code their phone received",
)
async def accept_handover(
    handover_id: uuid.UUID,
    body: HandoverAccept,
    session: SessionDep,
    identity: IdentityDep,
    ip: ClientIpDep,
) -> HandoverOut:
    return await service.accept(session, identity, handover_id, body, ip)


@router.post(
    "/v1/handovers/{handover_id}/complete",
    response_model=HandoverOut,
    responses=problem_responses(401, 403, 404, 409, 422),
    summary="The outgoing super admin steps down: demoted or deactivated",
)
async def complete_handover(
    handover_id: uuid.UUID,
    body: HandoverComplete,
    session: SessionDep,
    actor: ActorDep,
    ip: ClientIpDep,
) -> HandoverOut:
    return await service.complete(session, actor, handover_id, body, ip)


@router.post(
    "/v1/handovers/{handover_id}/cancel",
    response_model=HandoverOut,
    responses=problem_responses(401, 403, 404, 409),
)
async def cancel_handover(
    handover_id: uuid.UUID, session: SessionDep, actor: ActorDep, ip: ClientIpDep
) -> HandoverOut:
    return await service.cancel(session, actor, handover_id, ip)
