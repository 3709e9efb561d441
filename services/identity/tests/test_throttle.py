"""Sign-in throttling that cannot be used to lock staff out: growing delays per phone and per
client address, a code sign-in that still works, and an unlock by the staff's manager."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import httpx
import pytest_asyncio
import sqlalchemy as sa

from identity.auth.models import LoginThrottle
from identity.auth.throttle import Rule
from identity.main import create_app
from identity.testing import PASSWORD, AgeCodes, Api, CapturingSender, make_settings, new_phone
from servicekit.bus.factory import InMemoryBus
from servicekit.db import Database

ExpireDelay = Callable[[str], Awaitable[None]]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def expire_delay(identity_url: str) -> AsyncIterator[ExpireDelay]:
    """Ends a phone's current delay (as if it had been waited out), keeping its count."""
    database = Database(make_settings(identity_url).sqlalchemy_url, pool_size=1)

    async def expire(phone: str) -> None:
        async with database.transaction() as session:
            await session.execute(
                sa.update(LoginThrottle)
                .where(LoginThrottle.kind == "phone", LoginThrottle.key == phone)
                .values(blocked_until=LoginThrottle.blocked_until - timedelta(hours=1))
            )

    yield expire
    await database.dispose()


def test_delays_double_up_to_the_ceiling() -> None:
    rule = Rule(free_failures=3, base_delay=2, max_delay=300, window=3600)
    assert [rule.delay(n) for n in range(1, 4)] == [0, 0, 0]
    assert [rule.delay(n) for n in range(4, 10)] == [2, 4, 8, 16, 32, 64]
    assert rule.delay(12) == 300
    assert rule.delay(10_000) == 300


async def test_failures_slow_sign_in_down_with_growing_delays(
    api: Api, expire_delay: ExpireDelay
) -> None:
    tenant = await api.signup()
    phone = tenant.admin.phone
    for _ in range(4):  # three free failures, the fourth starts a 2 s delay
        failed = await api.login(phone, tenant.code, "wrong-pass1")
        assert failed.status_code == 401
    waiting = await api.login(phone, tenant.code)  # even the right password waits
    assert waiting.status_code == 429
    assert waiting.json()["code"] == "login_throttled"
    assert 1 <= int(waiting.headers["Retry-After"]) <= 2

    retry_afters = []
    for _ in range(2):
        await expire_delay(phone)
        assert (await api.login(phone, tenant.code, "wrong-pass1")).status_code == 401
        refused = await api.login(phone, tenant.code)
        assert refused.status_code == 429
        retry_afters.append(int(refused.headers["Retry-After"]))
    assert 2 < retry_afters[0] <= 4
    assert 4 < retry_afters[1] <= 8

    # Once the delay is over the right password signs in and the count starts again.
    await expire_delay(phone)
    assert (await api.login(phone, tenant.code)).status_code == 200
    assert (await api.login(phone, tenant.code, "wrong-pass1")).status_code == 401
    assert (await api.login(phone, tenant.code)).status_code == 200

    audit = await api.client.get(
        "/v1/audit-events", params={"staff_id": tenant.admin.id}, headers=tenant.admin.headers
    )
    actions = [event["action"] for event in audit.json()["items"]]
    assert actions.count("login_throttled") == 3


async def test_a_delay_looks_the_same_for_a_phone_without_an_account(api: Api) -> None:
    tenant = await api.signup()
    known, ghost = tenant.admin.phone, new_phone()
    for phone in (known, ghost):
        for _ in range(4):
            await api.login(phone, tenant.code, "wrong-pass1")
    known_wait = await api.login(known, tenant.code)
    ghost_wait = await api.login(ghost, tenant.code)
    assert known_wait.status_code == ghost_wait.status_code == 429
    assert known_wait.json() == ghost_wait.json()


async def test_the_owner_signs_in_with_a_code_while_a_stranger_keeps_failing(
    api: Api, age_codes: AgeCodes
) -> None:
    tenant = await api.signup()
    phone = tenant.admin.phone
    for _ in range(6):
        await api.login(phone, tenant.code, "wrong-pass1")
    assert (await api.login(phone, tenant.code)).status_code == 429
    await age_codes(phone)
    code = await api.code(phone, "login")
    signed_in = await api.client.post(
        "/v1/auth/login", json={"phone": phone, "code": code, "merchant_code": tenant.code}
    )
    assert signed_in.status_code == 200, signed_in.text
    # Proving the phone cleared its delay: the password works again at once.
    assert (await api.login(phone, tenant.code)).status_code == 200


async def test_a_store_manager_unlocks_their_cashier(api: Api) -> None:
    tenant = await api.signup()
    manager = await api.staff(tenant, tenant.admin, "store_manager", store_id=tenant.store["id"])
    cashier = await api.staff(tenant, manager, "cashier", store_id=tenant.store["id"])
    other_store = await api.store(tenant.admin, "S777")
    other_manager = await api.staff(
        tenant, tenant.admin, "store_manager", store_id=other_store["id"]
    )
    for _ in range(5):
        await api.login(cashier.phone, tenant.code, "wrong-pass1")
    assert (await api.login(cashier.phone, tenant.code)).status_code == 429

    path = f"/v1/staff/{cashier.id}/unlock"
    not_theirs = await api.client.post(path, headers=other_manager.headers)
    assert not_theirs.status_code == 404
    by_cashier = await api.client.post(f"/v1/staff/{manager.id}/unlock", headers=cashier.headers)
    assert by_cashier.status_code == 403
    assert (await api.login(cashier.phone, tenant.code)).status_code == 429

    unlocked = await api.client.post(path, headers=manager.headers)
    assert unlocked.status_code == 200, unlocked.text
    assert unlocked.json() == {"staff_id": cashier.id, "was_throttled": True}
    assert (await api.login(cashier.phone, tenant.code)).status_code == 200
    again = await api.client.post(path, headers=manager.headers)
    assert again.json()["was_throttled"] is False

    audit = await api.client.get(
        "/v1/audit-events", params={"staff_id": cashier.id}, headers=tenant.admin.headers
    )
    unlocks = [e for e in audit.json()["items"] if e["action"] == "staff_unlocked"]
    assert len(unlocks) == 2
    assert {e["actor_id"] for e in unlocks} == {manager.id}


async def test_hq_unlocks_a_super_admin_and_the_event_is_published(
    api: Api, identity_url: str
) -> None:
    tenant = await api.signup()
    hq = await api.staff(tenant, tenant.admin, "hq_admin")
    for _ in range(5):
        await api.login(tenant.admin.phone, tenant.code, "wrong-pass1")
    unlocked = await api.client.post(f"/v1/staff/{tenant.admin.id}/unlock", headers=hq.headers)
    assert unlocked.status_code == 200, unlocked.text
    assert unlocked.json()["was_throttled"] is True
    database = Database(make_settings(identity_url).sqlalchemy_url, pool_size=1)
    try:
        async with database.transaction() as session:
            payloads = (
                await session.scalars(
                    sa.text(
                        "SELECT payload FROM outbox WHERE type = 'identity.staff.sign_in_unlocked'"
                        " AND aggregateid = :id"
                    ),
                    {"id": tenant.admin.id},
                )
            ).all()
    finally:
        await database.dispose()
    assert len(payloads) == 1
    assert payloads[0]["payload"]["unlocked_by"] == hq.id


async def test_one_address_guessing_across_phones_is_slowed_down(
    identity_url: str, sender: CapturingSender
) -> None:
    settings = make_settings(identity_url, login_address_free_failures=3)
    app = create_app(settings, bus=InMemoryBus(), code_sender=sender)
    async with app.router.lifespan_context(app):

        def client(address: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=(address, 40000))
            return httpx.AsyncClient(transport=transport, base_url="http://identity")

        async with client("203.0.113.7") as guesser, client("198.51.100.9") as shop:
            api = Api(shop, sender)
            tenant = await api.signup()
            for _ in range(4):  # four different phones, one failure each
                body = {"phone": new_phone(), "password": "guess", "merchant_code": tenant.code}
                assert (await guesser.post("/v1/auth/login", json=body)).status_code == 401
            body = {"phone": tenant.admin.phone, "password": PASSWORD, "merchant_code": tenant.code}
            slowed = await guesser.post("/v1/auth/login", json=body)
            assert slowed.status_code == 429
            assert slowed.json()["code"] == "login_throttled"
            # The account itself is not held back: from its own address it signs in.
            assert (await shop.post("/v1/auth/login", json=body)).status_code == 200
