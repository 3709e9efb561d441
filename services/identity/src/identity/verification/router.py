"""``POST /v1/verification-codes`` and, when enabled for local development, the endpoint that
shows the codes the log sender sent."""

from __future__ import annotations

from fastapi import APIRouter, Request

from identity.context import IdentityDep
from identity.deps import current_actor
from identity.verification import service
from identity.verification.schemas import (
    AUTHENTICATED_PURPOSES,
    CodeIssued,
    CodeRequest,
    SentCodeOut,
)
from identity.verification.sender import LogCodeSender
from servicekit.auth import get_principal
from servicekit.errors import NotFound, problem_responses
from servicekit.uow import SessionDep

router = APIRouter(tags=["verification"])


@router.post(
    "/v1/verification-codes",
    status_code=202,
    response_model=CodeIssued,
    responses=problem_responses(401, 403, 404, 409, 422, 429, 502, 503),
    summary="Text a one-time code to a phone",
)
async def request_code(
    body: CodeRequest, request: Request, session: SessionDep, identity: IdentityDep
) -> CodeIssued:
    actor = None
    if body.purpose in AUTHENTICATED_PURPOSES:
        actor = await current_actor(await get_principal(request), session, identity)
    return await service.request_code(
        session, identity.settings, identity.sender, body.phone, body.purpose, actor
    )


dev_router = APIRouter(tags=["development"])


@dev_router.get(
    "/v1/dev/verification-codes",
    response_model=list[SentCodeOut],
    summary="Codes sent by the log sender (local development only)",
)
async def sent_codes(identity: IdentityDep, phone: str | None = None) -> list[SentCodeOut]:
    sender = identity.sender
    if not isinstance(sender, LogCodeSender):
        raise NotFound("No development code sender is configured.")
    if phone is not None:
        # An unencoded '+' in a query string arrives as a space.
        phone = "+" + phone.strip().lstrip("+")
    return [
        SentCodeOut(phone=sent.phone, purpose=sent.purpose, code=sent.code)
        for sent in sender.recent(phone)
    ]
