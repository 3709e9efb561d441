"""Sign-in, tokens and keys: identical failures, refresh rotation and reuse,
logout, password reset, expired and tampered tokens, key rotation and restarts."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from contracts.envelope import utcnow
from identity.auth.models import SigningKey
from identity.common.passwords import Passwords
from identity.context import Identity
from identity.main import create_app, key_store
from identity.testing import (
    MIGRATIONS,
    PASSWORD,
    AgeCodes,
    Api,
    CapturingSender,
    bearer,
    make_settings,
    new_phone,
)
from servicekit.app import TOKEN_AUDIENCE, TOKEN_ISSUER
from servicekit.auth import sign_token
from servicekit.bus.factory import InMemoryBus
from servicekit.db import Database
from servicekit.testing.plugin import CreateDatabase


def _identity(app: FastAPI) -> Identity:
    identity: Identity = app.state.identity
    return identity


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _header(token: str) -> dict[str, Any]:
    header = token.split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))))


async def test_access_token_carries_the_claims_servicekit_expects(api: Api) -> None:
    tenant = await api.signup()
    claims = _claims(tenant.admin.access)
    assert claims["iss"] == TOKEN_ISSUER
    assert claims["aud"] == TOKEN_AUDIENCE
    assert claims["sub"] == tenant.admin.id
    assert claims["mid"] == tenant.merchant["id"]
    assert claims["role"] == "hq_admin"
    assert "staff:manage" in claims["scp"].split()
    assert "sto" not in claims  # every store
    assert 14 * 60 <= claims["exp"] - claims["iat"] <= 15 * 60
    header = _header(tenant.admin.access)
    assert header["alg"] == "EdDSA"
    jwks = (await api.client.get("/.well-known/jwks.json")).json()
    assert header["kid"] in {key["kid"] for key in jwks["keys"]}
    assert all("d" not in key for key in jwks["keys"])

    cashier = await api.staff(tenant, tenant.admin, "cashier", store_id=tenant.store["id"])
    cashier_claims = _claims(cashier.access)
    assert cashier_claims["sto"] == [tenant.store["id"]]
    assert (
        cashier_claims["scp"]
        == "devices:operate members:register orders:write stored_value:recharge"
    )


async def test_store_code_alone_signs_in(api: Api) -> None:
    tenant = await api.signup()
    response = await api.client.post(
        "/v1/auth/login",
        json={"phone": tenant.admin.phone, "password": PASSWORD, "store_code": "S001"},
    )
    assert response.status_code == 200, response.text


async def test_failed_login_looks_the_same_for_known_and_unknown_phones(
    api: Api, identity_app: FastAPI, monkeypatch: Any
) -> None:
    tenant = await api.signup()
    verified: list[str | None] = []
    original = Passwords.verify

    async def spy(self: Passwords, password_hash: str | None, password: str) -> bool:
        verified.append(password_hash)
        return await original(self, password_hash, password)

    monkeypatch.setattr(Passwords, "verify", spy)
    known = await api.login(tenant.admin.phone, tenant.code, "wrong-pass1")
    unknown = await api.login(new_phone(), tenant.code, "wrong-pass1")
    assert known.status_code == unknown.status_code == 401
    assert known.json() == unknown.json()
    assert known.json()["code"] == "invalid_credentials"
    # One argon2 verification each: the unknown phone is checked against the dummy hash.
    assert len(verified) == 2
    assert verified[0] is not None
    assert verified[1] is None


async def test_refresh_rotates_and_reuse_revokes_the_family(api: Api) -> None:
    tenant = await api.signup()
    first = tenant.admin.refresh
    rotated = await api.client.post("/v1/auth/refresh", json={"refresh_token": first})
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["refresh_token"]
    assert second != first
    assert rotated.headers["Cache-Control"] == "no-store"

    reused = await api.client.post("/v1/auth/refresh", json={"refresh_token": first})
    assert reused.status_code == 401
    assert reused.json()["code"] == "invalid_refresh_token"
    # The thief's copy and the owner's current token died together.
    after = await api.client.post("/v1/auth/refresh", json={"refresh_token": second})
    assert after.status_code == 401

    audit = await api.client.get(
        "/v1/audit-events", params={"action": "refresh_token_reused"}, headers=tenant.admin.headers
    )
    assert len(audit.json()["items"]) == 1


async def test_logout_revokes_the_refresh_token(api: Api) -> None:
    tenant = await api.signup()
    out = await api.client.post("/v1/auth/logout", json={"refresh_token": tenant.admin.refresh})
    assert out.status_code == 204
    again = await api.client.post("/v1/auth/refresh", json={"refresh_token": tenant.admin.refresh})
    assert again.status_code == 401


async def test_password_reset_signs_out_every_session(api: Api, age_codes: AgeCodes) -> None:
    tenant = await api.signup()
    await age_codes(tenant.admin.phone)
    code = await api.code(tenant.admin.phone, "password_reset")
    weak = await api.client.post(
        "/v1/auth/password-reset",
        json={"phone": tenant.admin.phone, "code": code, "new_password": "onlyletters"},
    )
    assert weak.status_code == 422
    reset = await api.client.post(
        "/v1/auth/password-reset",
        json={"phone": tenant.admin.phone, "code": code, "new_password": "brandnew42"},
    )
    assert reset.status_code == 204, reset.text

    old_token = await api.client.get("/v1/me", headers=tenant.admin.headers)
    assert old_token.status_code == 401
    assert old_token.json()["code"] == "session_revoked"
    old_refresh = await api.client.post(
        "/v1/auth/refresh", json={"refresh_token": tenant.admin.refresh}
    )
    assert old_refresh.status_code == 401
    assert (await api.login(tenant.admin.phone, tenant.code)).status_code == 401
    fresh = await api.login(tenant.admin.phone, tenant.code, "brandnew42")
    assert fresh.status_code == 200
    me = await api.client.get("/v1/me", headers=bearer(fresh.json()["access_token"]))
    assert me.status_code == 200


async def test_expired_and_tampered_tokens_are_refused(api: Api, identity_app: FastAPI) -> None:
    tenant = await api.signup()
    claims = _claims(tenant.admin.access)
    key = await _identity(identity_app).keys.signing_key()
    now = utcnow()
    expired = sign_token(
        key,
        {
            **claims,
            "iat": int((now - timedelta(hours=1)).timestamp()),
            "exp": int((now - timedelta(minutes=30)).timestamp()),
        },
    )
    response = await api.client.get("/v1/me", headers=bearer(expired))
    assert response.status_code == 401
    assert response.json()["code"] == "token_expired"

    cashier = await api.staff(tenant, tenant.admin, "cashier", store_id=tenant.store["id"])
    header, _, signature = cashier.access.split(".")
    forged_claims = {**_claims(cashier.access), "role": "hq_admin", "scp": "staff:manage"}
    forged_payload = (
        base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).rstrip(b"=").decode()
    )
    tampered = f"{header}.{forged_payload}.{signature}"
    refused = await api.client.get("/v1/staff", headers=bearer(tampered))
    assert refused.status_code == 401
    assert refused.json()["code"] == "invalid_token"

    unsigned_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=")
    none_alg = f"{unsigned_header.decode()}.{forged_payload}."
    assert (await api.client.get("/v1/me", headers=bearer(none_alg))).status_code == 401


async def test_key_rotation_keeps_old_tokens_valid_and_survives_restarts(
    api: Api, identity_app: FastAPI, identity_url: str
) -> None:
    tenant = await api.signup()
    keys = _identity(identity_app).keys
    old_kid = _header(tenant.admin.access)["kid"]
    new_kid = await keys.rotate()
    assert new_kid != old_kid

    assert (await api.client.get("/v1/me", headers=tenant.admin.headers)).status_code == 200
    fresh = await api.login(tenant.admin.phone, tenant.code)
    assert _header(fresh.json()["access_token"])["kid"] == new_kid
    published = {k["kid"] for k in (await api.client.get("/.well-known/jwks.json")).json()["keys"]}
    assert {old_kid, new_kid} <= published

    # Another replica, or this one after a restart, reads the same keys from the database.
    replica = create_app(
        make_settings(identity_url), bus=InMemoryBus(), code_sender=CapturingSender()
    )
    async with replica.router.lifespan_context(replica):
        transport = httpx.ASGITransport(app=replica)
        async with httpx.AsyncClient(transport=transport, base_url="http://replica") as other:
            for token in (tenant.admin.access, fresh.json()["access_token"]):
                assert (await other.get("/v1/me", headers=bearer(token))).status_code == 200


async def test_private_keys_are_encrypted_when_a_key_is_configured(
    create_database: CreateDatabase,
) -> None:
    url = await create_database("identity_keys", migrations=MIGRATIONS)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    settings = make_settings(url, key_encryption_key=secret)
    keys = key_store(settings)
    database = Database(settings.sqlalchemy_url, pool_size=1)
    try:
        keys.bind(database)
        await keys.ensure_active()
        kid = await keys.rotate()
        async with database.transaction() as session:
            row = await session.get(SigningKey, kid)
            assert row is not None
            assert row.encryption == "aes256gcm"
            assert '"d"' not in row.private_key
        signing = await keys.signing_key()
        assert signing.kid == kid
    finally:
        await database.dispose()
