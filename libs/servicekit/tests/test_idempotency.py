"""Idempotency keys through a real FastAPI app on a real PostgreSQL database."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

import httpx
import pytest
import pytest_asyncio
import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from pydantic import BaseModel
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from servicekit.auth import (
    Principal,
    StaticKeySource,
    TokenVerifier,
    generate_signing_key,
    public_jwks,
    require,
    require_store_access,
    sign_token,
)
from servicekit.db import Database
from servicekit.errors import IllegalState, NotFound, install_problem_handlers
from servicekit.idempotency import (
    Idempotency,
    IdempotencyContext,
    IdempotentRoute,
    purge_expired,
    request_fingerprint,
)
from servicekit.testing.plugin import CreateDatabase
from servicekit.testing.wait import eventually
from servicekit.uow import FailAfterCommit, SessionDep

ISSUER, AUDIENCE = "countertop-identity", "countertop"
KEY = generate_signing_key()
MERCHANT_A = uuid.uuid4()
MERCHANT_B = uuid.uuid4()
# One staff member per merchant unless a test says otherwise: keys are scoped to the caller.
STAFF = {MERCHANT_A: uuid.uuid4(), MERCHANT_B: uuid.uuid4()}

THINGS_DDL = "CREATE TABLE things (id uuid PRIMARY KEY, merchant_id uuid, name text NOT NULL)"
# Checked only at commit, so the route returns normally and the commit fails afterwards.
DEFERRED_DDL = (
    "CREATE TABLE deferred_things (name text, "
    "CONSTRAINT deferred_unique UNIQUE (name) DEFERRABLE INITIALLY DEFERRED)"
)


def token(
    merchant: uuid.UUID = MERCHANT_A,
    scopes: str = "things:write",
    subject: uuid.UUID | None = None,
    stores: list[uuid.UUID] | None = None,
) -> str:
    now = int(time.time())
    extra: dict[str, Any] = {} if stores is None else {"sto": [str(s) for s in stores]}
    return sign_token(
        KEY,
        {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": str(subject or STAFF[merchant]),
            "mid": str(merchant),
            "role": "cashier",
            "scp": scopes,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + 600,
            **extra,
        },
    )


def headers(key: str | None, merchant: uuid.UUID = MERCHANT_A, **extra: str) -> dict[str, str]:
    result = {"Authorization": f"Bearer {token(merchant)}", **extra}
    if key is not None:
        result["Idempotency-Key"] = key
    return result


def new_key() -> str:
    return str(uuid.uuid4())


class ThingIn(BaseModel):
    name: str
    delay: float = 0.0


class TicketIn(BaseModel):
    store_id: uuid.UUID
    name: str


@dataclass
class Harness:
    client: httpx.AsyncClient
    database: Database
    executions: Counter[str]
    flaky: dict[str, bool]
    hold: dict[str, asyncio.Event]

    async def rows(self, key: str) -> list[dict[str, Any]]:
        async with self.database.transaction() as session:
            result = await session.execute(
                sa.text("SELECT * FROM idempotency_keys WHERE key = :key"), {"key": key}
            )
            return [dict(row) for row in result.mappings()]

    async def things(self, name: str) -> int:
        async with self.database.transaction() as session:
            result = await session.execute(
                sa.text("SELECT count(*) FROM things WHERE name = :name"), {"name": name}
            )
            return int(result.scalar_one())


THINGS = Idempotency(required=True)


class _Model(DeclarativeBase):
    """The ORM side of the ``things`` table, for a route whose flush fails."""


class Thing(_Model):
    __tablename__ = "things"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str]


def started(h: Harness, name: str) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return h.executions[name] >= 1

    return probe


written = started


async def device_scope(request: Request) -> str:
    return "device:" + request.headers.get("x-device-id", "unknown")


def make_app(
    database: Database,
    executions: Counter[str],
    flaky: dict[str, bool],
    hold: dict[str, asyncio.Event],
) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.state.database = database
    app.state.token_verifier = TokenVerifier(StaticKeySource(public_jwks([KEY])), ISSUER, AUDIENCE)
    router = APIRouter(route_class=IdempotentRoute)

    @router.post(
        "/v1/things",
        status_code=201,
        dependencies=[Depends(require("things:write"))],
    )
    async def create_thing(
        body: ThingIn,
        session: SessionDep,
        response: Response,
        idempotency: Annotated[IdempotencyContext | None, Depends(THINGS)],
    ) -> dict[str, Any]:
        executions[body.name] += 1
        if body.delay:
            await asyncio.sleep(body.delay)
        thing_id = uuid.uuid4()
        await session.execute(
            sa.text("INSERT INTO things (id, name) VALUES (:id, :name)"),
            {"id": thing_id, "name": body.name},
        )
        response.headers["Location"] = f"/v1/things/{thing_id}"
        assert idempotency is not None
        return {"id": str(thing_id), "name": body.name, "key": idempotency.key}

    @router.post("/v1/flaky", status_code=201, dependencies=[Depends(Idempotency())])
    async def flaky_route(body: ThingIn, session: SessionDep) -> dict[str, str]:
        executions[body.name] += 1
        await session.execute(
            sa.text("INSERT INTO things (id, name) VALUES (:id, :name)"),
            {"id": uuid.uuid4(), "name": body.name},
        )
        if flaky.get(body.name):
            raise RuntimeError("the payment provider timed out")
        return {"name": body.name}

    @router.post("/v1/reserve", dependencies=[Depends(Idempotency())])
    async def reserve(body: ThingIn) -> None:
        executions[body.name] += 1
        raise IllegalState("out_of_stock", f"No {body.name} left.")

    @router.post("/v1/deferred", status_code=201, dependencies=[Depends(Idempotency())])
    async def deferred(body: ThingIn, session: SessionDep) -> dict[str, str]:
        executions[body.name] += 1
        for _ in range(2):
            await session.execute(
                sa.text("INSERT INTO deferred_things (name) VALUES (:name)"), {"name": body.name}
            )
        return {"name": body.name}

    @router.post(
        "/v1/devices/heartbeat",
        status_code=202,
        dependencies=[Depends(Idempotency(scope=device_scope))],
    )
    async def heartbeat(body: ThingIn) -> dict[str, str]:
        executions[body.name] += 1
        return {"name": body.name}

    @router.post(
        "/v1/impatient",
        status_code=201,
        dependencies=[Depends(Idempotency(required=True, wait_seconds=0.2))],
    )
    async def impatient(body: ThingIn, session: SessionDep) -> dict[str, str]:
        executions[body.name] += 1
        await session.execute(
            sa.text("INSERT INTO things (id, name) VALUES (:id, :name)"),
            {"id": uuid.uuid4(), "name": body.name},
        )
        if body.name in hold:
            await hold[body.name].wait()
        return {"name": body.name}

    @router.post("/v1/held", status_code=201, dependencies=[Depends(THINGS)])
    async def held(body: ThingIn, session: SessionDep) -> dict[str, str]:
        await session.execute(
            sa.text("INSERT INTO things (id, name) VALUES (:id, :name)"),
            {"id": uuid.uuid4(), "name": body.name},
        )
        executions[body.name] += 1
        if body.name in hold:
            await hold[body.name].wait()
        if flaky.pop(body.name, False):  # fails once
            raise RuntimeError("the till lost power")
        return {"name": body.name}

    @router.post(
        "/v1/stores/{store_id}/things",
        status_code=201,
        dependencies=[Depends(THINGS)],
    )
    async def store_thing(
        store_id: uuid.UUID,
        body: ThingIn,
        principal: Annotated[Principal, Depends(require("things:write"))],
        session: SessionDep,
    ) -> dict[str, str]:
        require_store_access(principal, store_id)
        executions[body.name] += 1
        await session.execute(
            sa.text("INSERT INTO things (id, name) VALUES (:id, :name)"),
            {"id": uuid.uuid4(), "name": body.name},
        )
        return {"store_id": str(store_id), "name": body.name}

    @router.post("/v1/tickets", status_code=201, dependencies=[Depends(THINGS)])
    async def ticket(
        body: TicketIn,
        principal: Annotated[Principal, Depends(require("things:write"))],
        session: SessionDep,
    ) -> dict[str, str]:
        require_store_access(principal, body.store_id)
        executions[body.name] += 1
        return {"store_id": str(body.store_id), "name": body.name}

    @router.post("/v1/twice", status_code=201, dependencies=[Depends(THINGS)])
    async def twice(body: ThingIn, session: SessionDep) -> dict[str, str]:
        """Inserts the same id twice: the database refuses, the route answers a 409."""
        executions[body.name] += 1
        thing_id = uuid.uuid4()
        try:
            for _ in range(2):
                await session.execute(
                    sa.text("INSERT INTO things (id, name) VALUES (:id, :name)"),
                    {"id": thing_id, "name": body.name},
                )
        except sa.exc.IntegrityError:
            raise IllegalState("thing_exists", "It is there already.") from None
        return {"name": body.name}

    @router.post("/v1/flushed", status_code=201, dependencies=[Depends(THINGS)])
    async def flushed(body: ThingIn, session: SessionDep) -> dict[str, str]:
        """The ORM's flush meets a row already there: the route answers a 409."""
        executions[body.name] += 1
        thing_id = uuid.uuid4()
        await session.execute(
            sa.text("INSERT INTO things (id, name) VALUES (:id, :name)"),
            {"id": thing_id, "name": body.name},
        )
        session.add(Thing(id=thing_id, name=body.name))
        try:
            await session.flush()
        except sa.exc.IntegrityError:
            raise IllegalState("thing_exists", "It is there already.") from None
        return {"name": body.name}

    @router.post("/v1/lagging", status_code=201, dependencies=[Depends(THINGS)])
    async def lagging(body: ThingIn, session: SessionDep) -> dict[str, str]:
        executions[body.name] += 1
        if not flaky.get(body.name):
            raise NotFound("Order not known yet.", code="order_not_found", transient=True)
        return {"name": body.name}

    @router.post("/v1/lock-timeout", status_code=201, dependencies=[Depends(THINGS)])
    async def lock_timeout(body: ThingIn, session: SessionDep) -> dict[str, str]:
        """What bounds the business work's lock waits once the key is claimed."""
        executions[body.name] += 1
        setting = await session.scalar(sa.text("SELECT current_setting('lock_timeout')"))
        return {"name": body.name, "lock_timeout": str(setting)}

    @router.post("/v1/burn", dependencies=[Depends(THINGS)])
    async def burn(body: ThingIn, session: SessionDep) -> dict[str, str]:
        executions[body.name] += 1
        await session.execute(
            sa.text("INSERT INTO things (id, name) VALUES (:id, :name)"),
            {"id": uuid.uuid4(), "name": body.name},
        )
        raise FailAfterCommit(IllegalState("code_burnt", "The code was used up."))

    @router.post("/v1/refused", dependencies=[Depends(THINGS)])
    async def refused(body: ThingIn, session: SessionDep) -> dict[str, str]:
        executions[body.name] += 1
        await session.execute(
            sa.text("INSERT INTO things (id, name) VALUES (:id, :name)"),
            {"id": uuid.uuid4(), "name": body.name},
        )
        raise IllegalState("out_of_stock", f"No {body.name} left.")

    @router.get("/v1/things")
    async def list_things() -> list[str]:
        return []

    plain = APIRouter()

    @plain.post("/v1/misconfigured", dependencies=[Depends(Idempotency())])
    async def misconfigured() -> dict[str, str]:
        return {}

    app.include_router(router)
    app.include_router(plain)
    return app


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def database(create_database: CreateDatabase) -> AsyncIterator[Database]:
    database = Database(await create_database("idempotency"), pool_size=10)
    async with database.engine.begin() as conn:
        await conn.exec_driver_sql(THINGS_DDL)
        await conn.exec_driver_sql(DEFERRED_DDL)
    yield database
    await database.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def harness(database: Database) -> AsyncIterator[Harness]:
    executions: Counter[str] = Counter()
    flaky: dict[str, bool] = {}
    hold: dict[str, asyncio.Event] = {}
    transport = httpx.ASGITransport(app=make_app(database, executions, flaky, hold))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Harness(client, database, executions, flaky, hold)


def body(name: str, **fields: Any) -> bytes:
    return json.dumps({"name": name, **fields}).encode()


JSON = {"content-type": "application/json"}


async def post(
    h: Harness, path: str, content: bytes, key: str | None, merchant: uuid.UUID = MERCHANT_A
) -> httpx.Response:
    return await h.client.post(path, content=content, headers=headers(key, merchant, **JSON))


# --- the basic contract --------------------------------------------------------------------


async def test_same_key_same_body_replays_the_original_response(harness: Harness) -> None:
    key, name = new_key(), f"soup-{uuid.uuid4().hex[:6]}"
    first = await post(harness, "/v1/things", body(name), key)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    assert first.json()["key"] == key

    second = await post(harness, "/v1/things", body(name), key)
    assert second.status_code == 201
    assert second.headers["idempotent-replayed"] == "true"
    assert second.content == first.content
    assert second.headers["location"] == first.headers["location"]
    assert second.headers["content-type"] == first.headers["content-type"]

    assert harness.executions[name] == 1
    assert await harness.things(name) == 1
    [row] = await harness.rows(key)
    assert row["state"] == "completed"
    assert row["scope"] == f"merchant:{MERCHANT_A}:staff:{STAFF[MERCHANT_A]}"
    assert row["response_status"] == 201
    assert row["locked_until"] is None
    assert timedelta(hours=23) < row["expires_at"] - row["created_at"] <= timedelta(hours=24)


async def test_same_key_different_body_is_422(harness: Harness) -> None:
    key, name = new_key(), f"tea-{uuid.uuid4().hex[:6]}"
    assert (await post(harness, "/v1/things", body(name), key)).status_code == 201
    reused = await post(harness, "/v1/things", body(name + "-other"), key)
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"
    # Another endpoint under the same key is a different request too.
    elsewhere = await post(harness, "/v1/reserve", body(name), key)
    assert elsewhere.status_code == 422
    assert harness.executions[name] == 1
    assert harness.executions[name + "-other"] == 0


async def test_key_required(harness: Harness) -> None:
    response = await post(harness, "/v1/things", body("no-key"), None)
    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_required"
    assert harness.executions["no-key"] == 0


@pytest.mark.parametrize("key", [b"x" * 256, b"", b"   ", "caf\u00e9".encode(), b"a\x01b"])
async def test_invalid_keys(harness: Harness, key: bytes) -> None:
    raw = [(name.encode(), value.encode()) for name, value in {**headers(None), **JSON}.items()]
    response = await harness.client.post(
        "/v1/things", content=body("bad-key"), headers=[*raw, (b"Idempotency-Key", key)]
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_idempotency_key"
    assert harness.executions["bad-key"] == 0


async def test_longest_key_is_accepted(harness: Harness) -> None:
    key = "k" * 255
    response = await post(harness, "/v1/things", body("long-key"), key)
    assert response.status_code == 201


async def test_optional_key_absent_runs_every_time(harness: Harness) -> None:
    name = f"free-{uuid.uuid4().hex[:6]}"
    for _ in range(2):
        assert (await post(harness, "/v1/flaky", body(name), None)).status_code == 201
    assert harness.executions[name] == 2


async def test_unauthenticated_request_claims_nothing(harness: Harness) -> None:
    key = new_key()
    response = await harness.client.post(
        "/v1/things", content=body("anon"), headers={"Idempotency-Key": key, **JSON}
    )
    assert response.status_code == 401
    assert await harness.rows(key) == []


# --- tenants -------------------------------------------------------------------------------


async def test_two_tenants_with_the_same_key_do_not_collide(harness: Harness) -> None:
    key, name = new_key(), f"bread-{uuid.uuid4().hex[:6]}"
    a = await post(harness, "/v1/things", body(name), key, MERCHANT_A)
    b = await post(harness, "/v1/things", body(name), key, MERCHANT_B)
    assert a.status_code == b.status_code == 201
    assert "idempotent-replayed" not in b.headers
    assert a.json()["id"] != b.json()["id"]
    assert harness.executions[name] == 2
    assert {row["scope"] for row in await harness.rows(key)} == {
        f"merchant:{MERCHANT_A}:staff:{STAFF[MERCHANT_A]}",
        f"merchant:{MERCHANT_B}:staff:{STAFF[MERCHANT_B]}",
    }


async def test_caller_supplied_scope(harness: Harness) -> None:
    key, name = new_key(), f"beat-{uuid.uuid4().hex[:6]}"

    async def beat(device: str) -> httpx.Response:
        return await harness.client.post(
            "/v1/devices/heartbeat",
            content=body(name),
            headers={"Idempotency-Key": key, "X-Device-Id": device, **JSON},
        )

    assert (await beat("pos-1")).status_code == 202
    replay = await beat("pos-1")
    assert replay.status_code == 202
    assert replay.headers["idempotent-replayed"] == "true"
    assert (await beat("pos-2")).status_code == 202
    assert harness.executions[name] == 2


# --- concurrency ---------------------------------------------------------------------------


async def test_concurrent_requests_with_one_key_execute_once(harness: Harness) -> None:
    """The duplicates wait on the first request's uncommitted key row, then replay its
    answer."""
    key, name = new_key(), f"rice-{uuid.uuid4().hex[:6]}"
    content = body(name, delay=0.3)
    responses = await asyncio.gather(*(post(harness, "/v1/things", content, key) for _ in range(8)))
    assert [r.status_code for r in responses] == [201] * 8
    originals = [r for r in responses if "idempotent-replayed" not in r.headers]
    assert len(originals) == 1
    for response in responses:
        assert response.content == originals[0].content
    assert harness.executions[name] == 1
    assert await harness.things(name) == 1


async def test_a_duplicate_waits_only_so_long(harness: Harness) -> None:
    key, name = new_key(), f"slow-{uuid.uuid4().hex[:6]}"
    content = body(name)
    harness.hold[name] = asyncio.Event()
    first = asyncio.create_task(post(harness, "/v1/impatient", content, key))
    await eventually(started(harness, name))
    second = await post(harness, "/v1/impatient", content, key)
    assert second.status_code == 409
    assert second.json()["code"] == "request_in_progress"
    assert second.headers["retry-after"] == "1"
    assert await harness.rows(key) == []  # the first one's row is not committed yet
    harness.hold.pop(name).set()
    assert (await first).status_code == 201
    # Once the first has finished, a retry gets its response.
    retry = await post(harness, "/v1/impatient", content, key)
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.content == (await first).content
    assert harness.executions[name] == 1


async def test_concurrent_requests_with_different_keys_all_execute(harness: Harness) -> None:
    name = f"noodle-{uuid.uuid4().hex[:6]}"
    responses = await asyncio.gather(
        *(post(harness, "/v1/things", body(name), new_key()) for _ in range(6))
    )
    assert [r.status_code for r in responses] == [201] * 6
    assert harness.executions[name] == 6


# --- failures ------------------------------------------------------------------------------


async def test_a_5xx_does_not_poison_the_key(harness: Harness) -> None:
    key, name = new_key(), f"card-{uuid.uuid4().hex[:6]}"
    harness.flaky[name] = True
    failed = await post(harness, "/v1/flaky", body(name), key)
    assert failed.status_code == 500
    assert failed.json()["code"] == "internal_error"
    assert await harness.rows(key) == []
    assert await harness.things(name) == 0  # the failed attempt rolled back

    harness.flaky[name] = False
    retried = await post(harness, "/v1/flaky", body(name), key)
    assert retried.status_code == 201
    assert "idempotent-replayed" not in retried.headers
    assert harness.executions[name] == 2
    assert await harness.things(name) == 1


async def test_a_failed_commit_is_neither_stored_nor_answered_as_success(
    harness: Harness,
) -> None:
    key, name = new_key(), f"dup-{uuid.uuid4().hex[:6]}"
    response = await post(harness, "/v1/deferred", body(name), key)
    assert response.status_code == 500
    assert await harness.rows(key) == []
    again = await post(harness, "/v1/deferred", body(name), key)
    assert again.status_code == 500
    assert harness.executions[name] == 2


async def test_4xx_answers_are_stored_and_replayed(harness: Harness) -> None:
    key, name = new_key(), f"pie-{uuid.uuid4().hex[:6]}"
    first = await post(harness, "/v1/reserve", body(name), key)
    assert first.status_code == 409
    assert first.json()["code"] == "out_of_stock"
    second = await post(harness, "/v1/reserve", body(name), key)
    assert second.status_code == 409
    assert second.headers["idempotent-replayed"] == "true"
    assert second.headers["content-type"] == "application/problem+json"
    assert second.content == first.content
    assert harness.executions[name] == 1


async def test_request_validation_failure_is_stored_too(harness: Harness) -> None:
    key = new_key()
    content = json.dumps({"name": 5}).encode()
    first = await post(harness, "/v1/things", content, key)
    assert first.status_code == 422
    second = await post(harness, "/v1/things", content, key)
    assert second.headers["idempotent-replayed"] == "true"
    assert second.content == first.content


async def test_a_403_is_not_stored(harness: Harness) -> None:
    key, name = new_key(), f"cake-{uuid.uuid4().hex[:6]}"
    denied = await harness.client.post(
        "/v1/things",
        content=body(name),
        headers={
            "Authorization": f"Bearer {token(scopes='things:read')}",
            "Idempotency-Key": key,
            **JSON,
        },
    )
    assert denied.status_code == 403
    assert await harness.rows(key) == []
    allowed = await post(harness, "/v1/things", body(name), key)
    assert allowed.status_code == 201
    assert harness.executions[name] == 1


async def insert_legacy_claim(
    database: Database,
    key: str,
    content: bytes,
    *,
    locked_for: timedelta,
    expires_in: timedelta = timedelta(days=1),
) -> None:
    """A committed in-progress claim as the earlier two-transaction scheme left them."""
    async with database.transaction() as session:
        await session.execute(
            sa.text(
                "INSERT INTO idempotency_keys (scope, key, method, path, request_hash, state,"
                " locked_until, expires_at) VALUES (:scope, :key, 'POST', '/v1/things', :hash,"
                " 'in_progress', now() + :locked, now() + :expires)"
            ),
            {
                "scope": f"merchant:{MERCHANT_A}:staff:{STAFF[MERCHANT_A]}",
                "key": key,
                "hash": request_fingerprint("POST", "/v1/things", "", content),
                "locked": locked_for,
                "expires": expires_in,
            },
        )


async def test_a_live_legacy_claim_is_409(harness: Harness) -> None:
    key, name = new_key(), f"jam-{uuid.uuid4().hex[:6]}"
    await insert_legacy_claim(harness.database, key, body(name), locked_for=timedelta(minutes=1))
    response = await post(harness, "/v1/things", body(name), key)
    assert response.status_code == 409
    assert response.json()["code"] == "request_in_progress"
    assert harness.executions[name] == 0
    assert (await post(harness, "/v1/things", body(name), key)).status_code == 409


async def test_a_lapsed_legacy_claim_is_taken_over(harness: Harness) -> None:
    key, name = new_key(), f"fig-{uuid.uuid4().hex[:6]}"
    await insert_legacy_claim(harness.database, key, body(name), locked_for=timedelta(seconds=-1))
    assert (await post(harness, "/v1/things", body(name + "-x"), key)).status_code == 422
    response = await post(harness, "/v1/things", body(name), key)
    assert response.status_code == 201
    assert harness.executions[name] == 1
    [row] = await harness.rows(key)
    assert row["state"] == "completed"


async def test_an_expired_key_can_be_used_again(harness: Harness) -> None:
    key, name = new_key(), f"plum-{uuid.uuid4().hex[:6]}"
    await insert_legacy_claim(
        harness.database,
        key,
        body("something else"),
        locked_for=timedelta(days=-2),
        expires_in=timedelta(hours=-1),
    )
    response = await post(harness, "/v1/things", body(name), key)
    assert response.status_code == 201
    [row] = await harness.rows(key)
    assert row["state"] == "completed"
    assert row["expires_at"] - row["created_at"] == timedelta(hours=24)


# --- a request that dies half-way ----------------------------------------------------------


async def test_a_request_killed_after_its_write_is_retryable_at_once(harness: Harness) -> None:
    """The client (or the process) goes away after the business write: the write and the key
    row roll back together, so the retry neither waits for a lock nor finds half a request."""
    key, name = new_key(), f"killed-{uuid.uuid4().hex[:6]}"
    harness.hold[name] = asyncio.Event()
    first = asyncio.create_task(post(harness, "/v1/held", body(name), key))
    await eventually(written(harness, name))
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await harness.things(name) == 0
    assert await harness.rows(key) == []

    harness.hold.pop(name)
    retried = await post(harness, "/v1/held", body(name), key)
    assert retried.status_code == 201
    assert "idempotent-replayed" not in retried.headers
    assert harness.executions[name] == 2
    assert await harness.things(name) == 1
    replay = await post(harness, "/v1/held", body(name), key)
    assert replay.headers["idempotent-replayed"] == "true"
    assert harness.executions[name] == 2


async def test_a_waiting_duplicate_takes_over_when_the_first_fails(harness: Harness) -> None:
    key, name = new_key(), f"relay-{uuid.uuid4().hex[:6]}"
    harness.hold[name] = asyncio.Event()
    harness.flaky[name] = True
    first = asyncio.create_task(post(harness, "/v1/held", body(name), key))
    await eventually(written(harness, name))
    second = asyncio.create_task(post(harness, "/v1/held", body(name), key))

    async def waiting() -> bool:
        async with harness.database.transaction() as session:
            result = await session.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            return int(result.scalar_one()) >= 1

    await eventually(waiting)
    harness.hold.pop(name).set()
    assert (await first).status_code == 500
    taken_over = await second
    assert taken_over.status_code == 201
    assert "idempotent-replayed" not in taken_over.headers
    assert harness.executions[name] == 2
    assert await harness.things(name) == 1


async def test_a_crash_after_the_write_leaves_nothing_behind(harness: Harness) -> None:
    key, name = new_key(), f"crash-{uuid.uuid4().hex[:6]}"
    harness.flaky[name] = True
    assert (await post(harness, "/v1/flaky", body(name), key)).status_code == 500
    harness.flaky[name] = False
    assert (await post(harness, "/v1/flaky", body(name), key)).status_code == 201
    assert await harness.things(name) == 1


async def test_one_commit_per_request(harness: Harness) -> None:
    """Key, business change and answer commit together: one commit where the claim-beside
    scheme needed three (claim, work, answer)."""
    commits: list[object] = []

    def count(connection: object) -> None:
        commits.append(connection)

    sa.event.listen(harness.database.engine.sync_engine, "commit", count)
    try:
        name = f"one-{uuid.uuid4().hex[:6]}"
        assert (await post(harness, "/v1/things", body(name), new_key())).status_code == 201
        assert len(commits) == 1
        commits.clear()
        assert (await post(harness, "/v1/reserve", body(name), new_key())).status_code == 409
        assert len(commits) == 1
    finally:
        sa.event.remove(harness.database.engine.sync_engine, "commit", count)


# --- rights before replay ------------------------------------------------------------------


async def test_a_colleague_reusing_a_key_gets_a_fresh_answer(harness: Harness) -> None:
    key, name = new_key(), f"mate-{uuid.uuid4().hex[:6]}"
    first = await post(harness, "/v1/things", body(name), key)
    assert first.status_code == 201
    colleague = token(subject=uuid.uuid4())
    other = await harness.client.post(
        "/v1/things",
        content=body(name),
        headers={"Authorization": f"Bearer {colleague}", "Idempotency-Key": key, **JSON},
    )
    assert other.status_code == 201
    assert "idempotent-replayed" not in other.headers
    assert other.json()["id"] != first.json()["id"]


async def test_a_caller_without_the_permission_never_sees_the_stored_answer(
    harness: Harness,
) -> None:
    key, name = new_key(), f"perm-{uuid.uuid4().hex[:6]}"
    assert (await post(harness, "/v1/things", body(name), key)).status_code == 201
    # The same staff member, whose new token lost the permission.
    for subject in (STAFF[MERCHANT_A], uuid.uuid4()):
        denied = await harness.client.post(
            "/v1/things",
            content=body(name),
            headers={
                "Authorization": f"Bearer {token(scopes='things:read', subject=subject)}",
                "Idempotency-Key": key,
                **JSON,
            },
        )
        assert denied.status_code == 403
        assert "idempotent-replayed" not in denied.headers
        assert denied.json()["code"] == "forbidden"
    assert harness.executions[name] == 1


async def test_a_cashier_of_another_store_gets_a_fresh_404(harness: Harness) -> None:
    """The HQ admin receives goods into S2; a cashier of S1 resends it with the same key."""
    key, name = new_key(), f"stock-{uuid.uuid4().hex[:6]}"
    s1, s2 = uuid.uuid4(), uuid.uuid4()
    hq = await harness.client.post(
        f"/v1/stores/{s2}/things", content=body(name), headers=headers(key, **JSON)
    )
    assert hq.status_code == 201
    for subject in (uuid.uuid4(), STAFF[MERCHANT_A]):
        cashier = token(subject=subject, stores=[s1])
        response = await harness.client.post(
            f"/v1/stores/{s2}/things",
            content=body(name),
            headers={"Authorization": f"Bearer {cashier}", "Idempotency-Key": key, **JSON},
        )
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
        assert "idempotent-replayed" not in response.headers
    assert harness.executions[name] == 1


async def test_a_store_named_in_the_body_is_checked_before_replay(harness: Harness) -> None:
    key, name = new_key(), f"ticket-{uuid.uuid4().hex[:6]}"
    s1, s2 = uuid.uuid4(), uuid.uuid4()
    content = json.dumps({"store_id": str(s2), "name": name}).encode()
    assert (await post(harness, "/v1/tickets", content, key)).status_code == 201
    replay = await post(harness, "/v1/tickets", content, key)
    assert replay.headers["idempotent-replayed"] == "true"
    narrowed = token(stores=[s1])  # the same staff member, now limited to S1
    response = await harness.client.post(
        "/v1/tickets",
        content=content,
        headers={"Authorization": f"Bearer {narrowed}", "Idempotency-Key": key, **JSON},
    )
    assert response.status_code == 404
    assert "idempotent-replayed" not in response.headers
    assert harness.executions[name] == 1


# --- what is stored ------------------------------------------------------------------------


async def test_a_transient_problem_is_not_stored(harness: Harness) -> None:
    key, name = new_key(), f"lag-{uuid.uuid4().hex[:6]}"
    first = await post(harness, "/v1/lagging", body(name), key)
    assert first.status_code == 404
    assert first.json()["code"] == "order_not_found"
    assert await harness.rows(key) == []
    harness.flaky[name] = True  # the replica has caught up
    second = await post(harness, "/v1/lagging", body(name), key)
    assert second.status_code == 201
    assert harness.executions[name] == 2


async def test_a_refusal_after_a_database_error_is_stored(harness: Harness) -> None:
    """The failed statement aborted the transaction; rolling back to the savepoint recovers it
    so the refusal can still be stored."""
    key, name = new_key(), f"twice-{uuid.uuid4().hex[:6]}"
    first = await post(harness, "/v1/twice", body(name), key)
    assert first.status_code == 409
    assert first.json()["code"] == "thing_exists"
    assert await harness.things(name) == 0
    second = await post(harness, "/v1/twice", body(name), key)
    assert second.headers["idempotent-replayed"] == "true"
    assert harness.executions[name] == 1


async def test_a_refusal_after_a_failed_flush_is_stored(harness: Harness) -> None:
    """A failed ORM flush leaves the savepoint inactive yet current; the refusal is still
    stored once it is rolled back."""
    key, name = new_key(), f"flushed-{uuid.uuid4().hex[:6]}"
    first = await post(harness, "/v1/flushed", body(name), key)
    assert first.status_code == 409, first.text
    assert await harness.things(name) == 0
    second = await post(harness, "/v1/flushed", body(name), key)
    assert second.headers["idempotent-replayed"] == "true"
    assert second.content == first.content
    assert harness.executions[name] == 1


async def test_fail_after_commit_keeps_the_work_and_stores_the_answer(harness: Harness) -> None:
    key, name = new_key(), f"burnt-{uuid.uuid4().hex[:6]}"
    first = await post(harness, "/v1/burn", body(name), key)
    assert first.status_code == 409
    assert await harness.things(name) == 1
    second = await post(harness, "/v1/burn", body(name), key)
    assert second.headers["idempotent-replayed"] == "true"
    assert second.content == first.content
    assert harness.executions[name] == 1


async def test_a_refusal_rolls_back_its_work_but_keeps_its_answer(harness: Harness) -> None:
    key, name = new_key(), f"half-{uuid.uuid4().hex[:6]}"
    first = await post(harness, "/v1/refused", body(name), key)
    assert first.status_code == 409
    assert await harness.things(name) == 0
    [row] = await harness.rows(key)
    assert row["response_status"] == 409
    second = await post(harness, "/v1/refused", body(name), key)
    assert second.headers["idempotent-replayed"] == "true"
    assert harness.executions[name] == 1


# --- wiring and maintenance ----------------------------------------------------------------


async def test_the_dependency_outside_an_idempotent_router_fails_loudly(
    harness: Harness,
) -> None:
    response = await post(harness, "/v1/misconfigured", b"{}", new_key())
    assert response.status_code == 500


async def test_get_routes_on_the_router_are_untouched(harness: Harness) -> None:
    response = await harness.client.get("/v1/things", headers=headers(new_key()))
    assert response.status_code == 200
    response = await harness.client.put("/v1/things", headers=headers(new_key()))
    assert response.status_code == 405


async def test_openapi_documents_the_header(harness: Harness) -> None:
    schema = (await harness.client.get("/openapi.json")).json()
    parameters = schema["paths"]["/v1/things"]["post"]["parameters"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in parameters)


async def test_purge_expired(database: Database) -> None:
    scope = f"purge-{uuid.uuid4().hex[:6]}"
    async with database.transaction() as session:
        for i, expires in enumerate([-7200, -3600, -60, 3600]):
            await session.execute(
                sa.text(
                    "INSERT INTO idempotency_keys (scope, key, method, path, request_hash,"
                    " state, expires_at) VALUES (:scope, :key, 'POST', '/x', 'h', 'completed',"
                    " now() + :expires)"
                ),
                {"scope": scope, "key": str(i), "expires": timedelta(seconds=expires)},
            )
    async with database.transaction() as session:
        assert await purge_expired(session, limit=2) == 2
    async with database.transaction() as session:
        assert await purge_expired(session) >= 1
    async with database.transaction() as session:
        left = await session.execute(
            sa.text("SELECT key FROM idempotency_keys WHERE scope = :scope"), {"scope": scope}
        )
        assert list(left.scalars()) == ["3"]


async def test_the_business_work_runs_without_the_keys_lock_timeout(harness: Harness) -> None:
    """The wait on a concurrent duplicate's key is bounded; the work after the claim is not."""
    name = f"bounded-{uuid.uuid4().hex[:6]}"
    response = await post(harness, "/v1/lock-timeout", body(name), new_key())
    assert response.status_code == 201, response.text
    assert response.json()["lock_timeout"] == "0"
