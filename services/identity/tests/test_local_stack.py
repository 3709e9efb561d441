"""The local stack's conveniences: the demo merchant seeded once, and the development code
endpoint, present only when enabled."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from identity.main import create_app
from identity.seed import DEMO_ACCOUNTS, DEMO_MERCHANT_CODE, DEMO_PASSWORD
from identity.testing import MIGRATIONS, bearer, make_settings, new_phone
from servicekit.bus.factory import InMemoryBus
from servicekit.testing.plugin import CreateDatabase


async def test_demo_seed_is_idempotent_and_signs_in(create_database: CreateDatabase) -> None:
    url = await create_database("identity_seed", migrations=MIGRATIONS)
    settings = make_settings(url, seed_demo=True, dev_code_endpoint=True)
    for _ in range(2):  # a second start finds the demo merchant and leaves it alone
        app = create_app(settings, bus=InMemoryBus())
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://i") as client:
                roles = []
                for phone, _, _ in DEMO_ACCOUNTS:
                    login = await client.post(
                        "/v1/auth/login",
                        json={
                            "phone": phone,
                            "password": DEMO_PASSWORD,
                            "merchant_code": DEMO_MERCHANT_CODE,
                        },
                    )
                    assert login.status_code == 200, login.text
                    me = await client.get("/v1/me", headers=bearer(login.json()["access_token"]))
                    roles.append(me.json()["staff"]["role"])
                assert roles == [role.value for _, _, role in DEMO_ACCOUNTS]
                admin = await client.post(
                    "/v1/auth/login",
                    json={
                        "phone": DEMO_ACCOUNTS[0][0],
                        "password": DEMO_PASSWORD,
                        "merchant_code": DEMO_MERCHANT_CODE,
                    },
                )
                staff = await client.get("/v1/staff", headers=bearer(admin.json()["access_token"]))
                assert len(staff.json()["items"]) == 3

                phone = new_phone()
                await client.post(
                    "/v1/verification-codes", json={"phone": phone, "purpose": "signup"}
                )
                shown = await client.get("/v1/dev/verification-codes", params={"phone": phone})
                assert shown.status_code == 200
                assert len(shown.json()[0]["code"]) == 6


async def test_dev_code_endpoint_is_absent_by_default(identity_app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=identity_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://i") as client:
        response = await client.get("/v1/dev/verification-codes")
    assert response.status_code == 404
