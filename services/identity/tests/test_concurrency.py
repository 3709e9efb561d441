"""Identity under concurrent requests on real PostgreSQL: a change names the version it read,
two writers never both build on it, the last super admin survives mutual demotion, and only
one handover runs at a time."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from identity.staff.models import Staff
from identity.testing import Api, Tenant, make_settings, new_phone
from servicekit.db import Database

ROUNDS = 5


async def _two_super_admins(api: Api) -> tuple[Tenant, Any, str]:
    """A tenant whose handover was accepted: two super admins, the handover still open."""
    tenant = await api.signup()
    incoming = new_phone()
    started = await api.client.post(
        "/v1/handovers", json={"phone": incoming, "name": "B"}, headers=tenant.admin.headers
    )
    assert started.status_code == 201, started.text
    code = api.sender.last(incoming, "admin_handover")
    accepted = await api.client.post(
        f"/v1/handovers/{started.json()['id']}/accept",
        json={"phone": incoming, "code": code, "password": "newboss99"},
    )
    assert accepted.status_code == 200, accepted.text
    second = await api.account(incoming, tenant.code, accepted.json()["to_staff_id"], "newboss99")
    return tenant, second, started.json()["id"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "/v1/stores/{store}", {"name": "No version"}),
        ("POST", "/v1/stores/{store}/status", {"status": "read_only"}),
        ("POST", "/v1/stores/{store}/disable", None),
        ("PATCH", "/v1/merchants/{merchant}", {"name": "No version"}),
        ("PATCH", "/v1/regions/{region}", {"name": "No version"}),
        ("POST", "/v1/regions/{region}/disable", None),
        ("PATCH", "/v1/staff/{cashier}", {"name": "No version"}),
        ("POST", "/v1/staff/{cashier}/role", {"role": "cashier", "store_id": "{store}"}),
        ("POST", "/v1/staff/{cashier}/disable", None),
        ("POST", "/v1/staff/{cashier}/enable", None),
    ],
)
async def test_a_change_without_the_version_is_refused(
    api: Api, method: str, path: str, body: dict[str, Any] | None
) -> None:
    tenant = await api.signup()
    region = await api.region(tenant.admin, "East")
    cashier = await api.staff(tenant, tenant.admin, "cashier", store_id=tenant.store["id"])
    ids = {
        "store": tenant.store["id"],
        "merchant": tenant.merchant["id"],
        "region": region["id"],
        "cashier": cashier.id,
    }
    if body is not None:
        body = {k: v.format(**ids) if isinstance(v, str) else v for k, v in body.items()}
    response = await api.client.request(
        method, path.format(**ids), json=body, headers=tenant.admin.headers
    )
    assert response.status_code == 428, response.text
    assert response.json()["code"] == "version_required"


async def test_a_patch_and_a_status_change_cannot_both_build_on_one_version(api: Api) -> None:
    tenant = await api.signup()
    for _ in range(ROUNDS):
        store = await api.store(tenant.admin, f"R{new_phone()[-6:]}")
        path = f"/v1/stores/{store['id']}"
        patch, lock = await asyncio.gather(
            api.client.patch(
                path, json={"version": 1, "name": "Renamed"}, headers=tenant.admin.headers
            ),
            api.client.post(
                f"{path}/status",
                json={"version": 1, "status": "read_only", "reason": "legal entity change"},
                headers=tenant.admin.headers,
            ),
        )
        statuses = sorted([patch.status_code, lock.status_code])
        assert statuses == [200, 409], (patch.text, lock.text)
        loser = patch if patch.status_code == 409 else lock
        assert loser.json()["code"] == "version_mismatch"
        now = (await api.client.get(path, headers=tenant.admin.headers)).json()
        assert now["version"] == 2
        # The winner's change is what the store holds: nothing was lost on the way.
        assert (now["status"] == "read_only") == (lock.status_code == 200)
        assert (now["name"] == "Renamed") == (patch.status_code == 200)


async def test_concurrent_region_renames_keep_one(api: Api) -> None:
    tenant = await api.signup()
    region = await api.region(tenant.admin, "West")
    path = f"/v1/regions/{region['id']}"
    answers = await asyncio.gather(
        *(
            api.client.patch(
                path, json={"version": 1, "name": f"W{i}"}, headers=tenant.admin.headers
            )
            for i in range(4)
        )
    )
    assert sorted(a.status_code for a in answers) == [200, 409, 409, 409]
    assert (await api.client.get(path, headers=tenant.admin.headers)).json()["version"] == 2


async def test_two_super_admins_demoting_each_other_leave_one(api: Api, identity_url: str) -> None:
    for _ in range(ROUNDS):
        tenant, second, _ = await _two_super_admins(api)
        store_id = tenant.store["id"]

        def demote(target: str, by: Any, store_id: str = store_id) -> Any:
            return api.client.post(
                f"/v1/staff/{target}/role",
                json={"version": 1, "role": "cashier", "store_id": store_id},
                headers=by.headers,
            )

        first_answer, second_answer = await asyncio.gather(
            demote(second.id, tenant.admin), demote(tenant.admin.id, second)
        )
        codes = sorted([first_answer.status_code, second_answer.status_code])
        # One wins; the other is refused as the last super admin, or is no longer allowed
        # (its demoted caller's session is gone or it is no longer a super admin).
        assert codes[0] == 200, (first_answer.text, second_answer.text)
        assert codes[1] in (401, 403, 409), (first_answer.text, second_answer.text)
        assert await _super_admins(identity_url, tenant.merchant["id"]) == 1


async def _super_admins(identity_url: str, merchant_id: str) -> int:
    database = Database(make_settings(identity_url).sqlalchemy_url, pool_size=1)
    try:
        async with database.transaction() as session:
            count = await session.scalar(
                sa.select(sa.func.count())
                .select_from(Staff)
                .where(
                    Staff.merchant_id == uuid.UUID(merchant_id),
                    Staff.super_admin.is_(True),
                    Staff.status == "active",
                )
            )
    finally:
        await database.dispose()
    return int(count or 0)


async def test_two_handovers_cannot_start_at_once(api: Api) -> None:
    for _ in range(ROUNDS):
        tenant = await api.signup()

        def start(headers: dict[str, str] = tenant.admin.headers) -> Any:
            return api.client.post(
                "/v1/handovers", json={"phone": new_phone(), "name": "Next"}, headers=headers
            )

        answers: list[httpx.Response] = await asyncio.gather(start(), start(), start())
        assert sorted(a.status_code for a in answers) == [201, 409, 409], [a.text for a in answers]
        assert all(
            a.json()["code"] == "handover_in_progress" for a in answers if a.status_code == 409
        )


async def test_concurrent_merchant_and_staff_changes_keep_one(api: Api) -> None:
    tenant = await api.signup()
    cashier = await api.staff(tenant, tenant.admin, "cashier", store_id=tenant.store["id"])
    headers = tenant.admin.headers
    merchant_path = f"/v1/merchants/{tenant.merchant['id']}"
    staff_path = f"/v1/staff/{cashier.id}"
    answers = await asyncio.gather(
        api.client.patch(merchant_path, json={"version": 1, "name": "A"}, headers=headers),
        api.client.patch(merchant_path, json={"version": 1, "name": "B"}, headers=headers),
        api.client.patch(staff_path, json={"version": 1, "name": "Renamed"}, headers=headers),
        api.client.post(f"{staff_path}/disable", json={"version": 1}, headers=headers),
    )
    assert sorted(a.status_code for a in answers[:2]) == [200, 409]
    assert sorted(a.status_code for a in answers[2:]) == [200, 409]
    merchant = (await api.client.get(merchant_path, headers=headers)).json()
    staff = (await api.client.get(staff_path, headers=headers)).json()
    assert merchant["version"] == 2
    assert staff["version"] == 2
