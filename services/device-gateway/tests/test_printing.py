"""Kitchen tickets and receipts from order events to the fake network printer: exactly one
job per ticket, Chinese text round-trip, retries, failover, alerts, reprint."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from contracts.events.orders import KitchenTicketCreated, OrderLine, OrderPaid, Tender, TicketLine
from contracts.money import Money
from device_gateway.printing.escpos import render
from device_gateway.printing.fakeprinter import EscPosDecoder
from servicekit.testing.wait import eventually

from .conftest import Gateway, envelope


def ticket(store_id: uuid.UUID, station: str = "hot", **extra: Any) -> KitchenTicketCreated:
    return KitchenTicketCreated(
        ticket_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        store_id=store_id,
        station=station,
        table="A12",
        lines=[
            TicketLine(name="牛肉面", quantity=2, notes="不要香菜", modifiers=["加辣", "大份"]),
            TicketLine(name="Dumplings", quantity=1),
        ],
        **extra,
    )


async def jobs(
    gw: Gateway, merchant_id: uuid.UUID, store_id: uuid.UUID, **query: str
) -> list[dict[str, Any]]:
    response = await gw.client.get(
        f"/v1/stores/{store_id}/print-jobs", params=query, headers=gw.auth(merchant_id)
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def wait_job_state(
    gw: Gateway, merchant_id: uuid.UUID, store_id: uuid.UUID, source_id: uuid.UUID, state: str
) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        found = await jobs(gw, merchant_id, store_id, source_id=str(source_id))
        return found[0] if found and found[0]["state"] == state else None

    return await eventually(reached, timeout=30.0)


def test_chinese_text_round_trips_through_escpos_on_both_widths() -> None:
    document = {
        "kind": "kitchen_ticket",
        "order_number": "ABC123",
        "station": "热菜",
        "table": "包间3",
        "at": "2026-03-01T12:00:00+00:00",
        "lines": [{"name": "宫保鸡丁", "quantity": 1, "modifiers": ["微辣"], "notes": "打包"}],
    }
    for width, columns in ((58, 32), (80, 48)):
        data = render(document, width)
        assert b"\x1c\x26" in data  # Chinese mode
        assert "宫保鸡丁".encode("gb18030") in data
        assert data.rstrip(b"\x00").endswith((b"\x1dV\x00", b"\x1dV\x01")) or b"\x1dV" in data
        printouts, _ = EscPosDecoder().feed(data)
        (printout,) = printouts
        assert "1 x 宫保鸡丁" in printout.text
        assert "+ 微辣" in printout.text
        assert "! 打包" in printout.text
        assert "热菜" in printout.text
        assert "Table 包间3" in printout.text
        assert "-" * columns in printout.text
        assert "-" * (columns + 1) not in printout.text


async def test_a_kitchen_ticket_delivered_twice_prints_once(gateway: Gateway) -> None:
    merchant_id = uuid.uuid4()
    store_id = await gateway.store(merchant_id)
    printer = await gateway.printer()
    await gateway.bind_printer(merchant_id, store_id, printer, station="hot")
    sent = ticket(store_id)
    event = envelope(sent, merchant_id, sent.ticket_id)
    await gateway.publish(event)
    await gateway.publish(event)  # redelivered
    # Replayed under a new event id (a producer re-announcing it): still one job.
    await gateway.publish(envelope(sent, merchant_id, sent.ticket_id))

    job = await wait_job_state(gateway, merchant_id, store_id, sent.ticket_id, "printed")
    (printout,) = await printer.wait_for(1)
    assert "2 x 牛肉面" in printout.text
    assert "+ 加辣" in printout.text
    assert "! 不要香菜" in printout.text
    assert "Table A12" in printout.text
    assert len(await jobs(gateway, merchant_id, store_id)) == 1
    assert job["attempts"] == 1
    # Nothing more comes out once the duplicates are consumed.
    assert len(printer.printed) == 1


async def test_paid_order_prints_a_receipt_with_totals_tenders_and_qr(gateway: Gateway) -> None:
    merchant_id = uuid.uuid4()
    store_id = await gateway.store(merchant_id, name="Noodle Bar 面吧")
    printer = await gateway.printer()
    await gateway.bind_printer(
        merchant_id, store_id, printer, type="receipt_printer", station=None, paper_width_mm=58
    )
    order_id = uuid.uuid4()
    line = OrderLine(
        line_id=uuid.uuid4(),
        product_id=uuid.uuid4(),
        name="牛肉面",
        quantity=2,
        unit_price=Money.of(1800, "CNY"),
        discount=Money.of(0, "CNY"),
        total=Money.of(3600, "CNY"),
    )
    paid = OrderPaid(
        order_id=order_id,
        store_id=store_id,
        channel="pos",
        lines=[line],
        subtotal=Money.of(3600, "CNY"),
        discount_total=Money.of(100, "CNY"),
        total=Money.of(3500, "CNY"),
        tenders=[Tender(payment_id=uuid.uuid4(), method="cash", amount=Money.of(3500, "CNY"))],
        occurred_at=datetime.now(UTC),
        paid_at=datetime.now(UTC),
    )
    event = envelope(paid, merchant_id, order_id)
    await gateway.publish(event)
    await gateway.publish(event)
    (printout,) = await printer.wait_for(1)
    assert "Noodle Bar 面吧" in printout.text.replace("\n", "")
    assert "2 x 牛肉面" in printout.text
    assert "36.00" in printout.text
    assert "35.00" in printout.text
    assert "-1.00" in printout.text
    assert "Cash 现金" in printout.text
    assert printout.qr_codes == [f"https://einvoice.example/{order_id}"]
    assert "-" * 32 in printout.text
    assert "-" * 33 not in printout.text
    await wait_job_state(gateway, merchant_id, store_id, order_id, "printed")
    assert len(await jobs(gateway, merchant_id, store_id)) == 1


async def test_a_printer_that_refuses_connections_gets_the_ticket_when_it_recovers(
    gateway: Gateway,
) -> None:
    merchant_id = uuid.uuid4()
    store_id = await gateway.store(merchant_id)
    printer = await gateway.printer()
    await gateway.bind_printer(merchant_id, store_id, printer, station="grill")
    await printer.stop()  # refuses connections
    sent = ticket(store_id, station="grill")
    await gateway.publish(envelope(sent, merchant_id, sent.ticket_id))

    async def retried() -> bool:
        found = await jobs(gateway, merchant_id, store_id)
        return bool(found) and found[0]["attempts"] >= 1 and found[0]["state"] == "queued"

    await eventually(retried, timeout=30.0)
    (job,) = await jobs(gateway, merchant_id, store_id)
    assert "cannot connect" in job["last_error"]
    await printer.start()
    await printer.wait_for(1)
    printed = await wait_job_state(gateway, merchant_id, store_id, sent.ticket_id, "printed")
    assert printed["attempts"] >= 2


async def test_failover_to_the_backup_printer_of_the_station(gateway: Gateway) -> None:
    merchant_id = uuid.uuid4()
    store_id = await gateway.store(merchant_id)
    primary = await gateway.printer()
    backup = await gateway.printer()
    await gateway.bind_printer(merchant_id, store_id, primary, station="cold", priority=0)
    backup_device = await gateway.bind_printer(
        merchant_id, store_id, backup, station="cold", priority=1
    )
    await primary.stop()
    sent = ticket(store_id, station="cold")
    await gateway.publish(envelope(sent, merchant_id, sent.ticket_id))
    await backup.wait_for(1)
    job = await wait_job_state(gateway, merchant_id, store_id, sent.ticket_id, "printed")
    assert job["device_id"] == backup_device["id"]
    assert job["attempts"] == 1  # failover within the attempt, no wait for a retry
    assert primary.printed == []


def gauge(scraped: str, name: str, label: str) -> float:
    for line in scraped.splitlines():
        if line.startswith(name + "{") and label in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{{{label}}} is not exposed")


async def test_paper_out_raises_an_alert_and_the_last_retry_fails_the_job(
    gateway: Gateway,
) -> None:
    merchant_id = uuid.uuid4()
    store_id = await gateway.store(merchant_id)
    printer = await gateway.printer()
    device = await gateway.bind_printer(merchant_id, store_id, printer, station="bar")
    printer.paper_out = True
    sent = ticket(store_id, station="bar")
    await gateway.publish(envelope(sent, merchant_id, sent.ticket_id))

    job = await wait_job_state(gateway, merchant_id, store_id, sent.ticket_id, "failed")
    assert job["attempts"] == 3
    assert "paper_out" in job["last_error"]
    assert printer.printed == []  # never sent to a printer without paper
    (failed,) = await gateway.wait_events("devices.print_job.failed", merchant_id)
    assert failed.payload["source_id"] == str(sent.ticket_id)
    response = await gateway.client.get(
        f"/v1/stores/{store_id}/alerts", headers=gateway.auth(merchant_id)
    )
    kinds = {(a["kind"], a["device_id"]) for a in response.json()["items"]}
    assert ("paper_out", device["id"]) in kinds
    assert ("print_failed", None) in kinds
    assert len([k for k in kinds if k[0] == "paper_out"]) == 1  # one open alert, not one per try
    # Operators see it too: the gauges behind the printer alerts of the dashboards.
    scraped = (await gateway.client.get("/metrics")).text
    assert gauge(scraped, "countertop_device_alerts_open", 'kind="paper_out"') >= 1
    assert gauge(scraped, "countertop_print_jobs", 'state="failed"') >= 1

    # Paper back in: a reprint comes out and the paper alert closes.
    printer.paper_out = False
    response = await gateway.client.post(
        f"/v1/print-jobs/{job['id']}/reprint", headers=gateway.auth(merchant_id)
    )
    assert response.status_code == 201, response.text
    (printout,) = await printer.wait_for(1)
    assert "REPRINT" in printout.text

    async def paper_alert_closed() -> bool:
        r = await gateway.client.get(
            f"/v1/stores/{store_id}/alerts", headers=gateway.auth(merchant_id)
        )
        return all(a["kind"] != "paper_out" for a in r.json()["items"])

    await eventually(paper_alert_closed, timeout=30.0)


async def test_another_merchants_print_jobs_are_invisible(gateway: Gateway) -> None:
    merchant_id, intruder = uuid.uuid4(), uuid.uuid4()
    store_id = await gateway.store(merchant_id)
    printer = await gateway.printer()
    await gateway.bind_printer(merchant_id, store_id, printer, station="hot")
    sent = ticket(store_id)
    await gateway.publish(envelope(sent, merchant_id, sent.ticket_id))
    job = await wait_job_state(gateway, merchant_id, store_id, sent.ticket_id, "printed")
    for path in (f"/v1/print-jobs/{job['id']}", f"/v1/stores/{store_id}/print-jobs"):
        response = await gateway.client.get(path, headers=gateway.auth(intruder))
        assert response.status_code == 404
    response = await gateway.client.post(
        f"/v1/print-jobs/{job['id']}/reprint", headers=gateway.auth(intruder)
    )
    assert response.status_code == 404


async def test_a_retry_is_due_after_its_backoff_not_at_the_next_poll(gateway: Gateway) -> None:
    dispatcher = gateway.client._transport.app.state.runtime.extras["print_dispatcher"]  # type: ignore[attr-defined]
    settings = dispatcher.settings
    saved = settings.print_poll_interval, settings.print_max_attempts
    # The poll alone would take a minute: only the dispatcher's own wake-up can retry sooner.
    settings.print_poll_interval, settings.print_max_attempts = 60.0, 20
    try:
        merchant_id = uuid.uuid4()
        store_id = await gateway.store(merchant_id)
        printer = await gateway.printer()
        await gateway.bind_printer(merchant_id, store_id, printer, station="grill")
        printer.paper_out = True
        sent = ticket(store_id, station="grill")
        await gateway.publish(envelope(sent, merchant_id, sent.ticket_id))

        async def tried_and_queued() -> bool:
            found = await jobs(gateway, merchant_id, store_id, source_id=str(sent.ticket_id))
            return bool(found) and found[0]["attempts"] >= 1 and found[0]["state"] == "queued"

        await eventually(tried_and_queued, timeout=30.0)
        printer.paper_out = False
        (printout,) = await printer.wait_for(1, timeout=10.0)
        assert "Dumplings" in printout.text
        job = await wait_job_state(gateway, merchant_id, store_id, sent.ticket_id, "printed")
        assert job["attempts"] >= 2
    finally:
        settings.print_poll_interval, settings.print_max_attempts = saved
        dispatcher.wake()
