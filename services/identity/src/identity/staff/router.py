"""Staff endpoints and the caller's own account (``/v1/me``)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Response

from identity.common.schemas import VersionOnly
from identity.context import ClientIpDep, IdentityDep
from identity.deps import ActorDep
from identity.staff import service
from identity.staff.schemas import (
    Deactivation,
    MeOut,
    PhoneChange,
    RoleChange,
    StaffCreate,
    StaffOut,
    StaffStatus,
    StaffUpdate,
    UnlockOut,
)
from servicekit.auth import Role
from servicekit.errors import problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.pagination import CursorParamsDep, Page
from servicekit.uow import SessionDep

router = APIRouter(tags=["staff"], route_class=IdempotentRoute)


@router.post(
    "/v1/staff",
    status_code=201,
    response_model=StaffOut,
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(401, 403, 409, 422),
    summary="Create a staff account (needs staff:manage)",
)
async def create_staff(
    body: StaffCreate, session: SessionDep, actor: ActorDep, identity: IdentityDep
) -> StaffOut:
    actor.require("staff:manage")
    password_hash = await identity.passwords.hash(body.password)
    return await service.create(session, actor, body, password_hash)


@router.get("/v1/staff", response_model=Page[StaffOut], summary="Staff the caller manages")
async def list_staff(
    session: SessionDep,
    actor: ActorDep,
    params: CursorParamsDep,
    store_id: uuid.UUID | None = None,
    role: Role | None = None,
    status: StaffStatus | None = None,
) -> Page[StaffOut]:
    return await service.list_staff(
        session, actor, params, store_id=store_id, role=role, status=status
    )


@router.get("/v1/staff/{staff_id}", response_model=StaffOut, responses=problem_responses(401, 404))
async def get_staff(staff_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> StaffOut:
    return await service.get(session, actor, staff_id)


@router.patch(
    "/v1/staff/{staff_id}",
    response_model=StaffOut,
    responses=problem_responses(401, 403, 404, 409, 428, 422),
)
async def update_staff(
    staff_id: uuid.UUID, body: StaffUpdate, session: SessionDep, actor: ActorDep
) -> StaffOut:
    return await service.update(session, actor, staff_id, body)


@router.post(
    "/v1/staff/{staff_id}/role",
    response_model=StaffOut,
    responses=problem_responses(401, 403, 404, 409, 428, 422),
    summary="Change role, store or regions and scopes (signs the account out)",
)
async def change_role(
    staff_id: uuid.UUID, body: RoleChange, session: SessionDep, actor: ActorDep
) -> StaffOut:
    return await service.change_role(session, actor, staff_id, body)


@router.post(
    "/v1/staff/{staff_id}/disable",
    response_model=StaffOut,
    responses=problem_responses(401, 403, 404, 409, 428),
)
async def disable_staff(
    staff_id: uuid.UUID, session: SessionDep, actor: ActorDep, body: VersionOnly | None = None
) -> StaffOut:
    return await service.disable(session, actor, staff_id, body.version if body else None)


@router.post(
    "/v1/staff/{staff_id}/enable",
    response_model=StaffOut,
    responses=problem_responses(401, 403, 404, 409, 428),
)
async def enable_staff(
    staff_id: uuid.UUID, session: SessionDep, actor: ActorDep, body: VersionOnly | None = None
) -> StaffOut:
    return await service.enable(session, actor, staff_id, body.version if body else None)


@router.post(
    "/v1/staff/{staff_id}/unlock",
    response_model=UnlockOut,
    responses=problem_responses(401, 403, 404),
    summary="Lift the sign-in delay failed attempts put on a staff member's phone",
)
async def unlock_staff(staff_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> UnlockOut:
    return await service.unlock(session, actor, staff_id)


@router.get("/v1/me", response_model=MeOut, tags=["me"], summary="The signed-in account")
async def me(session: SessionDep, actor: ActorDep) -> MeOut:
    return await service.me(session, actor)


@router.post(
    "/v1/me/phone",
    response_model=StaffOut,
    tags=["me"],
    responses=problem_responses(401, 409, 422),
    summary="Change your phone with a phone_change code sent to the new phone",
)
async def change_phone(
    body: PhoneChange,
    actor: ActorDep,
    session: SessionDep,
    identity: IdentityDep,
    ip: ClientIpDep,
) -> StaffOut:
    return await service.change_phone(session, identity.settings, actor.id, body, ip)


@router.post(
    "/v1/me/deactivate",
    status_code=204,
    tags=["me"],
    responses=problem_responses(401, 409, 422),
    summary="Close your account with an account_deactivation code (records are kept)",
)
async def deactivate(
    body: Deactivation,
    actor: ActorDep,
    session: SessionDep,
    identity: IdentityDep,
    ip: ClientIpDep,
) -> Response:
    await service.deactivate_self(session, identity.settings, actor.id, body, ip)
    return Response(status_code=204)
