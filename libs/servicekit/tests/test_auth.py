"""Token verification, the JWKS cache, the FastAPI dependencies and tenant scoping."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
import pytest
import pytest_asyncio
import sqlalchemy as sa
from fastapi import Depends, FastAPI
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.orm import DeclarativeBase

from servicekit import auth as auth_module
from servicekit.auth import (
    JwksKeySource,
    Principal,
    PrincipalDep,
    Role,
    SigningKey,
    StaticKeySource,
    TokenVerifier,
    UnknownKeyError,
    generate_signing_key,
    principal_claims,
    public_jwks,
    require,
    require_any,
    require_store_access,
    scoped,
    scoped_to_merchant,
    sign_token,
)
from servicekit.db import Database
from servicekit.errors import Problem, install_problem_handlers
from servicekit.testing.plugin import CreateDatabase

ISSUER = "countertop-identity"
AUDIENCE = "countertop"
MERCHANT = uuid.uuid4()
OTHER_MERCHANT = uuid.uuid4()
STORE_A = uuid.uuid4()
STORE_B = uuid.uuid4()
STAFF = uuid.uuid4()

ED_KEY = generate_signing_key("EdDSA")
EC_KEY = generate_signing_key("ES256")
STRANGER_KEY = generate_signing_key("EdDSA")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(STAFF),
        "mid": str(MERCHANT),
        "role": "store_manager",
        "scp": "orders:read orders:write",
        "sto": [str(STORE_A)],
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def token(key: SigningKey = ED_KEY, **overrides: Any) -> str:
    return sign_token(key, claims(**overrides))


def make_app(verifier: TokenVerifier) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.state.token_verifier = verifier

    @app.get("/me")
    async def me(principal: PrincipalDep) -> dict[str, Any]:
        return {
            "subject": str(principal.subject),
            "merchant_id": str(principal.merchant_id),
            "role": principal.role.value,
            "scopes": sorted(principal.scopes),
            "store_ids": None
            if principal.store_ids is None
            else sorted(str(s) for s in principal.store_ids),
        }

    @app.post("/orders/{order_id}/refund")
    async def refund(
        order_id: str, principal: Annotated[Principal, Depends(require("orders:refund"))]
    ) -> dict[str, str]:
        return {"refunded": order_id}

    @app.post("/members", dependencies=[Depends(require_any("members:register", "members:write"))])
    async def register() -> dict[str, str]:
        return {"registered": "yes"}

    @app.get("/orders", dependencies=[Depends(require("orders:read"))])
    async def orders() -> list[str]:
        return []

    @app.get("/stores/{store_id}")
    async def store(store_id: uuid.UUID, principal: PrincipalDep) -> dict[str, str]:
        require_store_access(principal, store_id)
        return {"store_id": str(store_id)}

    return app


@pytest_asyncio.fixture(loop_scope="session")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    verifier = TokenVerifier(StaticKeySource(public_jwks([ED_KEY, EC_KEY])), ISSUER, AUDIENCE)
    transport = httpx.ASGITransport(app=make_app(verifier))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def assert_unauthorized(response: httpx.Response, code: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert response.headers["www-authenticate"].startswith("Bearer")


# --- verification --------------------------------------------------------------------------


@pytest.mark.parametrize("key", [ED_KEY, EC_KEY], ids=["EdDSA", "ES256"])
async def test_valid_token(client: httpx.AsyncClient, key: SigningKey) -> None:
    response = await client.get("/me", headers=bearer(token(key)))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "subject": str(STAFF),
        "merchant_id": str(MERCHANT),
        "role": "store_manager",
        "scopes": ["orders:read", "orders:write"],
        "store_ids": [str(STORE_A)],
    }


async def test_absent_store_claim_means_every_store(client: httpx.AsyncClient) -> None:
    response = await client.get("/me", headers=bearer(token(sto=None, role="hq_admin")))
    assert response.json()["store_ids"] is None


async def test_missing_or_foreign_scheme(client: httpx.AsyncClient) -> None:
    assert_unauthorized(await client.get("/me"), "unauthorized")
    assert_unauthorized(
        await client.get("/me", headers={"Authorization": "Basic dXNlcjpwYXNz"}), "unauthorized"
    )
    assert_unauthorized(
        await client.get("/me", headers={"Authorization": "Bearer "}), "unauthorized"
    )


async def test_expired_token(client: httpx.AsyncClient) -> None:
    now = int(time.time())
    response = await client.get("/me", headers=bearer(token(iat=now - 900, exp=now - 300)))
    assert_unauthorized(response, "token_expired")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_expiry_within_leeway_is_accepted(client: httpx.AsyncClient) -> None:
    now = int(time.time())
    response = await client.get("/me", headers=bearer(token(iat=now - 900, exp=now - 5)))
    assert response.status_code == 200


async def test_tampered_payload(client: httpx.AsyncClient) -> None:
    header, _, signature = token().split(".")
    forged = b64(json.dumps(claims(role="hq_admin", sto=None)).encode())
    response = await client.get("/me", headers=bearer(f"{header}.{forged}.{signature}"))
    assert_unauthorized(response, "invalid_token")


async def test_tampered_signature(client: httpx.AsyncClient) -> None:
    header, payload, signature = token().split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[0] ^= 0x01
    response = await client.get("/me", headers=bearer(f"{header}.{payload}.{b64(bytes(raw))}"))
    assert_unauthorized(response, "invalid_token")


@pytest.mark.parametrize(
    "overrides",
    [
        {"iss": "someone-else"},
        {"aud": "another-audience"},
        {"aud": None},
        {"mid": None},
        {"mid": "not-a-uuid"},
        {"sub": None},
        {"jti": None},
        {"exp": None},
        {"role": "superuser"},
        {"scp": ["orders:read"]},
        {"sto": "all"},
        {"nbf": int(time.time()) + 3600},
        {"iat": int(time.time()) + 3600},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
async def test_bad_claims(client: httpx.AsyncClient, overrides: dict[str, Any]) -> None:
    response = await client.get("/me", headers=bearer(token(**overrides)))
    assert_unauthorized(response, "invalid_token")


async def test_audience_list_containing_ours(client: httpx.AsyncClient) -> None:
    response = await client.get("/me", headers=bearer(token(aud=["pos", AUDIENCE])))
    assert response.status_code == 200


async def test_alg_none(client: httpx.AsyncClient) -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": ED_KEY.kid}).encode())
    payload = b64(json.dumps(claims()).encode())
    for value in (f"{header}.{payload}.", f"{header}.{payload}"):
        assert_unauthorized(await client.get("/me", headers=bearer(value)), "invalid_token")


async def test_hs256_signed_with_the_public_key(client: httpx.AsyncClient) -> None:
    """The classic confusion attack: HMAC keyed with the verifier's own public key."""
    public = public_jwks([ED_KEY])["keys"][0]
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": ED_KEY.kid}).encode())
    payload = b64(json.dumps(claims(role="hq_admin")).encode())
    signing_input = f"{header}.{payload}".encode()
    for secret in (
        json.dumps(public).encode(),
        ED_KEY.as_pem(private=False),
        base64.urlsafe_b64decode(public["x"] + "=="),
    ):
        signature = b64(hmac.new(secret, signing_input, hashlib.sha256).digest())
        response = await client.get("/me", headers=bearer(f"{header}.{payload}.{signature}"))
        assert_unauthorized(response, "invalid_token")


async def test_algorithm_must_match_the_key(client: httpx.AsyncClient) -> None:
    """A token claiming ES256 while naming the Ed25519 key's kid is refused before verifying."""
    real = token(EC_KEY)
    _, payload, signature = real.split(".")
    header = b64(json.dumps({"alg": "ES256", "typ": "JWT", "kid": ED_KEY.kid}).encode())
    response = await client.get("/me", headers=bearer(f"{header}.{payload}.{signature}"))
    assert_unauthorized(response, "invalid_token")


async def test_key_not_published(client: httpx.AsyncClient) -> None:
    assert_unauthorized(
        await client.get("/me", headers=bearer(token(STRANGER_KEY))), "invalid_token"
    )


async def test_signed_by_a_stranger_under_our_kid(client: httpx.AsyncClient) -> None:
    forged = sign_token(STRANGER_KEY, claims(), kid=ED_KEY.kid)
    assert_unauthorized(await client.get("/me", headers=bearer(forged)), "invalid_token")


@pytest.mark.parametrize("value", ["garbage", "a.b.c", "a.b", "..", "x" * 9000])
async def test_garbage_tokens(client: httpx.AsyncClient, value: str) -> None:
    assert_unauthorized(await client.get("/me", headers=bearer(value)), "invalid_token")


async def test_foreign_token_type(client: httpx.AsyncClient) -> None:
    header = b64(json.dumps({"alg": "EdDSA", "typ": "secevent+jwt", "kid": ED_KEY.kid}).encode())
    payload = b64(json.dumps(claims()).encode())
    real_signature = token().split(".")[2]
    response = await client.get("/me", headers=bearer(f"{header}.{payload}.{real_signature}"))
    assert_unauthorized(response, "invalid_token")


async def test_principal_claims_round_trip() -> None:
    principal = Principal(
        subject=STAFF,
        merchant_id=MERCHANT,
        role=Role.REGIONAL_MANAGER,
        scopes=frozenset({"orders:read", "reports:read"}),
        store_ids=frozenset({STORE_A, STORE_B}),
        region_ids=frozenset({uuid.uuid4()}),
        token_id="t-1",
        expires_at=datetime.fromtimestamp(int(time.time()) + 300, UTC),
    )
    issued = principal_claims(
        principal, issuer=ISSUER, audience=AUDIENCE, issued_at=datetime.now(UTC)
    )
    verifier = TokenVerifier(StaticKeySource(public_jwks([ED_KEY])), ISSUER, AUDIENCE)
    assert await verifier.verify(sign_token(ED_KEY, issued)) == principal


def test_public_jwks_has_no_private_material() -> None:
    document = public_jwks([ED_KEY, EC_KEY])
    assert [k["kty"] for k in document["keys"]] == ["OKP", "EC"]
    assert all("d" not in k and k["kid"] and k["use"] == "sig" for k in document["keys"])
    assert {k["alg"] for k in document["keys"]} == {"EdDSA", "ES256"}
    with pytest.raises(ValueError, match="unsupported algorithm"):
        generate_signing_key("HS256")


# --- permissions and stores ----------------------------------------------------------------


async def test_missing_scope_is_403_naming_it(client: httpx.AsyncClient) -> None:
    response = await client.post("/orders/o-1/refund", headers=bearer(token()))
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "forbidden"
    assert "orders:refund" in body["detail"]
    assert body["missing_permission"] == "orders:refund"
    allowed = await client.post(
        "/orders/o-1/refund", headers=bearer(token(scp="orders:read orders:refund"))
    )
    assert allowed.status_code == 200
    assert (await client.get("/orders", headers=bearer(token()))).status_code == 200
    assert (await client.get("/orders", headers=bearer(token(scp="")))).status_code == 403


async def test_any_of_scopes(client: httpx.AsyncClient) -> None:
    refused = await client.post("/members", headers=bearer(token(scp="orders:write")))
    assert refused.status_code == 403
    body = refused.json()
    assert body["code"] == "forbidden"
    assert body["missing_permission"] == "members:register"
    assert body["any_of_permissions"] == ["members:register", "members:write"]
    for scopes in ("members:register", "members:write", "orders:write members:register"):
        allowed = await client.post("/members", headers=bearer(token(scp=scopes)))
        assert allowed.status_code == 200, scopes


def test_any_of_needs_a_scope() -> None:
    with pytest.raises(ValueError):
        require_any()


async def test_store_outside_scope_is_404(client: httpx.AsyncClient) -> None:
    own = await client.get(f"/stores/{STORE_A}", headers=bearer(token()))
    assert own.status_code == 200
    other = await client.get(f"/stores/{STORE_B}", headers=bearer(token()))
    assert other.status_code == 404
    assert other.json()["code"] == "not_found"
    everywhere = await client.get(f"/stores/{STORE_B}", headers=bearer(token(sto=None)))
    assert everywhere.status_code == 200


# --- JWKS cache ----------------------------------------------------------------------------


class FakeIdentity:
    """A JWKS endpoint whose key set and availability the test controls."""

    def __init__(self, keys: list[SigningKey]) -> None:
        self.keys = keys
        self.calls = 0
        self.down = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.down:
            return httpx.Response(503)
        return httpx.Response(200, json=public_jwks(self.keys))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def jwks_source(identity: FakeIdentity, clock: Clock) -> JwksKeySource:
    http = httpx.AsyncClient(transport=httpx.MockTransport(identity.handler))
    return JwksKeySource(
        "http://identity/.well-known/jwks.json",
        cache_seconds=300,
        http_client=http,
        min_refresh_interval=30,
        clock=clock,
    )


async def test_jwks_is_fetched_once_and_cached() -> None:
    identity, clock = FakeIdentity([ED_KEY]), Clock()
    verifier = TokenVerifier(jwks_source(identity, clock), ISSUER, AUDIENCE)
    for _ in range(5):
        await verifier.verify(token())
    assert identity.calls == 1
    clock.now += 301
    await verifier.verify(token())
    assert identity.calls == 2


async def test_unknown_kid_triggers_one_refresh_and_finds_a_rotated_key() -> None:
    identity, clock = FakeIdentity([ED_KEY]), Clock()
    verifier = TokenVerifier(jwks_source(identity, clock), ISSUER, AUDIENCE)
    await verifier.verify(token())
    identity.keys = [ED_KEY, EC_KEY]  # identity rotates in a new key
    principal = await verifier.verify(token(EC_KEY))
    assert principal.merchant_id == MERCHANT
    assert identity.calls == 2


async def test_a_flood_of_unknown_kids_refreshes_at_most_once_per_interval() -> None:
    identity, clock = FakeIdentity([ED_KEY]), Clock()
    verifier = TokenVerifier(jwks_source(identity, clock), ISSUER, AUDIENCE)
    await verifier.verify(token())
    for i in range(50):
        bogus = sign_token(STRANGER_KEY, claims(), kid=f"bogus-{i}")
        with pytest.raises(Problem) as raised:
            await verifier.verify(bogus)
        assert raised.value.code == "invalid_token"
    assert identity.calls == 2
    clock.now += 31
    with pytest.raises(Problem):
        await verifier.verify(sign_token(STRANGER_KEY, claims(), kid="bogus-later"))
    assert identity.calls == 3


async def test_concurrent_requests_with_a_new_kid_share_one_refresh() -> None:
    identity, clock = FakeIdentity([ED_KEY]), Clock()
    verifier = TokenVerifier(jwks_source(identity, clock), ISSUER, AUDIENCE)
    await verifier.verify(token())
    identity.keys = [ED_KEY, EC_KEY]
    principals = await asyncio.gather(*(verifier.verify(token(EC_KEY)) for _ in range(20)))
    assert {p.subject for p in principals} == {STAFF}
    assert identity.calls == 2


async def test_identity_down_keeps_cached_keys() -> None:
    identity, clock = FakeIdentity([ED_KEY]), Clock()
    verifier = TokenVerifier(jwks_source(identity, clock), ISSUER, AUDIENCE)
    await verifier.verify(token())
    identity.down = True
    clock.now += 301
    assert (await verifier.verify(token())).subject == STAFF
    assert identity.calls == 2
    await verifier.verify(token())
    assert identity.calls == 2  # the failed refresh is not retried on every request


async def test_identity_down_without_keys_is_503_not_401() -> None:
    identity, clock = FakeIdentity([ED_KEY]), Clock()
    identity.down = True
    verifier = TokenVerifier(jwks_source(identity, clock), ISSUER, AUDIENCE)
    with pytest.raises(Problem) as raised:
        await verifier.verify(token())
    assert raised.value.status == 503
    assert raised.value.code == "auth_unavailable"
    identity.down = False
    clock.now += 31
    assert (await verifier.verify(token())).subject == STAFF


async def test_jwks_ignores_unusable_keys() -> None:
    document = public_jwks([ED_KEY])
    document["keys"].append({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"})
    document["keys"].append({"kty": "RSA", "n": "xx", "e": "AQAB", "kid": "rsa"})
    document["keys"].append({**public_jwks([EC_KEY])["keys"][0], "use": "enc"})
    source = StaticKeySource(document)
    for kid in ("hmac", "rsa"):
        with pytest.raises(UnknownKeyError):
            await source.get_key(kid)
    verifier = TokenVerifier(source, ISSUER, AUDIENCE)
    await verifier.verify(token())
    with pytest.raises(Problem):
        await verifier.verify(token(EC_KEY))  # published for encryption only


# --- tenant scoping ------------------------------------------------------------------------

_metadata = sa.MetaData()
tickets = sa.Table(
    "tickets",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("merchant_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("store_id", pg.UUID(as_uuid=True), nullable=False),
)
merchants_notes = sa.Table(
    "merchant_notes",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("merchant_id", pg.UUID(as_uuid=True), nullable=False),
)


class _Base(DeclarativeBase):
    metadata = _metadata


class Ticket(_Base):
    __table__ = tickets


def principal_for(store_ids: frozenset[uuid.UUID] | None) -> Principal:
    return Principal(
        subject=STAFF,
        merchant_id=MERCHANT,
        role=Role.STORE_MANAGER,
        scopes=frozenset(),
        store_ids=store_ids,
        token_id="t",
        expires_at=datetime.now(UTC) + timedelta(minutes=5),
    )


@pytest_asyncio.fixture(loop_scope="session")
async def database(create_database: CreateDatabase) -> AsyncIterator[Database]:
    database = Database(await create_database("auth"), pool_size=2)
    async with database.engine.begin() as conn:
        await conn.run_sync(_metadata.create_all)
        rows = [
            (1, MERCHANT, STORE_A),
            (2, MERCHANT, STORE_B),
            (3, OTHER_MERCHANT, STORE_A),
            (4, OTHER_MERCHANT, uuid.uuid4()),
        ]
        await conn.execute(
            tickets.insert(), [{"id": i, "merchant_id": m, "store_id": s} for i, m, s in rows]
        )
        await conn.execute(
            merchants_notes.insert(),
            [{"id": 1, "merchant_id": MERCHANT}, {"id": 2, "merchant_id": OTHER_MERCHANT}],
        )
    yield database
    await database.dispose()


async def test_scoped_queries(database: Database) -> None:
    async def ids(stmt: sa.Select[Any]) -> list[int]:
        async with database.transaction() as session:
            return sorted((await session.execute(stmt)).scalars())

    select_tickets = sa.select(tickets.c.id)
    assert await ids(scoped(select_tickets, tickets, principal_for(None))) == [1, 2]
    assert await ids(scoped(select_tickets, tickets, principal_for(frozenset({STORE_A})))) == [1]
    assert await ids(scoped(select_tickets, tickets, principal_for(frozenset()))) == []
    # A table without store_id is scoped by merchant alone.
    notes = sa.select(merchants_notes.c.id)
    assert await ids(scoped(notes, merchants_notes, principal_for(frozenset({STORE_A})))) == [1]
    # Mapped classes work like tables.
    ticket_ids = sa.select(Ticket.id)
    assert await ids(scoped(ticket_ids, Ticket, principal_for(frozenset({STORE_B})))) == [2]
    # Updates are scoped the same way (this one changes nothing but counts what it touches).
    async with database.transaction() as session:
        result = await session.execute(
            scoped(
                sa.update(tickets).values(store_id=tickets.c.store_id),
                tickets,
                principal_for(frozenset({STORE_B})),
            )
        )
        assert getattr(result, "rowcount", None) == 1
    # A handler acting for the envelope's merchant sees all of that merchant's stores.
    assert await ids(scoped_to_merchant(select_tickets, tickets, OTHER_MERCHANT)) == [3, 4]


def test_scoped_needs_a_merchant_column() -> None:
    unscoped = sa.Table("free", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
    with pytest.raises(ValueError, match="merchant_id"):
        scoped(sa.select(unscoped.c.id), unscoped, principal_for(None))
    with pytest.raises(ValueError, match="merchant_id"):
        scoped_to_merchant(sa.select(unscoped.c.id), unscoped, MERCHANT)


async def test_a_verified_token_is_checked_again_only_when_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    clock.now = time.time()
    verifier = TokenVerifier(StaticKeySource(public_jwks([ED_KEY])), ISSUER, AUDIENCE, clock=clock)
    decoded: list[str] = []
    decode = auth_module.jwt.decode

    def counting_decode(value: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(value)
        return decode(value, *args, **kwargs)

    monkeypatch.setattr(auth_module.jwt, "decode", counting_decode)
    signed = token()
    first = await verifier.verify(signed)
    assert await verifier.verify(signed) == first
    assert len(decoded) == 1
    clock.now += 600 + verifier.leeway + 1
    with pytest.raises(Problem) as expired:
        await verifier.verify(signed)
    assert expired.value.code == "token_expired"


async def test_a_remembered_token_ends_with_its_key() -> None:
    identity, clock = FakeIdentity([ED_KEY]), Clock()
    verifier = TokenVerifier(jwks_source(identity, clock), ISSUER, AUDIENCE)
    signed = token()
    await verifier.verify(signed)
    identity.keys = [EC_KEY]  # identity withdraws the key that signed it
    clock.now += 301  # the JWKS copy is refreshed
    with pytest.raises(Problem) as refused:
        await verifier.verify(signed)
    assert refused.value.code == "invalid_token"
