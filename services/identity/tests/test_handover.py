"""Super admin handover, the last super admin, and self-service deactivation."""

from __future__ import annotations

from identity.testing import AgeCodes, Api, new_phone


async def test_the_last_super_admin_cannot_step_down(api: Api, age_codes: AgeCodes) -> None:
    tenant = await api.signup()
    second_hq = await api.staff(tenant, tenant.admin, "hq_admin")
    # An HQ admin who is not a super admin cannot touch the super admin.
    touched = await api.client.post(
        f"/v1/staff/{tenant.admin.id}/disable", headers=second_hq.headers
    )
    assert touched.status_code == 403
    assert touched.json()["code"] == "super_admin_required"

    await age_codes(tenant.admin.phone)
    code = await api.code(tenant.admin.phone, "account_deactivation", tenant.admin.access)
    response = await api.client.post(
        "/v1/me/deactivate", json={"code": code}, headers=tenant.admin.headers
    )
    assert response.status_code == 409
    assert response.json()["code"] == "last_super_admin"
    me = await api.client.get("/v1/me", headers=tenant.admin.headers)
    assert me.json()["staff"]["status"] == "active"


async def test_handover_to_a_new_super_admin(api: Api) -> None:
    tenant = await api.signup()
    incoming = new_phone()
    started = await api.client.post(
        "/v1/handovers",
        json={"phone": incoming, "name": "Han Meimei"},
        headers=tenant.admin.headers,
    )
    assert started.status_code == 201, started.text
    handover = started.json()
    assert handover["status"] == "pending"
    code = api.sender.last(incoming, "admin_handover")

    # Completing before the new admin accepted is refused.
    early = await api.client.post(
        f"/v1/handovers/{handover['id']}/complete",
        json={"action": "deactivate"},
        headers=tenant.admin.headers,
    )
    assert early.status_code == 409

    accepted = await api.client.post(
        f"/v1/handovers/{handover['id']}/accept",
        json={"phone": incoming, "code": code, "password": "newboss99"},
    )
    assert accepted.status_code == 200, accepted.text
    new_admin_id = accepted.json()["to_staff_id"]
    new_admin = await api.account(incoming, tenant.code, new_admin_id, "newboss99")
    me = await api.client.get("/v1/me", headers=new_admin.headers)
    assert me.json()["staff"]["super_admin"] is True

    completed = await api.client.post(
        f"/v1/handovers/{handover['id']}/complete",
        json={
            "action": "demote",
            "assignment": {"role": "store_manager", "store_id": tenant.store["id"]},
        },
        headers=tenant.admin.headers,
    )
    assert completed.status_code == 200, completed.text
    assert completed.json()["status"] == "completed"

    # The old admin's session is gone; signing in again gives the new role.
    assert (await api.client.get("/v1/me", headers=tenant.admin.headers)).status_code == 401
    old = await api.account(tenant.admin.phone, tenant.code, tenant.admin.id)
    old_me = (await api.client.get("/v1/me", headers=old.headers)).json()
    assert old_me["staff"]["role"] == "store_manager"
    assert old_me["staff"]["super_admin"] is False

    # History stays, readable by the new super admin.
    audit = await api.client.get("/v1/audit-events", headers=new_admin.headers)
    actions = {event["action"] for event in audit.json()["items"]}
    assert {"handover_started", "handover_accepted", "handover_completed"} <= actions

    # Now the new admin is the last super admin.
    demote_self = await api.client.post(
        f"/v1/staff/{new_admin.id}/role",
        json={"version": 1, "role": "cashier", "store_id": tenant.store["id"]},
        headers=new_admin.headers,
    )
    assert demote_self.status_code == 403


async def test_last_super_admin_cannot_be_demoted_by_another_super_admin(api: Api) -> None:
    tenant = await api.signup()
    incoming = new_phone()
    started = await api.client.post(
        "/v1/handovers", json={"phone": incoming, "name": "B"}, headers=tenant.admin.headers
    )
    code = api.sender.last(incoming, "admin_handover")
    accepted = await api.client.post(
        f"/v1/handovers/{started.json()['id']}/accept",
        json={"phone": incoming, "code": code, "password": "newboss99"},
    )
    second = await api.account(incoming, tenant.code, accepted.json()["to_staff_id"], "newboss99")
    # Two super admins: one may demote the other...
    demoted = await api.client.post(
        f"/v1/staff/{tenant.admin.id}/role",
        json={"version": 1, "role": "cashier", "store_id": tenant.store["id"]},
        headers=second.headers,
    )
    assert demoted.status_code == 200, demoted.text
    # ...but the one left cannot be disabled by anyone.
    hq = await api.staff(tenant, second, "hq_admin")
    refused = await api.client.post(f"/v1/staff/{second.id}/disable", headers=hq.headers)
    assert refused.status_code == 403


async def test_self_deactivation_keeps_the_records(api: Api, age_codes: AgeCodes) -> None:
    tenant = await api.signup()
    cashier = await api.staff(tenant, tenant.admin, "cashier", store_id=tenant.store["id"])
    code = await api.code(cashier.phone, "account_deactivation", cashier.access)
    done = await api.client.post("/v1/me/deactivate", json={"code": code}, headers=cashier.headers)
    assert done.status_code == 204, done.text
    assert (await api.login(cashier.phone, tenant.code)).status_code == 401
    kept = await api.client.get(f"/v1/staff/{cashier.id}", headers=tenant.admin.headers)
    assert kept.status_code == 200
    assert kept.json()["status"] == "deactivated"


async def test_phone_change_with_a_code_to_the_new_phone(api: Api) -> None:
    tenant = await api.signup()
    cashier = await api.staff(tenant, tenant.admin, "cashier", store_id=tenant.store["id"])
    new = new_phone()
    code = await api.code(new, "phone_change", cashier.access)
    changed = await api.client.post(
        "/v1/me/phone", json={"phone": new, "code": code}, headers=cashier.headers
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["phone"] == new
    assert (await api.login(new, tenant.code)).status_code == 200
