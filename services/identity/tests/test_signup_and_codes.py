"""Sign-up and verification codes: the happy path, duplicate and invalid credit codes,
wrong-try burning, rate limits and idempotent replay."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from identity.config import Settings
from identity.testing import Api, new_credit_code, new_phone
from identity.verification import service as codes
from identity.verification.models import VerificationCode
from identity.verification.schemas import Purpose
from servicekit.db import Database
from servicekit.errors import TooManyRequests


async def test_signup_creates_merchant_store_and_super_admin(api: Api) -> None:
    tenant = await api.signup()
    assert len(tenant.merchant["code"]) == 8
    assert tenant.merchant["legal_rep_id_number"] == "1101**********4514"
    assert tenant.store["code"] == "S001"
    assert tenant.store["status"] == "active"
    assert tenant.admin.json["super_admin"] is True
    assert tenant.admin.json["role"] == "hq_admin"

    me = await api.client.get("/v1/me", headers=tenant.admin.headers)
    assert me.status_code == 200, me.text
    assert me.json()["merchant"]["id"] == tenant.merchant["id"]
    assert me.json()["store_ids"] is None
    assert "staff:manage" in me.json()["staff"]["scopes"]


async def test_signup_needs_the_code_sent_to_the_admin_phone(api: Api) -> None:
    phone = new_phone()
    await api.code(phone, "signup")
    response = await api.client.post("/v1/merchants", json=api.signup_body(phone, "000000"))
    if api.sender.last(phone, "signup") == "000000":  # one chance in a million
        return
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_verification_code"


async def test_duplicate_credit_code_is_refused(api: Api) -> None:
    credit = new_credit_code()
    first = new_phone()
    body = api.signup_body(first, await api.code(first, "signup"), credit)
    assert (await api.client.post("/v1/merchants", json=body)).status_code == 201

    second = new_phone()
    code = await api.code(second, "signup")
    again = await api.client.post("/v1/merchants", json=api.signup_body(second, code, credit))
    assert again.status_code == 409
    assert again.json()["code"] == "credit_code_taken"
    # The refusal did not spend the code: a corrected form goes through.
    fixed = await api.client.post("/v1/merchants", json=api.signup_body(second, code))
    assert fixed.status_code == 201, fixed.text


async def test_credit_code_with_a_wrong_check_character_is_refused(api: Api) -> None:
    good = new_credit_code()
    wrong_check = "0" if good[-1] != "0" else "1"
    phone = new_phone()
    code = await api.code(phone, "signup")
    response = await api.client.post(
        "/v1/merchants", json=api.signup_body(phone, code, good[:-1] + wrong_check)
    )
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert errors[0]["field"] == "merchant.credit_code"
    assert "check character" in errors[0]["message"]


async def test_five_wrong_tries_burn_the_code(api: Api) -> None:
    phone = new_phone()
    code = await api.code(phone, "signup")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        response = await api.client.post("/v1/merchants", json=api.signup_body(phone, wrong))
        assert response.status_code == 422
        assert response.json()["code"] == "invalid_verification_code"
    # The right code no longer works: it was burnt.
    response = await api.client.post("/v1/merchants", json=api.signup_body(phone, code))
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_verification_code"


async def test_one_code_per_minute_per_phone(api: Api) -> None:
    phone = new_phone()
    await api.code(phone, "signup")
    again = await api.client.post(
        "/v1/verification-codes", json={"phone": phone, "purpose": "password_reset"}
    )
    assert again.status_code == 429
    assert again.json()["code"] == "code_rate_limited"
    assert 50 <= int(again.headers["Retry-After"]) <= 60


async def test_ten_codes_per_day_per_phone(identity_url: str) -> None:
    settings = Settings(database_url=identity_url, code_min_interval_seconds=0)
    database = Database(settings.sqlalchemy_url, pool_size=1)
    phone = new_phone()

    class Nowhere:
        async def send(self, phone: str, purpose: str, code: str) -> None:
            return None

    try:
        for _ in range(10):
            async with database.transaction() as session:
                await codes.issue(session, settings, Nowhere(), phone, Purpose.SIGNUP)
        with pytest.raises(TooManyRequests) as refused:
            async with database.transaction() as session:
                await codes.issue(session, settings, Nowhere(), phone, Purpose.SIGNUP)
        assert refused.value.code == "code_daily_limit"
        assert 23 * 3600 < int(refused.value.headers["Retry-After"]) <= 24 * 3600
        # The window slides: once the oldest is a day old, one more is allowed.
        async with database.transaction() as session:
            oldest = await session.scalar(
                sa.select(sa.func.min(VerificationCode.created_at)).where(
                    VerificationCode.phone == phone
                )
            )
            await session.execute(
                sa.update(VerificationCode)
                .where(VerificationCode.phone == phone, VerificationCode.created_at == oldest)
                .values(created_at=oldest - timedelta(days=1))
            )
        async with database.transaction() as session:
            await codes.issue(session, settings, Nowhere(), phone, Purpose.SIGNUP)
        async with database.transaction() as session:
            hashes = (
                await session.scalars(
                    sa.select(VerificationCode.code_hash).where(VerificationCode.phone == phone)
                )
            ).all()
        assert all(len(h) == 64 for h in hashes)
    finally:
        await database.dispose()


async def test_login_code_to_an_unknown_phone_looks_sent(api: Api) -> None:
    phone = new_phone()
    response = await api.client.post(
        "/v1/verification-codes", json={"phone": phone, "purpose": "login"}
    )
    assert response.status_code == 202
    assert all(sent[0] != phone for sent in api.sender.sent)


async def test_signup_replays_with_the_same_idempotency_key(api: Api) -> None:
    phone = new_phone()
    body = api.signup_body(phone, await api.code(phone, "signup"))
    headers = {"Idempotency-Key": f"signup-{phone}"}
    first = await api.client.post("/v1/merchants", json=body, headers=headers)
    second = await api.client.post("/v1/merchants", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert first.json() == second.json()
    body["merchant"]["name"] = "Another name"
    reused = await api.client.post("/v1/merchants", json=body, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"


async def test_store_create_replays_with_the_same_idempotency_key(api: Api) -> None:
    tenant = await api.signup()
    headers = {**tenant.admin.headers, "Idempotency-Key": "store-s002"}
    body = {"code": "S002", "name": "Second", "timezone": "Asia/Shanghai"}
    first = await api.client.post("/v1/stores", json=body, headers=headers)
    second = await api.client.post("/v1/stores", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    listed = await api.client.get("/v1/stores", headers=tenant.admin.headers)
    assert [s["code"] for s in listed.json()["items"]] == ["S001", "S002"]


async def test_invalid_timezone_and_phone_are_refused(api: Api) -> None:
    tenant = await api.signup()
    response = await api.client.post(
        "/v1/stores",
        json={"code": "X1", "name": "X", "timezone": "Mars/Olympus"},
        headers=tenant.admin.headers,
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "timezone"
    bad_phone = await api.client.post(
        "/v1/verification-codes", json={"phone": "12345", "purpose": "signup"}
    )
    assert bad_phone.status_code == 422
