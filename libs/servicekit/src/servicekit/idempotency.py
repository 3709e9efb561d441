"""``Idempotency-Key`` for POSTs that create or move money or stock.

A client sends ``Idempotency-Key: <up to 255 chars>`` and may resend the request as often as
its network demands; the work happens once.

* same key, same request (method, path, query and raw body): the original response, status,
  headers and body, with ``Idempotent-Replayed: true``;
* same key, different request: 422 ``idempotency_key_reused``;
* same key while the first request still runs: the retry waits for it (at most
  ``wait_seconds``, 5 s by default) and then gets its answer; past that, 409
  ``request_in_progress`` with ``Retry-After: 1``;
* keys are scoped to the caller: merchant *and* staff member by default, so neither another
  tenant nor a colleague with other rights can reach someone else's stored answer.

The caller first (replay never bypasses rights): the key is looked up only after every other
dependency of the route has run (authentication, ``require(...)`` permissions, the session),
and after the caller's access to the store the request names (a ``store_id`` in the path or at
the top of the JSON body) is checked.
A caller who could not have made the request gets what a fresh request would get.

One transaction (Stripe's model). The route owns the request's unit of work (see
:class:`servicekit.uow.OwnedUnitOfWork`): it opens the transaction, the key row is inserted
into it before the business work, the business work runs in a savepoint, the response is
captured at the ASGI level, written into the key row, and the whole commits once; only then is
the response sent. Consequences:

* no crash window and no lock to lapse: a request whose process died (or whose client went
  away) rolled back with its key row, so a retry runs at once, and a retry can never run work
  that was committed, because the work and its answer commit together;
* a concurrent duplicate's insert of the same key blocks on the first one's uncommitted row
  (PostgreSQL's unique index) and then sees its stored answer, or, if the first rolled back,
  takes the key over; ``lock_timeout`` bounds the wait;
* a response whose commit failed is never stored or sent (the caller gets a 500);
* one commit per request, not three (claim, business, answer);
* the dependencies that run before the key (authentication, permission and scope checks) only
  read: a refusal stored under the key rolls back to the savepoint, not past it.

What is stored: every answer below 500, 4xx included (Stripe's rule: replaying a refusal keeps
a retried request from suddenly succeeding with different effects; the refused request's
business work is rolled back to the savepoint, its answer still commits), except transient
answers: 401, 403, 408, 423, 425, 429, 409 ``request_in_progress`` and any problem raised with
``transient=True`` (a replica not caught up yet). Those, and 5xx, leave no key behind, so the
retry runs again. Keys are kept 24 hours and purged by the housekeeping task.

Usage::

    router = APIRouter(route_class=IdempotentRoute)

    @router.post("/v1/orders", dependencies=[Depends(Idempotency(required=True))])
    async def place_order(...): ...
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Final

import sqlalchemy as sa
from fastapi import Depends, Header, Request
from fastapi.routing import APIRoute
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Message, Receive, Scope, Send

from servicekit.auth import get_principal, require_store_access
from servicekit.db import Database
from servicekit.errors import TRANSIENT_SCOPE_KEY, TRANSIENT_STATUSES, BadRequest, Conflict, Problem
from servicekit.schema import define_platform_tables
from servicekit.uow import OwnedUnitOfWork

log = logging.getLogger(__name__)

HEADER: Final = "Idempotency-Key"
REPLAYED_HEADER: Final = "Idempotent-Replayed"
MAX_KEY_LENGTH: Final = 255
DEFAULT_RETENTION: Final = timedelta(hours=24)
DEFAULT_WAIT_SECONDS: Final = 5.0

#: Responses that say "not processed, try again" and are therefore not kept for replay.
NOT_STORED_STATUSES: Final = TRANSIENT_STATUSES

_STATE_IN_PROGRESS: Final = "in_progress"
_STATE_COMPLETED: Final = "completed"
_CONTEXT_SCOPE_KEY: Final = "countertop.idempotency"
# The key whose row this request inserted (or took over) in its own transaction.
_HELD_SCOPE_KEY: Final = "countertop.idempotency_held"
_CHECKPOINT_PARAM: Final = "countertop_idempotency_checkpoint"
# PostgreSQL's lock_not_available: our lock_timeout expired while another request held the key.
_LOCK_NOT_AVAILABLE: Final = "55P03"
# Regenerated on replay or meaningless to repeat.
_UNSTORED_HEADERS: Final = frozenset(
    {b"content-length", b"date", b"server", b"set-cookie", b"transfer-encoding", b"connection"}
)

_metadata = sa.MetaData()
idempotency_keys: Final = define_platform_tables(_metadata)["idempotency_keys"]
_t = idempotency_keys.c

# The key's insert with its lock_timeout set just before, in one statement: the insert reads
# its row from ``applied``, so set_config has run before the insert can wait on a concurrent
# duplicate's row; ``prior`` (read before the change) is returned for setting it back.
_CLAIM_BOUNDED: Final = sa.text(
    """
    WITH prior AS MATERIALIZED (SELECT current_setting('lock_timeout') AS value),
    applied AS MATERIALIZED (SELECT set_config('lock_timeout', :timeout, true) FROM prior),
    claimed AS (
        INSERT INTO idempotency_keys
            (scope, key, method, path, request_hash, state, created_at, expires_at)
        SELECT :scope, :key, :method, :path, :request_hash, :state, now(), now() + :retention
        FROM applied
        ON CONFLICT (scope, key) DO NOTHING
        RETURNING key
    )
    SELECT (SELECT value FROM prior) AS prior, EXISTS (SELECT 1 FROM claimed) AS claimed
    """
).bindparams(sa.bindparam("retention", type_=sa.Interval()))

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


class _Replay(Exception):
    """Raised by the checkpoint when the key already holds an answer: the route stops there
    and :class:`IdempotentRoute` sends the stored answer."""

    def __init__(self, stored: _Stored) -> None:
        super().__init__("replay")
        self.stored = stored


async def caller_scope(request: Request) -> str:
    """The default key scope: the authenticated caller, merchant and staff member."""
    principal = await get_principal(request)
    return f"merchant:{principal.merchant_id}:staff:{principal.subject}"


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
        wait_seconds: float = DEFAULT_WAIT_SECONDS,
        retention: timedelta = DEFAULT_RETENTION,
    ) -> None:
        if wait_seconds <= 0:
            raise ValueError("wait_seconds must be positive")
        self.required = required
        self.resolve_scope: ScopeResolver = scope or caller_scope
        self.wait_seconds = wait_seconds
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
        if OwnedUnitOfWork.of(request.scope) is None:
            raise RuntimeError(
                "an Idempotency dependency is only honoured on routes of a router created "
                "with route_class=IdempotentRoute"
            )
        return await self.context(request)

    async def context(self, request: Request) -> IdempotencyContext | None:
        """The validated key and its scope; ``None`` when an optional key was not sent."""
        if _CONTEXT_SCOPE_KEY in request.scope:
            known: IdempotencyContext | None = request.scope[_CONTEXT_SCOPE_KEY]
            return known
        key = request.headers.get(HEADER)
        if key is None:
            if self.required:
                raise BadRequest("idempotency_key_required", f"This request needs an {HEADER}.")
            request.scope[_CONTEXT_SCOPE_KEY] = None
            return None
        _validate_key(key)
        context = IdempotencyContext(key=key, scope=await self.resolve_scope(request))
        request.scope[_CONTEXT_SCOPE_KEY] = context
        return context

    async def checkpoint(self, request: Request) -> OwnedUnitOfWork:
        """Run last among the route's dependencies: claim the key in the request's transaction,
        or stop the route with the stored answer."""
        owned = OwnedUnitOfWork.of(request.scope)
        if owned is None:
            raise RuntimeError(
                "an Idempotency dependency is only honoured on routes of a router created "
                "with route_class=IdempotentRoute"
            )
        context = await self.context(request)
        if context is None:
            return owned
        await _check_store_scope(request)
        body = await request.body()
        fingerprint = request_fingerprint(request.method, request.url.path, request.url.query, body)
        stored = await _claim(
            owned.session,
            context,
            method=request.method,
            path=request.url.path,
            fingerprint=fingerprint,
            wait_seconds=self.wait_seconds,
            retention=self.retention,
        )
        if stored is not None:
            raise _Replay(stored)
        request.scope[_HELD_SCOPE_KEY] = context
        owned.savepoint = await owned.session.begin_nested()
        return owned


async def _check_store_scope(request: Request) -> None:
    """The store a request names, in its path or as the top-level ``store_id`` of its JSON
    body, is checked against the caller before any stored answer is seen."""
    if "authorization" not in request.headers:
        return  # a route without a signed-in caller has no store scope
    named = [request.path_params.get("store_id")]
    try:
        document = await request.json()
    except ValueError:
        document = None
    if isinstance(document, dict):
        named.append(document.get("store_id"))
    for raw in named:
        if raw is None:
            continue
        try:
            store_id = raw if isinstance(raw, uuid.UUID) else uuid.UUID(str(raw))
        except ValueError:
            continue  # the route's own validation answers that
        require_store_access(await get_principal(request), store_id)


class IdempotentRoute(APIRoute):
    """A route that owns its unit of work and honours an :class:`Idempotency` dependency
    declared on it or its router."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        dependencies = list(kwargs.get("dependencies") or [])
        policy = next(
            (d.dependency for d in dependencies if isinstance(d.dependency, Idempotency)),
            None,
        )
        if policy is None:
            policy = _find_in_signature(endpoint)
        self.idempotency: Idempotency | None = policy
        if policy is not None:
            endpoint = _with_checkpoint(endpoint, policy)
        super().__init__(path, endpoint, **kwargs)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.idempotency is None
            or scope["type"] != "http"
            or (self.methods and scope["method"] not in self.methods)
        ):
            await super().handle(scope, receive, send)
            return
        database = getattr(scope["app"].state, "database", None)
        if not isinstance(database, Database):
            raise RuntimeError("app.state.database is not set")
        await _run_owned(database, scope, receive, send, super().handle)


def _find_in_signature(endpoint: Callable[..., Any]) -> Idempotency | None:
    try:
        signature = inspect.signature(endpoint, eval_str=True)
    except (NameError, TypeError, ValueError):
        return None
    for parameter in signature.parameters.values():
        for marker in getattr(parameter.annotation, "__metadata__", ()):
            if isinstance(getattr(marker, "dependency", None), Idempotency):
                policy: Idempotency = marker.dependency
                return policy
    return None


def _with_checkpoint(endpoint: Callable[..., Any], policy: Idempotency) -> Callable[..., Any]:
    """``endpoint`` with one more dependency, declared after all of its own: FastAPI solves
    dependencies in declaration order, so authentication and permissions run before the key is
    looked up."""
    signature = inspect.signature(endpoint, eval_str=True)
    parameters = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        else p
        for p in signature.parameters.values()
        if p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    parameters.append(
        inspect.Parameter(
            _CHECKPOINT_PARAM,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[OwnedUnitOfWork, Depends(policy.checkpoint)],
        )
    )
    parameters.extend(
        p for p in signature.parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD
    )
    wrapper: Callable[..., Any]
    if inspect.iscoroutinefunction(endpoint):

        async def wrapper(**values: Any) -> Any:
            owned: OwnedUnitOfWork = values.pop(_CHECKPOINT_PARAM)
            result = await endpoint(**values)
            owned.returned = True
            return result

    else:

        def wrapper(**values: Any) -> Any:
            owned: OwnedUnitOfWork = values.pop(_CHECKPOINT_PARAM)
            result = endpoint(**values)
            owned.returned = True
            return result

    functools.update_wrapper(wrapper, endpoint)
    setattr(wrapper, "__signature__", signature.replace(parameters=parameters))  # noqa: B010
    return wrapper


# --- the request's transaction ---------------------------------------------------------------


async def _run_owned(
    database: Database,
    scope: Scope,
    receive: Receive,
    send: Send,
    app: Callable[[Scope, Receive, Send], Awaitable[None]],
) -> None:
    """Run the route inside one transaction it shares with its idempotency key, commit, and
    only then send the answer."""
    messages: list[Message] = []

    async def capture(message: Message) -> None:
        messages.append(message)

    async with database.sessionmaker() as session:
        # Rolled back by the session's close on any exit that does not commit: an exception,
        # a cancellation, a replay.
        await session.begin()
        owned = OwnedUnitOfWork(session)
        owned.attach(scope)
        try:
            await app(scope, receive, capture)
        except _Replay as replay:
            await session.rollback()
            await _send_stored(replay.stored, send, replayed=True)
            return
        response = _collect(messages)
        held: IdempotencyContext | None = scope.get(_HELD_SCOPE_KEY)
        keep = owned.work_kept and response is not None and response.status < 500
        savepoint = owned.savepoint
        if savepoint is not None and session.in_nested_transaction():
            if keep and not savepoint.is_active:
                # The route answered below 500 over work the database refused: never store or
                # send an answer for changes that did not happen.
                raise RuntimeError("the route answered after its unit of work had failed")
            if keep:
                await savepoint.commit()
            else:
                # Also after a failed flush, which leaves the savepoint inactive but current:
                # only its rollback makes the key's own transaction usable again.
                await savepoint.rollback()
        storable = response is not None and _storable(response, scope)
        if held is not None:
            if storable:
                assert response is not None
                await _complete(session, held, response)
            elif keep:
                # The work stays, its answer does not: the key must not outlive this request.
                await _release(session, held)
        if keep or (held is not None and storable):
            # A commit failure propagates: the caller gets a 500, never this response.
            await session.commit()
        else:
            await session.rollback()
    for message in messages:
        await send(message)


def _storable(response: _Stored, scope: Scope) -> bool:
    return (
        response.status < 500
        and response.status not in NOT_STORED_STATUSES
        and not scope.get(TRANSIENT_SCOPE_KEY, False)
    )


# --- storage -------------------------------------------------------------------------------


async def _claim(
    session: AsyncSession,
    context: IdempotencyContext,
    *,
    method: str,
    path: str,
    fingerprint: str,
    wait_seconds: float,
    retention: timedelta,
) -> _Stored | None:
    """Insert the key row into the request's transaction (``None``: this request owns it now),
    or return the answer stored under it."""
    # Database time throughout: the replicas' clocks never have to agree.
    expires = sa.func.now() + sa.bindparam(None, retention, type_=sa.Interval())
    fresh = {
        "method": method,
        "path": path,
        "request_hash": fingerprint,
        # Never visible as such to another request: the row commits with its answer.
        "state": _STATE_IN_PROGRESS,
        "response_status": None,
        "response_headers": None,
        "response_body": None,
        "created_at": sa.func.now(),
        "locked_until": None,
        "expires_at": expires,
    }
    where_key = (_t.scope == context.scope) & (_t.key == context.key)
    # Waiting on a concurrent duplicate is bounded; the business work after it is not, so the
    # setting goes back to what it was once the key is settled. The first attempt sets the
    # bound and inserts in one statement (one round trip fewer per request).
    prior: str | None = None
    try:
        # A row can vanish between the insert and the select (purged): going round settles it.
        for _ in range(5):
            if prior is None:
                first = (
                    await session.execute(
                        _CLAIM_BOUNDED,
                        {
                            "timeout": f"{max(1, int(wait_seconds * 1000))}ms",
                            "scope": context.scope,
                            "key": context.key,
                            "method": method,
                            "path": path,
                            "request_hash": fingerprint,
                            "state": _STATE_IN_PROGRESS,
                            "retention": retention,
                        },
                    )
                ).one()
                prior, claimed = first.prior, first.claimed
            else:
                inserted = await session.execute(
                    pg_insert(idempotency_keys)
                    .values(scope=context.scope, key=context.key, **fresh)
                    .on_conflict_do_nothing(index_elements=[_t.scope, _t.key])
                    .returning(_t.key)
                )
                claimed = inserted.scalar_one_or_none() is not None
            if claimed:
                break
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
            if not row.expired and row.request_hash != fingerprint:
                raise Problem(
                    422,
                    "idempotency_key_reused",
                    f"This {HEADER} was already used for a different request.",
                )
            # A committed in-progress row is a claim of the earlier two-transaction scheme
            # whose request died; past its lock it is taken over like an expired key.
            stale = row.state == _STATE_IN_PROGRESS and row.lock_lapsed
            if row.expired or stale:
                await session.execute(sa.update(idempotency_keys).where(where_key).values(**fresh))
                break
            if row.state == _STATE_COMPLETED:
                return _Stored(
                    status=row.response_status,
                    headers=[(name, value) for name, value in row.response_headers or []],
                    body=row.response_body or b"",
                )
            raise _in_progress()
        else:
            raise RuntimeError(f"could not claim idempotency key {context.key!r}")
    except DBAPIError as exc:
        # The transaction is aborted now; the route rolls it back.
        if getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
            raise _in_progress() from None
        raise
    assert prior is not None
    await session.execute(sa.select(sa.func.set_config("lock_timeout", prior, True)))
    return None


def _in_progress() -> Problem:
    return Conflict(
        "A request with this idempotency key is still being processed; retry shortly.",
        code="request_in_progress",
        headers={"Retry-After": "1"},
        transient=True,
    )


async def _complete(session: AsyncSession, context: IdempotencyContext, stored: _Stored) -> None:
    await session.execute(
        sa.update(idempotency_keys)
        .where((_t.scope == context.scope) & (_t.key == context.key))
        .values(
            state=_STATE_COMPLETED,
            response_status=stored.status,
            response_headers=[list(pair) for pair in stored.headers],
            response_body=stored.body,
            locked_until=None,
        )
    )


async def _release(session: AsyncSession, context: IdempotencyContext) -> None:
    await session.execute(
        sa.delete(idempotency_keys).where((_t.scope == context.scope) & (_t.key == context.key))
    )


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


async def _send_stored(stored: _Stored, send: Send, *, replayed: bool) -> None:
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in stored.headers]
    headers.append((b"content-length", str(len(stored.body)).encode()))
    if replayed:
        headers.append((REPLAYED_HEADER.lower().encode(), b"true"))
    await send({"type": "http.response.start", "status": stored.status, "headers": headers})
    await send({"type": "http.response.body", "body": stored.body, "more_body": False})
