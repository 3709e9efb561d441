"""Binding devices, their MQTT credentials and presence, and commands through a real MQTT
broker (the embedded amqtt, or Mosquitto when ``MQTT_URL`` names it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any

import aiomqtt
import sqlalchemy as sa

from device_gateway.registry.credentials import matches
from device_gateway.registry.service import by_sn
from servicekit.embedded.ports import free_port
from servicekit.testing.proxy import TcpProxy
from servicekit.testing.wait import eventually

from .conftest import Gateway


async def device_state(gw: Gateway, merchant_id: uuid.UUID, device_id: str) -> dict[str, Any]:
    response = await gw.client.get(f"/v1/devices/{device_id}", headers=gw.auth(merchant_id))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def announce(gw: Gateway, sn: str, code: str, type: str = "pos_terminal") -> None:
    """The device's first boot: it says hello and shows ``code`` on its screen."""
    async with gw.mqtt_client(sn) as client:
        await client.publish(
            f"devices/{sn}/hello",
            json.dumps({"type": type, "model": "T2", "firmware": "1.0", "activation_code": code}),
            qos=1,
        )

    async def showing_code() -> bool:
        async with gw.database.transaction() as session:
            device = await by_sn(session, sn)
            return device is not None and matches(code, sn, device.activation_code_hash)

    await eventually(showing_code, timeout=30.0)


async def bind_terminal(
    gw: Gateway, merchant_id: uuid.UUID, store_id: uuid.UUID, type: str = "pos_terminal"
) -> dict[str, Any]:
    sn = f"T{uuid.uuid4().hex[:12].upper()}"
    await announce(gw, sn, "482913", type)
    body: dict[str, Any] = {"sn": sn, "activation_code": "482913", "store_id": str(store_id)}
    if type == "kds":
        body["station"] = "hot"
    response = await gw.client.post("/v1/devices/bind", json=body, headers=gw.auth(merchant_id))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_bind_unbind_rebind_with_audit_events_and_credentials(gateway: Gateway) -> None:
    merchant_id, other_merchant = uuid.uuid4(), uuid.uuid4()
    store_a = await gateway.store(merchant_id)
    store_b = await gateway.store(merchant_id)
    foreign_store = await gateway.store(other_merchant)
    sn = f"T{uuid.uuid4().hex[:12].upper()}"
    await announce(gateway, sn, "111222")

    wrong = await gateway.client.post(
        "/v1/devices/bind",
        json={"sn": sn, "activation_code": "999999", "store_id": str(store_a)},
        headers=gateway.auth(merchant_id),
    )
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["code"] == "activation_code_invalid"
    # A store of another merchant is not the caller's to bind to.
    response = await gateway.client.post(
        "/v1/devices/bind",
        json={"sn": sn, "activation_code": "111222", "store_id": str(foreign_store)},
        headers=gateway.auth(merchant_id),
    )
    assert response.status_code == 404

    response = await gateway.client.post(
        "/v1/devices/bind",
        json={"sn": sn, "activation_code": "111222", "store_id": str(store_a)},
        headers=gateway.auth(merchant_id),
    )
    assert response.status_code == 201, response.text
    device = response.json()
    credentials = device["mqtt_credentials"]
    assert credentials["username"] == sn
    assert credentials["topic_prefix"] == f"devices/{sn}"
    login = {"username": sn, "password": credentials["password"]}
    assert (await gateway.client.post("/v1/mqtt/auth", json=login)).json()["result"] == "allow"
    bad = await gateway.client.post("/v1/mqtt/auth", json={**login, "password": "guess"})
    assert bad.status_code == 403
    acl = await gateway.client.post(
        "/v1/mqtt/acl", json={"username": sn, "topic": "devices/OTHER/commands"}
    )
    assert acl.json()["result"] == "deny"

    # The code was one-time and the device is bound: nobody binds it again, not even its owner.
    for merchant, store in ((other_merchant, foreign_store), (merchant_id, store_b)):
        again = await gateway.client.post(
            "/v1/devices/bind",
            json={"sn": sn, "activation_code": "111222", "store_id": str(store)},
            headers=gateway.auth(merchant),
        )
        assert again.status_code == 409
        assert again.json()["code"] == "device_already_bound"
    # Another merchant cannot see, move or unbind it.
    for method, path, body in (
        ("GET", f"/v1/devices/{device['id']}", None),
        ("POST", f"/v1/devices/{device['id']}/unbind", None),
        ("POST", f"/v1/devices/{device['id']}/rebind", {"store_id": str(foreign_store)}),
    ):
        response = await gateway.client.request(
            method, path, json=body, headers=gateway.auth(other_merchant)
        )
        assert response.status_code == 404, path
    # Nor can a manager of store B only.
    response = await gateway.client.get(
        f"/v1/devices/{device['id']}",
        headers=gateway.auth(merchant_id, store_ids=frozenset({store_b})),
    )
    assert response.status_code == 404

    stale = await gateway.client.post(
        f"/v1/devices/{device['id']}/rebind",
        json={"store_id": str(store_b), "version": device["version"] - 1},
        headers=gateway.auth(merchant_id),
    )
    assert stale.status_code == 409
    assert stale.json()["code"] == "version_mismatch"
    moved = await gateway.client.post(
        f"/v1/devices/{device['id']}/rebind",
        json={"store_id": str(store_b), "version": device["version"]},
        headers=gateway.auth(merchant_id),
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["store_id"] == str(store_b)
    listed = await gateway.client.get(
        f"/v1/stores/{store_b}/devices", headers=gateway.auth(merchant_id)
    )
    assert [d["sn"] for d in listed.json()["items"]] == [sn]
    empty = await gateway.client.get(
        f"/v1/stores/{store_a}/devices", headers=gateway.auth(merchant_id)
    )
    assert empty.json()["items"] == []

    unbound = await gateway.client.post(
        f"/v1/devices/{device['id']}/unbind", headers=gateway.auth(merchant_id)
    )
    assert unbound.status_code == 200
    assert unbound.json()["store_id"] is None
    revoked = await gateway.client.post("/v1/mqtt/auth", json=login)
    assert revoked.json()["result"] == "deny"

    (bound,) = await gateway.wait_events("devices.device.bound", merchant_id)
    (rebound,) = await gateway.wait_events("devices.device.rebound", merchant_id)
    (gone,) = await gateway.wait_events("devices.device.unbound", merchant_id)
    assert bound.payload["store_id"] == str(store_a)
    assert rebound.payload["previous_store_id"] == str(store_a)
    assert rebound.payload["store_id"] == str(store_b)
    assert gone.payload["store_id"] == str(store_b)

    # Unbound, the device is free: it shows a new code and another merchant binds it.
    await announce(gateway, sn, "777888")
    response = await gateway.client.post(
        "/v1/devices/bind",
        json={"sn": sn, "activation_code": "777888", "store_id": str(foreign_store)},
        headers=gateway.auth(other_merchant),
    )
    assert response.status_code == 201, response.text
    history = await gateway.client.get(
        f"/v1/devices/{device['id']}/bindings", headers=gateway.auth(other_merchant)
    )
    # The new owner sees its own binding, not where the device was before.
    assert [(h["action"], h["store_id"]) for h in history.json()] == [("bound", str(foreign_store))]


async def test_printer_bound_by_sn_and_mac(gateway: Gateway) -> None:
    merchant_id = uuid.uuid4()
    store_id = await gateway.store(merchant_id)
    printer = await gateway.printer()
    device = await gateway.bind_printer(merchant_id, store_id, printer)
    assert device["connection"] == "tcp"
    assert device["mqtt_credentials"] is None
    missing_station = await gateway.client.post(
        "/v1/devices/bind",
        json={
            "sn": "PRNOSTATION1",
            "mac": "AA:BB:CC:DD:EE:01",
            "type": "kitchen_printer",
            "store_id": str(store_id),
            "connection": {"kind": "tcp", "host": "127.0.0.1", "port": 9100},
        },
        headers=gateway.auth(merchant_id),
    )
    assert missing_station.status_code == 422
    no_proof = await gateway.client.post(
        "/v1/devices/bind",
        json={"sn": "X1", "store_id": str(store_id)},
        headers=gateway.auth(merchant_id),
    )
    assert no_proof.status_code == 422
    forbidden = await gateway.client.post(
        "/v1/devices/bind",
        json={
            "sn": "X1",
            "mac": "AA:BB:CC:DD:EE:02",
            "type": "receipt_printer",
            "store_id": str(store_id),
        },
        headers=gateway.auth(merchant_id, scopes=frozenset({"devices:operate"})),
    )
    assert forbidden.status_code == 403


async def test_presence_with_last_will_and_events(gateway: Gateway) -> None:
    merchant_id = uuid.uuid4()
    store_id = await gateway.store(merchant_id)
    device = await bind_terminal(gateway, merchant_id, store_id)
    sn = device["sn"]
    url = gateway.mqtt_url.split("://", 1)[1].rsplit("@", 1)[-1]
    host, port = url.split(":")
    # The device reaches the broker through a proxy we can cut, as a power failure would.
    proxy = TcpProxy(free_port(), host, int(port))
    await proxy.start()
    client = aiomqtt.Client(
        "127.0.0.1",
        proxy.listen_port,
        identifier=f"device-{sn}",
        keepalive=2,
        will=aiomqtt.Will(f"devices/{sn}/presence", b"offline", qos=1, retain=True),
    )
    try:
        await client.__aenter__()
        await client.publish(f"devices/{sn}/presence", b"online", qos=1, retain=True)

        async def online() -> bool:
            return bool((await device_state(gateway, merchant_id, device["id"]))["online"])

        await eventually(online, timeout=30.0)
        await client.publish(f"devices/{sn}/drawer", json.dumps({"state": "open"}), qos=1)

        async def drawer_open() -> bool:
            state = await device_state(gateway, merchant_id, device["id"])
            return state["state"].get("drawer") == "open"

        await eventually(drawer_open, timeout=30.0)
        await proxy.cut()  # no DISCONNECT: the broker publishes the last will

        async def offline() -> bool:
            return not (await device_state(gateway, merchant_id, device["id"]))["online"]

        await eventually(offline, timeout=30.0)
    finally:
        await proxy.stop()
        with contextlib.suppress(Exception):  # the connection is already gone
            await client.__aexit__(None, None, None)
    (went_online,) = await gateway.wait_events("devices.device.online", merchant_id)
    (went_offline,) = await gateway.wait_events("devices.device.offline", merchant_id)
    assert went_online.payload["sn"] == sn
    assert went_offline.payload["sn"] == sn
    state = await device_state(gateway, merchant_id, device["id"])
    assert state["last_seen_at"] is not None
    # A broker that outlives the run keeps retained messages: leave none behind.
    async with gateway.mqtt_client(sn) as cleaner:
        await cleaner.publish(f"devices/{sn}/presence", b"", qos=1, retain=True)


async def test_command_queued_while_offline_is_delivered_on_reconnect(gateway: Gateway) -> None:
    merchant_id = uuid.uuid4()
    store_id = await gateway.store(merchant_id)
    device = await bind_terminal(gateway, merchant_id, store_id)
    sn = device["sn"]
    key = {"Idempotency-Key": str(uuid.uuid4())}
    response = await gateway.client.post(
        f"/v1/devices/{device['id']}/commands",
        json={"kind": "show_message", "payload": {"text": "欢迎光临"}},
        headers={**gateway.auth(merchant_id), **key},
    )
    assert response.status_code == 202, response.text
    command = response.json()
    assert command["state"] == "queued"
    # The till retries after a timeout: the same command, not a second one.
    retried = await gateway.client.post(
        f"/v1/devices/{device['id']}/commands",
        json={"kind": "show_message", "payload": {"text": "欢迎光临"}},
        headers={**gateway.auth(merchant_id), **key},
    )
    assert retried.status_code == 202
    assert retried.json()["id"] == command["id"]

    received: list[dict[str, Any]] = []
    async with gateway.mqtt_client(sn) as client:
        await client.subscribe(f"devices/{sn}/commands", qos=1)
        await client.publish(f"devices/{sn}/presence", b"online", qos=1)

        async def first() -> None:
            async for message in client.messages:
                if not message.topic.matches(f"devices/{sn}/commands"):
                    continue  # amqtt hands a retained last will to other sessions at times
                assert isinstance(message.payload, bytes)
                received.append(json.loads(message.payload))
                return

        await asyncio.wait_for(first(), 30.0)
        assert received[0]["command_id"] == command["id"]
        assert received[0]["payload"] == {"text": "欢迎光临"}
        await client.publish(
            f"devices/{sn}/acks", json.dumps({"command_id": command["id"], "ok": True}), qos=1
        )

        async def acked() -> bool:
            r = await gateway.client.get(
                f"/v1/devices/{device['id']}/commands/{command['id']}",
                headers=gateway.auth(merchant_id),
            )
            return r.json()["state"] == "acked"

        await eventually(acked, timeout=30.0)
        await client.publish(f"devices/{sn}/presence", b"offline", qos=1)
    intruder = await gateway.client.get(
        f"/v1/devices/{device['id']}/commands/{command['id']}",
        headers=gateway.auth(uuid.uuid4()),
    )
    assert intruder.status_code == 404


async def test_unacknowledged_command_is_sent_again(gateway: Gateway) -> None:
    merchant_id = uuid.uuid4()
    store_id = await gateway.store(merchant_id)
    device = await bind_terminal(gateway, merchant_id, store_id)
    sn = device["sn"]
    async with gateway.mqtt_client(sn) as client:
        await client.subscribe(f"devices/{sn}/commands", qos=1)
        await client.publish(f"devices/{sn}/presence", b"online", qos=1)

        async def is_online() -> bool:
            return bool((await device_state(gateway, merchant_id, device["id"]))["online"])

        await eventually(is_online, timeout=30.0)
        response = await gateway.client.post(
            f"/v1/devices/{device['id']}/commands",
            json={"kind": "open_drawer"},
            headers=gateway.auth(merchant_id),
        )
        command_id = response.json()["id"]
        ids: list[str] = []

        async def twice() -> None:
            async for message in client.messages:
                if not message.topic.matches(f"devices/{sn}/commands"):
                    continue
                assert isinstance(message.payload, bytes)
                ids.append(json.loads(message.payload)["command_id"])
                if len(ids) == 2:
                    return

        await asyncio.wait_for(twice(), 30.0)
        assert ids == [command_id, command_id]
        await client.publish(f"devices/{sn}/presence", b"offline", qos=1)


async def test_rebind_to_another_merchant_revokes_credentials_and_drops_commands(
    gateway: Gateway,
) -> None:
    """What legal-entity migration does to a device: one audited step to the new merchant."""
    from device_gateway.models import Device, DeviceCommand, Store
    from device_gateway.registry.service import move

    old_merchant, new_merchant = uuid.uuid4(), uuid.uuid4()
    old_store = await gateway.store(old_merchant)
    new_store = await gateway.store(new_merchant)
    device = await bind_terminal(gateway, old_merchant, old_store)
    password = device["mqtt_credentials"]["password"]
    queued = await gateway.client.post(
        f"/v1/devices/{device['id']}/commands",
        json={"kind": "show_message", "payload": {"text": "old owner"}},
        headers=gateway.auth(old_merchant),
    )
    assert queued.status_code == 202
    async with gateway.database.transaction() as session:
        row = await session.get(Device, uuid.UUID(device["id"]), with_for_update=True)
        store = await session.get(Store, new_store)
        assert row is not None
        assert store is not None
        await move(session, row, store, station=None, actor=None)
    async with gateway.database.transaction() as session:
        pending = await session.scalars(
            sa.select(DeviceCommand).where(DeviceCommand.device_id == uuid.UUID(device["id"]))
        )
        assert pending.all() == []
    login = {"username": device["sn"], "password": password}
    assert (await gateway.client.post("/v1/mqtt/auth", json=login)).json()["result"] == "deny"
    old_view = await gateway.client.get(
        f"/v1/devices/{device['id']}", headers=gateway.auth(old_merchant)
    )
    assert old_view.status_code == 404
    new_view = await gateway.client.get(
        f"/v1/devices/{device['id']}", headers=gateway.auth(new_merchant)
    )
    assert new_view.json()["store_id"] == str(new_store)
    (rebound,) = await gateway.wait_events("devices.device.rebound", new_merchant)
    assert rebound.payload["previous_merchant_id"] == str(old_merchant)
    assert rebound.payload["previous_store_id"] == str(old_store)
    history = await gateway.client.get(
        f"/v1/devices/{device['id']}/bindings", headers=gateway.auth(new_merchant)
    )
    # The new merchant sees the step, not the old merchant's store.
    assert [(h["action"], h["previous_store_id"]) for h in history.json()] == [("rebound", None)]
