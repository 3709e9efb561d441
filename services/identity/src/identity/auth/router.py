"""Sign-in endpoints and the JWKS. These routes commit their failure bookkeeping (attempt
counters, revoked token families) before answering with an error: the services raise
``servicekit.uow.FailAfterCommit``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from identity.auth import service
from identity.auth.schemas import (
    JwksOut,
    LoginRequest,
    PasswordResetRequest,
    RefreshRequest,
    TokenPair,
)
from identity.context import ClientIpDep, IdentityDep
from servicekit.errors import problem_responses
from servicekit.uow import SessionDep

router = APIRouter(tags=["auth"])

_NO_STORE = {"Cache-Control": "no-store"}


def _tokens(pair: TokenPair) -> JSONResponse:
    return JSONResponse(pair.model_dump(), headers=_NO_STORE)


@router.post(
    "/v1/auth/login",
    response_model=TokenPair,
    responses=problem_responses(401, 422, 429),
    summary="Sign in with phone, password (or login code) and merchant or store code",
)
async def login(
    body: LoginRequest, session: SessionDep, identity: IdentityDep, ip: ClientIpDep
) -> JSONResponse:
    pair = await service.login(session, identity, body, ip)
    return _tokens(pair)


@router.post(
    "/v1/auth/refresh",
    response_model=TokenPair,
    responses=problem_responses(401, 422),
    summary="Exchange a refresh token for new tokens (the old one is spent)",
)
async def refresh(
    body: RefreshRequest, session: SessionDep, identity: IdentityDep, ip: ClientIpDep
) -> JSONResponse:
    pair = await service.refresh(session, identity, body.refresh_token, ip)
    return _tokens(pair)


@router.post(
    "/v1/auth/logout",
    status_code=204,
    summary="Sign out: revoke the refresh token and every token rotated from it",
)
async def logout(body: RefreshRequest, session: SessionDep, ip: ClientIpDep) -> Response:
    await service.logout(session, body.refresh_token, ip)
    return Response(status_code=204)


@router.post(
    "/v1/auth/password-reset",
    status_code=204,
    responses=problem_responses(422),
    summary="Set a new password with a password_reset code; signs out every session",
)
async def password_reset(
    body: PasswordResetRequest, session: SessionDep, identity: IdentityDep, ip: ClientIpDep
) -> Response:
    await service.reset_password(session, identity, body, ip)
    return Response(status_code=204)


@router.get(
    "/.well-known/jwks.json",
    response_model=JwksOut,
    tags=["auth"],
    summary="Public keys that verify access tokens",
)
async def jwks(identity: IdentityDep) -> JSONResponse:
    document: dict[str, Any] = await identity.keys.jwks()
    return JSONResponse(document, headers={"Cache-Control": "public, max-age=60"})
