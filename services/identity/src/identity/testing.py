"""Helpers for tests that need identity: a capturing code sender, fresh phones and credit
codes, and :class:`Api`, which signs up merchants and creates staff through the HTTP API.
Other services' tests use it to obtain real tokens."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import identity
from identity.config import Settings
from identity.merchants.credit_code import ALPHABET, check_character

MIGRATIONS = Path(identity.__file__).parent / "migrations"
PASSWORD = "secret123"

#: Moves a phone's codes into the past (see the ``age_codes`` fixture).
AgeCodes = Callable[[str], Awaitable[None]]


class CapturingSender:
    """Keeps every code instead of texting it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    async def send(self, phone: str, purpose: str, code: str) -> None:
        self.sent.append((phone, purpose, code))

    def last(self, phone: str, purpose: str) -> str:
        for sent_phone, sent_purpose, code in reversed(self.sent):
            if (sent_phone, sent_purpose) == (phone, purpose):
                return code
        raise AssertionError(f"no {purpose} code sent to {phone}")


def new_phone() -> str:
    return "+86139" + "".join(random.choices("0123456789", k=8))


def new_credit_code() -> str:
    body = "91" + "".join(random.choices("0123456789", k=6))
    body += "".join(random.choices(ALPHABET, k=9))
    return body + check_character(body)


def make_settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "log_format": "console",
        # Cheap argon2: the tests exercise the logic, not the cost.
        "password_time_cost": 1,
        "password_memory_cost_kib": 1024,
        "password_parallelism": 1,
        # Every test client shares one address; its throttle is tested on its own.
        "login_address_free_failures": 100_000,
        **overrides,
    }
    return Settings(**values)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Account:
    id: str
    phone: str
    access: str
    refresh: str
    json: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access)


@dataclass
class Tenant:
    merchant: dict[str, Any]
    store: dict[str, Any]
    admin: Account

    @property
    def code(self) -> str:
        return str(self.merchant["code"])


class Api:
    """The HTTP calls the tests repeat."""

    def __init__(self, client: httpx.AsyncClient, sender: CapturingSender) -> None:
        self.client = client
        self.sender = sender

    async def code(self, phone: str, purpose: str, token: str | None = None) -> str:
        response = await self.client.post(
            "/v1/verification-codes",
            json={"phone": phone, "purpose": purpose},
            headers=bearer(token) if token else {},
        )
        assert response.status_code == 202, response.text
        return self.sender.last(phone, purpose)

    def signup_body(self, phone: str, code: str, credit_code: str | None = None) -> dict[str, Any]:
        return {
            "merchant": {
                "name": "Noodle House",
                "credit_code": credit_code or new_credit_code(),
                "legal_rep_name": "Li Lei",
                "legal_rep_id_number": "110101199003074514",
                "industry": "restaurant",
            },
            "store": {
                "code": "S001",
                "name": "Noodle House Xuhui",
                "address": "88 Caoxi Rd",
                "timezone": "Asia/Shanghai",
                "business_hours": [{"day": "mon", "opens": "10:00", "closes": "02:00"}],
            },
            "admin": {"phone": phone, "name": "Li Lei", "password": PASSWORD, "code": code},
        }

    async def login(
        self, phone: str, merchant_code: str, password: str = PASSWORD
    ) -> httpx.Response:
        return await self.client.post(
            "/v1/auth/login",
            json={"phone": phone, "password": password, "merchant_code": merchant_code},
        )

    async def account(
        self, phone: str, merchant_code: str, staff_id: str, password: str = PASSWORD
    ) -> Account:
        response = await self.login(phone, merchant_code, password)
        assert response.status_code == 200, response.text
        tokens = response.json()
        return Account(staff_id, phone, tokens["access_token"], tokens["refresh_token"])

    async def signup(self) -> Tenant:
        phone = new_phone()
        code = await self.code(phone, "signup")
        response = await self.client.post("/v1/merchants", json=self.signup_body(phone, code))
        assert response.status_code == 201, response.text
        body = response.json()
        admin = await self.account(phone, body["merchant"]["code"], body["admin"]["id"])
        admin.json = body["admin"]
        return Tenant(body["merchant"], body["store"], admin)

    async def staff(self, tenant: Tenant, by: Account, role: str, **assignment: Any) -> Account:
        phone = new_phone()
        body = {"phone": phone, "name": role, "password": PASSWORD, "role": role, **assignment}
        response = await self.client.post("/v1/staff", json=body, headers=by.headers)
        assert response.status_code == 201, response.text
        created = response.json()
        account = await self.account(phone, tenant.code, created["id"])
        account.json = created
        return account

    async def region(self, by: Account, name: str) -> dict[str, Any]:
        response = await self.client.post("/v1/regions", json={"name": name}, headers=by.headers)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def store(self, by: Account, code: str, **fields: Any) -> dict[str, Any]:
        body = {"code": code, "name": f"Store {code}", **fields}
        response = await self.client.post("/v1/stores", json=body, headers=by.headers)
        assert response.status_code == 201, response.text
        return dict(response.json())
