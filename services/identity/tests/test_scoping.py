"""Tenant and store scoping, permissions and privilege escalation, optimistic concurrency,
and the read-only store lock."""

from __future__ import annotations

from identity.testing import Api


async def test_another_merchants_ids_are_not_found(api: Api) -> None:
    mine = await api.signup()
    theirs = await api.signup()
    their_cashier = await api.staff(theirs, theirs.admin, "cashier", store_id=theirs.store["id"])
    region = await api.region(theirs.admin, "East")
    for path in (
        f"/v1/stores/{theirs.store['id']}",
        f"/v1/staff/{their_cashier.id}",
        f"/v1/staff/{theirs.admin.id}",
        f"/v1/regions/{region['id']}",
        f"/v1/merchants/{theirs.merchant['id']}",
    ):
        response = await api.client.get(path, headers=mine.admin.headers)
        assert response.status_code == 404, path
        assert response.json()["code"] == "not_found"
    update = await api.client.patch(
        f"/v1/stores/{theirs.store['id']}",
        json={"version": 1, "name": "Mine now"},
        headers=mine.admin.headers,
    )
    assert update.status_code == 404
    disable = await api.client.post(
        f"/v1/staff/{their_cashier.id}/disable", headers=mine.admin.headers
    )
    assert disable.status_code == 404
    # Nor can their store be used to place my staff.
    placed = await api.client.post(
        "/v1/staff",
        json={
            "phone": "+8613100000000",
            "name": "Spy",
            "password": "secret123",
            "role": "cashier",
            "store_id": theirs.store["id"],
        },
        headers=mine.admin.headers,
    )
    assert placed.status_code == 422
    listed = await api.client.get("/v1/stores", headers=mine.admin.headers)
    assert [s["id"] for s in listed.json()["items"]] == [mine.store["id"]]


async def test_cashier_cannot_call_manager_endpoints(api: Api) -> None:
    tenant = await api.signup()
    cashier = await api.staff(tenant, tenant.admin, "cashier", store_id=tenant.store["id"])
    created = await api.client.post(
        "/v1/staff",
        json={
            "phone": "+8613100000001",
            "name": "Friend",
            "password": "secret123",
            "role": "cashier",
            "store_id": tenant.store["id"],
        },
        headers=cashier.headers,
    )
    assert created.status_code == 403
    assert created.json()["missing_permission"] == "staff:manage"
    for method, path in (
        ("GET", "/v1/staff"),
        ("GET", "/v1/audit-events"),
        ("POST", "/v1/stores"),
        ("POST", "/v1/regions"),
    ):
        body = {"code": "Z", "name": "Z"} if path == "/v1/stores" else {"name": "Z"}
        response = await api.client.request(
            method, path, headers=cashier.headers, json=body if method == "POST" else None
        )
        assert response.status_code == 403, (path, response.text)
    # The cashier sees their own store and themselves.
    stores = await api.client.get("/v1/stores", headers=cashier.headers)
    assert [s["id"] for s in stores.json()["items"]] == [tenant.store["id"]]
    me = await api.client.get(f"/v1/staff/{cashier.id}", headers=cashier.headers)
    assert me.status_code == 200
    # By default a cashier signs customers up as members at the till, without the scope that
    # shows every member's full phone.
    assert "members:register" in me.json()["scopes"]
    assert "members:write" not in me.json()["scopes"]


async def test_store_manager_is_confined_to_their_store(api: Api) -> None:
    tenant = await api.signup()
    other_store = await api.store(tenant.admin, "S002")
    manager = await api.staff(tenant, tenant.admin, "store_manager", store_id=tenant.store["id"])
    elsewhere = await api.staff(tenant, tenant.admin, "cashier", store_id=other_store["id"])
    assert (
        await api.client.get(f"/v1/stores/{other_store['id']}", headers=manager.headers)
    ).status_code == 404
    assert (
        await api.client.get(f"/v1/staff/{elsewhere.id}", headers=manager.headers)
    ).status_code == 404
    mine = await api.staff(tenant, manager, "cashier", store_id=tenant.store["id"])
    listed = await api.client.get("/v1/staff", headers=manager.headers)
    assert {s["id"] for s in listed.json()["items"]} == {manager.id, mine.id}
    # Phones and ID numbers are masked for a store manager.
    by_id = {s["id"]: s for s in listed.json()["items"]}
    assert "****" in by_id[mine.id]["phone"]
    assert by_id[manager.id]["phone"] == manager.phone
    # A manager hands their cashiers the till sign-up, not the member accounts.
    assert "members:register" in by_id[mine.id]["scopes"]
    assert "members:write" not in by_id[mine.id]["scopes"]


async def test_privilege_escalation_is_refused(api: Api) -> None:
    tenant = await api.signup()
    manager = await api.staff(tenant, tenant.admin, "store_manager", store_id=tenant.store["id"])
    cashier = await api.staff(tenant, manager, "cashier", store_id=tenant.store["id"])

    async def role(target: str, by: dict[str, str], **body: object) -> tuple[int, str]:
        current = await api.client.get(f"/v1/staff/{target}", headers=tenant.admin.headers)
        response = await api.client.post(
            f"/v1/staff/{target}/role",
            json={"version": current.json()["version"], **body},
            headers=by,
        )
        return response.status_code, response.json().get("code", "")

    # Promote a cashier above oneself, or to one's own rank.
    assert await role(cashier.id, manager.headers, role="hq_admin") == (403, "role_not_grantable")
    assert await role(
        cashier.id, manager.headers, role="store_manager", store_id=tenant.store["id"]
    ) == (403, "role_not_grantable")
    # Change one's own role.
    assert await role(manager.id, manager.headers, role="hq_admin") == (403, "own_account")
    # Create a manager peer.
    peer = await api.client.post(
        "/v1/staff",
        json={
            "phone": "+8613100000002",
            "name": "Peer",
            "password": "secret123",
            "role": "store_manager",
            "store_id": tenant.store["id"],
        },
        headers=manager.headers,
    )
    assert peer.status_code == 403
    # Grant a scope the role may never hold, or one the granter lacks.
    assert await role(
        cashier.id,
        manager.headers,
        role="cashier",
        store_id=tenant.store["id"],
        scopes=["orders:write", "staff:manage"],
    ) == (422, "validation_failed")
    restricted = await api.client.post(
        f"/v1/staff/{manager.id}/role",
        json={
            "version": manager.json["version"],
            "role": "store_manager",
            "store_id": tenant.store["id"],
            "scopes": ["orders:write", "staff:manage"],
        },
        headers=tenant.admin.headers,
    )
    assert restricted.status_code == 200, restricted.text
    relogged = await api.account(manager.phone, tenant.code, manager.id)
    assert await role(
        cashier.id,
        relogged.headers,
        role="cashier",
        store_id=tenant.store["id"],
        scopes=["orders:write", "refunds:approve"],
    ) == (403, "scope_not_grantable")
    # Within their rights, the change goes through and is audited.
    assert await role(
        cashier.id,
        tenant.admin.headers,
        role="cashier",
        store_id=tenant.store["id"],
        scopes=["orders:write", "refunds:approve"],
    ) == (200, "")
    audit = await api.client.get(
        "/v1/audit-events",
        params={"action": "role_changed", "staff_id": cashier.id},
        headers=tenant.admin.headers,
    )
    assert audit.json()["items"][0]["detail"]["to"]["scopes"] == [
        "orders:write",
        "refunds:approve",
    ]


async def test_role_change_signs_the_account_out(api: Api) -> None:
    tenant = await api.signup()
    manager = await api.staff(tenant, tenant.admin, "store_manager", store_id=tenant.store["id"])
    demoted = await api.client.post(
        f"/v1/staff/{manager.id}/role",
        json={"version": 1, "role": "cashier", "store_id": tenant.store["id"]},
        headers=tenant.admin.headers,
    )
    assert demoted.status_code == 200, demoted.text
    stale = await api.client.get("/v1/staff", headers=manager.headers)
    assert stale.status_code == 401
    assert stale.json()["code"] == "session_revoked"


async def test_regional_manager_sees_the_stores_of_their_regions(api: Api) -> None:
    tenant = await api.signup()
    east = await api.region(tenant.admin, "East")
    west = await api.region(tenant.admin, "West")
    east_store = await api.store(tenant.admin, "E01", region_id=east["id"])
    west_store = await api.store(tenant.admin, "W01", region_id=west["id"])
    regional = await api.staff(tenant, tenant.admin, "regional_manager", region_ids=[east["id"]])
    stores = await api.client.get("/v1/stores", headers=regional.headers)
    assert [s["id"] for s in stores.json()["items"]] == [east_store["id"]]
    assert (
        await api.client.get(f"/v1/stores/{west_store['id']}", headers=regional.headers)
    ).status_code == 404
    regions = await api.client.get("/v1/regions", headers=regional.headers)
    assert [r["id"] for r in regions.json()["items"]] == [east["id"]]
    # A store they open must sit in one of their regions.
    outside = await api.client.post(
        "/v1/stores",
        json={"code": "W02", "name": "W02", "region_id": west["id"]},
        headers=regional.headers,
    )
    assert outside.status_code == 422
    inside = await api.store(regional, "E02", region_id=east["id"])
    assert inside["region_id"] == east["id"]


async def test_stale_version_is_a_conflict(api: Api) -> None:
    tenant = await api.signup()
    path = f"/v1/stores/{tenant.store['id']}"
    first = await api.client.patch(
        path, json={"version": 1, "name": "Renamed"}, headers=tenant.admin.headers
    )
    assert first.status_code == 200
    assert first.json()["version"] == 2
    stale = await api.client.patch(
        path, json={"version": 1, "name": "Lost update"}, headers=tenant.admin.headers
    )
    assert stale.status_code == 409
    assert stale.json()["code"] == "version_mismatch"
    assert stale.json()["current_version"] == 2
    taken = await api.client.post(
        "/v1/stores", json={"code": "S001", "name": "Dup"}, headers=tenant.admin.headers
    )
    assert taken.status_code == 409
    assert taken.json()["code"] == "store_code_taken"


async def test_read_only_lock_needs_settings_manage(api: Api) -> None:
    tenant = await api.signup()
    regional_region = await api.region(tenant.admin, "North")
    store = await api.store(tenant.admin, "N01", region_id=regional_region["id"])
    regional = await api.staff(
        tenant, tenant.admin, "regional_manager", region_ids=[regional_region["id"]]
    )
    path = f"/v1/stores/{store['id']}/status"
    refused = await api.client.post(
        path, json={"version": 1, "status": "read_only"}, headers=regional.headers
    )
    assert refused.status_code == 403
    locked = await api.client.post(
        path,
        json={"version": 1, "status": "read_only", "reason": "legal entity change"},
        headers=tenant.admin.headers,
    )
    assert locked.status_code == 200
    assert locked.json()["status"] == "read_only"
