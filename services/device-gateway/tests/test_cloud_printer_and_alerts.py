"""Receipts to an MQTT cloud printer (a ``print`` command, printed on its ack) and the
offline alert of a device that stayed away."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from contracts.events.orders import OrderLine, OrderPaid, Tender
from contracts.money import Money
from device_gateway.alerts.service import raise_offline_alerts
from device_gateway.models import Device
from device_gateway.printing.fakeprinter import EscPosDecoder
from servicekit.testing.wait import eventually

from .conftest import Gateway, envelope
from .test_printing import wait_job_state
from .test_registry_and_mqtt import bind_terminal


def paid_order(store_id: uuid.UUID) -> OrderPaid:
    return OrderPaid(
        order_id=uuid.uuid4(),
        store_id=store_id,
        channel="qr_table",
        lines=[
            OrderLine(
                line_id=uuid.uuid4(),
                product_id=uuid.uuid4(),
                name="珍珠奶茶",
                quantity=1,
                unit_price=Money.of(1500, "CNY"),
                discount=Money.of(0, "CNY"),
                total=Money.of(1500, "CNY"),
            )
        ],
        subtotal=Money.of(1500, "CNY"),
        discount_total=Money.of(0, "CNY"),
        total=Money.of(1500, "CNY"),
        tenders=[
            Tender(payment_id=uuid.uuid4(), method="wechat_pay", amount=Money.of(1500, "CNY"))
        ],
        occurred_at=datetime.now(UTC),
        paid_at=datetime.now(UTC),
    )


async def test_receipt_to_an_mqtt_cloud_printer_prints_on_its_ack(gateway: Gateway) -> None:
    merchant_id = uuid.uuid4()
    store_id = await gateway.store(merchant_id)
    printer = await bind_terminal(gateway, merchant_id, store_id, type="receipt_printer")
    sn = printer["sn"]
    paid = paid_order(store_id)
    event = envelope(paid, merchant_id, paid.order_id)
    await gateway.publish(event)
    await gateway.publish(event)

    async with gateway.mqtt_client(sn) as client:
        await client.subscribe(f"devices/{sn}/commands", qos=1)
        await client.publish(f"devices/{sn}/presence", b"online", qos=1)

        async def command() -> dict[str, object]:
            async for message in client.messages:
                if message.topic.matches(f"devices/{sn}/commands"):
                    assert isinstance(message.payload, bytes)
                    body: dict[str, object] = json.loads(message.payload)
                    return body
            return {}

        received = await asyncio.wait_for(command(), 30.0)
        assert received["kind"] == "print"
        payload = received["payload"]
        assert isinstance(payload, dict)
        printouts, _ = EscPosDecoder().feed(base64.b64decode(payload["escpos"]))
        assert "珍珠奶茶" in printouts[0].text
        assert "WeChat Pay 微信" in printouts[0].text
        await client.publish(
            f"devices/{sn}/acks",
            json.dumps({"command_id": received["command_id"], "ok": True}),
            qos=1,
        )
        job = await wait_job_state(gateway, merchant_id, store_id, paid.order_id, "printed")
        assert job["device_id"] == printer["id"]
        await client.publish(f"devices/{sn}/presence", b"offline", qos=1)


async def test_a_device_offline_too_long_raises_one_alert_until_it_returns(
    gateway: Gateway,
) -> None:
    merchant_id = uuid.uuid4()
    store_id = await gateway.store(merchant_id)
    device = await bind_terminal(gateway, merchant_id, store_id)
    async with gateway.database.transaction() as session:
        await session.execute(
            sa.update(Device)
            .where(Device.id == uuid.UUID(device["id"]))
            .values(online=False, status_changed_at=datetime.now(UTC) - timedelta(minutes=30))
        )
    for _ in range(2):
        async with gateway.database.transaction() as session:
            await raise_offline_alerts(session, minutes=5)
    response = await gateway.client.get(
        f"/v1/stores/{store_id}/alerts", headers=gateway.auth(merchant_id)
    )
    alerts = [a for a in response.json()["items"] if a["device_id"] == device["id"]]
    assert [a["kind"] for a in alerts] == ["offline"]
    (raised,) = await gateway.wait_events("devices.alert.raised", merchant_id)
    assert raised.payload["kind"] == "offline"

    async with gateway.mqtt_client(device["sn"]) as client:
        await client.publish(f"devices/{device['sn']}/presence", b"online", qos=1)
    (resolved,) = await gateway.wait_events("devices.alert.resolved", merchant_id)
    assert resolved.payload["alert_id"] == raised.payload["alert_id"]
    response = await gateway.client.get(
        f"/v1/stores/{store_id}/alerts", headers=gateway.auth(merchant_id)
    )
    assert response.json()["items"] == []


async def test_a_cloud_printer_reports_paper_out_and_back(gateway: Gateway) -> None:
    merchant_id = uuid.uuid4()
    store_id = await gateway.store(merchant_id)
    printer = await bind_terminal(gateway, merchant_id, store_id, type="receipt_printer")
    sn = printer["sn"]

    async def open_alerts() -> list[str]:
        response = await gateway.client.get(
            f"/v1/stores/{store_id}/alerts", headers=gateway.auth(merchant_id)
        )
        return [a["kind"] for a in response.json()["items"]]

    async with gateway.mqtt_client(sn) as client:
        for _ in range(2):  # reported twice, alerted once
            await client.publish(f"devices/{sn}/status", json.dumps({"paper": "out"}), qos=1)

        async def paper_out() -> bool:
            return await open_alerts() == ["paper_out"]

        await eventually(paper_out, timeout=30.0)
        await client.publish(f"devices/{sn}/status", json.dumps({"paper": "ok"}), qos=1)

        async def cleared() -> bool:
            return await open_alerts() == []

        await eventually(cleared, timeout=30.0)
    response = await gateway.client.get(
        f"/v1/devices/{printer['id']}", headers=gateway.auth(merchant_id)
    )
    assert response.json()["state"]["paper"] == "ok"
    raised = await gateway.wait_events("devices.alert.raised", merchant_id)
    assert [e.payload["kind"] for e in raised] == ["paper_out"]
