"""``Idempotency-Key`` for POSTs that create or move money or stock.

A client sends ``Idempotency-Key: <up to 255 chars>`` and may resend the request as often as
its network demands; the work happens once.

* same key, same request (method, path, query and raw body): the original response, status,
  headers and body, with ``Idempotent-Replayed: true``;
* same key, different request: 422 ``idempotency_key_reused``;
* same key while the first request still runs: 409 ``request_in_progress``;
* keys are scoped: by the caller's merchant by default, so two tenants never collide.

What is stored: every response below 500 (Stripe's rule: a 4xx is an answer too, and
replaying it keeps a retried request from suddenly succeeding with different effects), except
the statuses that mean "not processed, try again": 401 and 403 (credentials, not the request),
408, 423, 425 and 429. A 5xx or a crash stores nothing: the claim is released (or, if the
process died, lapses at ``locked_until``) and a retry runs the request again, which is safe
because the failed attempt's transaction rolled back.

Mechanics: the key is claimed in its own short committed transaction before the route runs,
so a concurrent request sees the claim; the response is captured at the ASGI level and stored
only after the route, including the commit of its unit of work, has finished, then sent. A
response whose commit failed is never stored or sent. The one window left is a crash between
the business commit and the storing of the response: the claim lapses and a retry executes
again, which is why resources also carry client-generated ids with unique constraints.

Usage::

    router = APIRouter(route_class=IdempotentRoute)

    @router.post("/v1/orders", dependencies=[Depends(Idempotency(required=True))])
    async def place_order(...): ...
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Final

import sqlalchemy as sa
from fastapi import Header, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Message, Receive, Scope, Send

from servicekit.auth import get_principal
from servicekit.db import Database
from servicekit.errors import BadRequest, Conflict, Problem
from servicekit.schema import define_platform_tables

log = logging.getLogger(__name__)

HEADER: Final = "Idempotency-Key"
REPLAYED_HEADER: Final = "Idempotent-Replayed"
MAX_KEY_LENGTH: Final = 255
DEFAULT_RETENTION: Final = timedelta(hours=24)
DEFAULT_LOCK_SECONDS: Final = 60.0

#: Responses that say "not processed, try again" and are therefore not kept for replay.
NOT_STORED_STATUSES: Final = frozenset({401, 403, 408, 423, 425, 429})

_STATE_IN_PROGRESS: Final = "in_progress"
_STATE_COMPLETED: Final = "completed"
_SCOPE_KEY: Final = "countertop.idempotency"
# Regenerated on replay or meaningless to repeat.
_UNSTORED_HEADERS: Final = frozenset(
    {b"content-length", b"date", b"server", b"set-cookie", b"transfer-encoding", b"connection"}
)

_metadata = sa.MetaData()
idempotency_keys: Final = define_platform_tables(_metadata)["idempotency_keys"]
_t = idempotency_keys.c

ScopeResolver = Callable[[Request], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class IdempotencyContext:
    """The key a request runs under, handed to the route by the :class:`Idempotency`
    dependency."""

    key: str
    scope: str


@dataclass(frozen=True, slots=True)
class _Stored:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True, slots=True)
class _Claim:
    locked_until: datetime


async def merchant_scope(request: Request) -> str:
    """The default key scope: the authenticated caller's merchant."""
    principal = await get_principal(request)
    return f"merchant:{principal.merchant_id}"


def request_fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), query.encode()):
        digest.update(part)
        digest.update(b"\0")
    digest.update(body)
    return digest.hexdigest()


def _validate_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise BadRequest(
            "invalid_idempotency_key",
            f"{HEADER} must be 1 to {MAX_KEY_LENGTH} characters long.",
        )
    if not all(" " <= char <= "~" for char in key) or not key.strip():
        raise BadRequest("invalid_idempotency_key", f"{HEADER} must be printable ASCII characters.")


class Idempotency:
    """The idempotency policy of a route, declared as a dependency.

    It takes effect on routes of an ``APIRouter(route_class=IdempotentRoute)``; anywhere else
    it fails loudly instead of silently not protecting the route. As a parameter it yields the
    :class:`IdempotencyContext` (``None`` when the optional key was not sent).
    """

    def __init__(
        self,
        *,
        required: bool = False,
        scope: ScopeResolver | None = None,
        lock_seconds: float = DEFAULT_LOCK_SECONDS,
        retention: timedelta = DEFAULT_RETENTION,
    ) -> None:
        if lock_seconds <= 0:
            raise ValueError("lock_seconds must be positive")
        self.required = required
        self.resolve_scope: ScopeResolver = scope or merchant_scope
        self.lock_seconds = lock_seconds
        self.retention = retention

    async def __call__(
        self,
        request: Request,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias=HEADER,
                description=(
                    "Unique per logical request (a UUID); a retry with the same key and body "
                    "returns the first response. Kept 24 hours."
                ),
            ),
        ] = None,
    ) -> IdempotencyContext | None:
        if _SCOPE_KEY not in request.scope:
            raise RuntimeError(
                "an Idempotency dependency is only honoured on routes of a router created "
                "with route_class=IdempotentRoute"
            )
        context: IdempotencyContext | None = request.scope[_SCOPE_KEY]
        return context

    async def handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
    ) -> None:
        """Run ``app`` (the route) at most once per key."""
        request = Request(scope, receive)
        key = request.headers.get(HEADER)
        if key is None:
            if self.required:
                raise BadRequest("idempotency_key_required", f"This request needs an {HEADER}.")
            scope[_SCOPE_KEY] = None
            await app(scope, receive, send)
            return
        _validate_key(key)
        key_scope = await self.resolve_scope(request)
        body = await request.body()
        fingerprint = request_fingerprint(request.method, request.url.path, request.url.query, body)
        database = getattr(request.app.state, "database", None)
        if not isinstance(database, Database):
            raise RuntimeError("app.state.database is not set")

        outcome = await _claim(
            database,
            scope=key_scope,
            key=key,
            method=request.method,
            path=request.url.path,
            fingerprint=fingerprint,
            lock_seconds=self.lock_seconds,
            retention=self.retention,
        )
        if isinstance(outcome, _Stored):
            await _send_replay(outcome, send)
            return

        scope[_SCOPE_KEY] = IdempotencyContext(key=key, scope=key_scope)
        messages: list[Message] = []

        async def capture(message: Message) -> None:
            messages.append(message)

        try:
            await app(scope, _replaying(body, receive), capture)
        except BaseException:
            await _release_quietly(database, key_scope, key, outcome)
            raise

        stored = _collect(messages)
        if stored is not None and stored.status < 500 and stored.status not in NOT_STORED_STATUSES:
            try:
                await _complete(database, key_scope, key, outcome, stored)
            except Exception:
                # The work is done and committed; the client gets its answer. The claim lapses
                # at locked_until and a retry would run again (see the module docstring).
                log.exception("could not store the response for idempotency key %r", key)
        else:
            await _release_quietly(database, key_scope, key, outcome)
        for message in messages:
            await send(message)


class IdempotentRoute(APIRoute):
    """A route that honours an :class:`Idempotency` dependency declared on it or its router."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.idempotency: Idempotency | None = _find_policy(self.dependant)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        policy = self.idempotency
        if (
            policy is None
            or scope["type"] != "http"
            or (self.methods and scope["method"] not in self.methods)
        ):
            await super().handle(scope, receive, send)
            return
        await policy.handle(scope, receive, send, super().handle)


def _find_policy(dependant: Dependant) -> Idempotency | None:
    for sub in dependant.dependencies:
        if isinstance(sub.call, Idempotency):
            return sub.call
        found = _find_policy(sub)
        if found is not None:
            return found
    return None


# --- storage -------------------------------------------------------------------------------


async def _claim(
    database: Database,
    *,
    scope: str,
    key: str,
    method: str,
    path: str,
    fingerprint: str,
    lock_seconds: float,
    retention: timedelta,
) -> _Claim | _Stored:
    """Claim the key in a committed transaction of its own, or say why not."""
    # Database time throughout: the replicas' clocks never have to agree.
    lock_until = sa.func.now() + sa.bindparam(
        None, timedelta(seconds=lock_seconds), type_=sa.Interval()
    )
    expires = sa.func.now() + sa.bindparam(None, retention, type_=sa.Interval())
    fresh = {
        "method": method,
        "path": path,
        "request_hash": fingerprint,
        "state": _STATE_IN_PROGRESS,
        "response_status": None,
        "response_headers": None,
        "response_body": None,
        "created_at": sa.func.now(),
        "locked_until": lock_until,
        "expires_at": expires,
    }
    where_key = (_t.scope == scope) & (_t.key == key)
    # A row can vanish between the insert and the select (released by its owner, purged):
    # going round again settles it.
    for _ in range(5):
        async with database.transaction() as session:
            inserted = await session.execute(
                pg_insert(idempotency_keys)
                .values(scope=scope, key=key, **fresh)
                .on_conflict_do_nothing(index_elements=[_t.scope, _t.key])
                .returning(_t.locked_until)
            )
            locked_until = inserted.scalar_one_or_none()
            if locked_until is not None:
                return _Claim(locked_until)
            row = (
                await session.execute(
                    sa.select(
                        _t.request_hash,
                        _t.state,
                        _t.response_status,
                        _t.response_headers,
                        _t.response_body,
                        (_t.expires_at <= sa.func.now()).label("expired"),
                        sa.func.coalesce(_t.locked_until <= sa.func.now(), True).label(
                            "lock_lapsed"
                        ),
                    )
                    .where(where_key)
                    .with_for_update()
                )
            ).one_or_none()
            if row is None:
                continue
            takeover = row.expired or (row.state == _STATE_IN_PROGRESS and row.lock_lapsed)
            if not row.expired and row.request_hash != fingerprint:
                raise Problem(
                    422,
                    "idempotency_key_reused",
                    f"This {HEADER} was already used for a different request.",
                )
            if takeover:
                # Expired, or its request crashed without releasing it: start afresh.
                updated = await session.execute(
                    sa.update(idempotency_keys)
                    .where(where_key)
                    .values(**fresh)
                    .returning(_t.locked_until)
                )
                return _Claim(updated.scalar_one())
            if row.state == _STATE_COMPLETED:
                return _Stored(
                    status=row.response_status,
                    headers=[(name, value) for name, value in row.response_headers or []],
                    body=row.response_body or b"",
                )
            raise Conflict(
                "A request with this idempotency key is still being processed; retry shortly.",
                code="request_in_progress",
                headers={"Retry-After": "1"},
            )
    raise RuntimeError(f"could not claim idempotency key {key!r}")


def _owned(scope: str, key: str, claim: _Claim) -> sa.ColumnElement[bool]:
    # locked_until doubles as a fencing token: a request whose lock lapsed and was taken over
    # must not overwrite or release the newer claim.
    return (
        (_t.scope == scope)
        & (_t.key == key)
        & (_t.state == _STATE_IN_PROGRESS)
        & (_t.locked_until == claim.locked_until)
    )


async def _complete(
    database: Database, scope: str, key: str, claim: _Claim, stored: _Stored
) -> None:
    async with database.transaction() as session:
        result = await session.execute(
            sa.update(idempotency_keys)
            .where(_owned(scope, key, claim))
            .values(
                state=_STATE_COMPLETED,
                response_status=stored.status,
                response_headers=[list(pair) for pair in stored.headers],
                response_body=stored.body,
                locked_until=None,
            )
        )
    if getattr(result, "rowcount", 1) == 0:
        log.warning("idempotency key %r was taken over before its response was stored", key)


async def _release(database: Database, scope: str, key: str, claim: _Claim) -> None:
    async with database.transaction() as session:
        await session.execute(sa.delete(idempotency_keys).where(_owned(scope, key, claim)))


async def _release_quietly(database: Database, scope: str, key: str, claim: _Claim) -> None:
    try:
        # Shielded: a cancelled request still gives its key back.
        await asyncio.shield(_release(database, scope, key, claim))
    except Exception:
        log.warning("could not release idempotency key %r; it lapses at %s", key, claim)


async def purge_expired(session: AsyncSession, *, limit: int | None = None) -> int:
    """Delete keys past their retention; returns how many. ``limit`` bounds one call's work."""
    expired = _t.expires_at < sa.func.now()
    if limit is None:
        stmt = sa.delete(idempotency_keys).where(expired)
    else:
        batch = sa.select(_t.scope, _t.key).where(expired).limit(limit)
        stmt = sa.delete(idempotency_keys).where(sa.tuple_(_t.scope, _t.key).in_(batch))
    result = await session.execute(stmt)
    return int(getattr(result, "rowcount", 0) or 0)


# --- ASGI plumbing -------------------------------------------------------------------------


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over the already-read body, then the client's own events."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _collect(messages: list[Message]) -> _Stored | None:
    """The response carried by ASGI messages, or ``None`` if it cannot be replayed."""
    status: int | None = None
    headers: list[tuple[str, str]] = []
    chunks: list[bytes] = []
    for message in messages:
        kind = message["type"]
        if kind == "http.response.start":
            status = int(message["status"])
            for name, value in message.get("headers", []):
                if name.lower() not in _UNSTORED_HEADERS:
                    headers.append((name.decode("latin-1"), value.decode("latin-1")))
        elif kind == "http.response.body":
            chunks.append(message.get("body", b""))
        else:
            return None  # pathsend, trailers...: nothing a replay could reproduce
    if status is None:
        return None
    return _Stored(status=status, headers=headers, body=b"".join(chunks))


async def _send_replay(stored: _Stored, send: Send) -> None:
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in stored.headers]
    headers.append((b"content-length", str(len(stored.body)).encode()))
    headers.append((REPLAYED_HEADER.lower().encode(), b"true"))
    await send({"type": "http.response.start", "status": stored.status, "headers": headers})
    await send({"type": "http.response.body", "body": stored.body, "more_body": False})
