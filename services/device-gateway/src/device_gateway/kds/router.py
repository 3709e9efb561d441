"""HTTP endpoints of the kitchen display: open tickets, the live feed (server-sent events,
resumable with ``Last-Event-ID``) and bumping a ticket."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from device_gateway.kds import service
from device_gateway.registry.service import own_store
from servicekit.auth import Principal, PrincipalDep, require
from servicekit.db import Database
from servicekit.errors import BadRequest, problem_responses
from servicekit.uow import SessionDep

router = APIRouter(prefix="/v1/stores/{store_id}/kds", tags=["kitchen display"])

Operator = Annotated[Principal, Depends(require("devices:operate"))]


class BumpIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: Literal["in_progress", "done", "recalled"] | None = Field(
        default=None, description="default: the next state"
    )
    version: int | None = Field(default=None, ge=1)


@router.get("/tickets", responses=problem_responses(404))
async def open_tickets(
    store_id: uuid.UUID, principal: PrincipalDep, session: SessionDep, station: str | None = None
) -> list[dict[str, object]]:
    """Tickets not done yet, oldest first: what a display shows when it starts."""
    await own_store(session, principal, store_id)
    tickets = await service.open_tickets(session, principal.merchant_id, store_id, station)
    return [service.ticket_data(t) for t in tickets]


@router.post("/tickets/{ticket_id}/bump", responses=problem_responses(403, 404, 409))
async def bump(
    store_id: uuid.UUID,
    ticket_id: uuid.UUID,
    principal: Operator,
    session: SessionDep,
    body: Annotated[BumpIn | None, Body()] = None,
) -> dict[str, object]:
    """Move a ticket on (new → in progress → done), or recall a done one (``devices:operate``)."""
    ticket = await service.change(
        session,
        principal,
        store_id,
        ticket_id,
        to=body.to if body else None,
        version=body.version if body else None,
    )
    return service.ticket_data(ticket)


@router.get("/stream", responses=problem_responses(404))
async def stream(
    store_id: uuid.UUID,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    station: str | None = None,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[int | None, Query(ge=0, description="instead of Last-Event-ID")] = None,
) -> StreamingResponse:
    """Server-sent events of a store's (or one station's) kitchen tickets: one ``ticket``
    event per change, with the ticket as data and the feed position as id. A display that
    reconnects with ``Last-Event-ID`` gets every change it missed, then the live feed."""
    await own_store(session, principal, store_id)
    start = after or 0
    if last_event_id:
        try:
            start = int(last_event_id)
        except ValueError:
            raise BadRequest("invalid_last_event_id", "Last-Event-ID is a feed position.") from None
    database: Database = request.app.state.database
    settings = request.app.state.settings
    return StreamingResponse(
        _events(
            request,
            database,
            principal.merchant_id,
            store_id,
            station,
            start,
            settings.kds_poll_interval,
            settings.kds_keepalive_seconds,
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    request: Request,
    database: Database,
    merchant_id: uuid.UUID,
    store_id: uuid.UUID,
    station: str | None,
    position: int,
    poll: float,
    keepalive: float,
) -> AsyncIterator[bytes]:
    yield b"retry: 2000\n\n"
    quiet_since = time.monotonic()
    while not await request.is_disconnected():
        async with database.transaction() as session:
            entries = await service.feed_after(session, merchant_id, store_id, station, position)
        for entry in entries:
            position = entry.seq
            data = json.dumps(entry.data, ensure_ascii=False)
            yield f"id: {entry.seq}\nevent: ticket\ndata: {data}\n\n".encode()
        if entries:
            quiet_since = time.monotonic()
            continue
        if time.monotonic() - quiet_since >= keepalive:
            yield b": keep-alive\n\n"
            quiet_since = time.monotonic()
        await asyncio.sleep(poll)
