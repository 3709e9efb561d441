"""The kitchen display feed (SSE with Last-Event-ID, bump, recall), the bridge reconnecting
to a broker that went away, and a print job whose dispatcher died mid-job."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
import uvicorn

from device_gateway.main import create_app
from device_gateway.models import PrintJob
from servicekit.bus.factory import InMemoryBus
from servicekit.embedded.ports import free_port
from servicekit.testing.proxy import TcpProxy
from servicekit.testing.tokens import static_verifier
from servicekit.testing.wait import eventually

from .conftest import KEY, Gateway, envelope, settings_for
from .test_printing import ticket, wait_job_state
from .test_registry_and_mqtt import bind_terminal


@contextlib.asynccontextmanager
async def served(gw: Gateway) -> AsyncIterator[str]:
    """The gateway app on a real HTTP server: httpx's ASGI transport buffers whole responses,
    so a never-ending event stream needs a socket."""
    transport = gw.client._transport
    assert isinstance(transport, httpx.ASGITransport)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(transport.app, host="127.0.0.1", port=port, lifespan="off", log_config=None)
    )
    task = asyncio.create_task(server.serve())
    await eventually(lambda: _flag(server.started), timeout=10.0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def _flag(value: bool) -> bool:
    return value


async def read_events(
    gw: Gateway, merchant_id: uuid.UUID, store_id: uuid.UUID, count: int, **headers: str
) -> list[dict[str, Any]]:
    """The first ``count`` SSE events of the store's stream."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    async with (
        served(gw) as base_url,
        httpx.AsyncClient(base_url=base_url) as client,
        client.stream(
            "GET",
            f"/v1/stores/{store_id}/kds/stream",
            params={"station": "hot"},
            headers={**gw.auth(merchant_id), **headers},
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                current["id"] = int(line[4:])
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
            elif line == "" and "data" in current:
                events.append(current)
                current = {}
                if len(events) == count:
                    break
    return events


async def test_kitchen_display_feed_resumes_with_last_event_id(gateway: Gateway) -> None:
    merchant_id = uuid.uuid4()
    store_id = await gateway.store(merchant_id)
    first, second = ticket(store_id), ticket(store_id)
    elsewhere = ticket(store_id, station="bar")
    for sent in (first, elsewhere, second):
        await gateway.publish(envelope(sent, merchant_id, sent.ticket_id))
    await gateway.publish(envelope(first, merchant_id, first.ticket_id))  # a duplicate

    events = await asyncio.wait_for(read_events(gateway, merchant_id, store_id, 2), 30.0)
    # Tickets are keyed by their own ids, so two of them may arrive in either order.
    assert {e["data"]["ticket_id"] for e in events} == {str(first.ticket_id), str(second.ticket_id)}
    assert {e["data"]["state"] for e in events} == {"new"}
    assert events[0]["data"]["lines"][0]["name"] == "牛肉面"

    bump = f"/v1/stores/{store_id}/kds/tickets/{first.ticket_id}/bump"
    assert (await gateway.client.post(bump, headers=gateway.auth(merchant_id))).json()[
        "state"
    ] == "in_progress"
    done = await gateway.client.post(bump, headers=gateway.auth(merchant_id))
    assert done.json()["state"] == "done"
    again = await gateway.client.post(bump, headers=gateway.auth(merchant_id))
    assert again.status_code == 409
    assert again.json()["code"] == "ticket_already_done"
    recalled = await gateway.client.post(
        bump, json={"to": "recalled"}, headers=gateway.auth(merchant_id)
    )
    assert recalled.json()["state"] == "recalled"

    # A display that saw the first two events resumes after them and gets only what changed.
    resumed = await asyncio.wait_for(
        read_events(
            gateway,
            merchant_id,
            store_id,
            3,
            **{"Last-Event-ID": str(max(e["id"] for e in events))},
        ),
        30.0,
    )
    assert [(e["data"]["ticket_id"], e["data"]["state"]) for e in resumed] == [
        (str(first.ticket_id), "in_progress"),
        (str(first.ticket_id), "done"),
        (str(first.ticket_id), "recalled"),
    ]
    assert all(e["id"] > max(seen["id"] for seen in events) for e in resumed)

    open_now = await gateway.client.get(
        f"/v1/stores/{store_id}/kds/tickets",
        params={"station": "hot"},
        headers=gateway.auth(merchant_id),
    )
    assert {t["ticket_id"] for t in open_now.json()} == {
        str(first.ticket_id),
        str(second.ticket_id),
    }
    # Another merchant neither bumps nor watches this store's tickets.
    intruder = uuid.uuid4()
    assert (await gateway.client.post(bump, headers=gateway.auth(intruder))).status_code == 404
    response = await gateway.client.get(
        f"/v1/stores/{store_id}/kds/stream", headers=gateway.auth(intruder)
    )
    assert response.status_code == 404


async def test_bridge_reconnects_and_sends_commands_queued_while_the_broker_was_away(
    gateway: Gateway, gateway_url: str
) -> None:
    merchant_id = uuid.uuid4()
    store_id = await gateway.store(merchant_id)
    device = await bind_terminal(gateway, merchant_id, store_id)
    sn = device["sn"]
    host, port = gateway.mqtt_url.split("://", 1)[1].rsplit("@", 1)[-1].split(":")
    proxy = TcpProxy(free_port(), host, int(port))
    await proxy.start()
    credentials = gateway.mqtt_url.split("://", 1)[1].rsplit("@", 1)
    auth_part = f"{credentials[0]}@" if len(credentials) == 2 else ""
    settings = settings_for(
        gateway_url,
        f"mqtt://{auth_part}127.0.0.1:{proxy.listen_port}",
        run_printing=False,
        run_consumers=False,
        run_relay=False,
        mqtt_reconnect_backoff=0.1,
        mqtt_reconnect_backoff_max=0.5,
        mqtt_client_id="countertop-test-gateway-proxied",
    )
    # The session's gateway must not send this device's commands: only the one behind the proxy.
    app = create_app(settings, bus=InMemoryBus(), token_verifier=static_verifier(KEY))
    main_bridge = gateway_bridge(gateway)
    await main_bridge.stop()
    try:
        async with app.router.lifespan_context(app):
            bridge = app.state.runtime.extras["mqtt_bridge"]
            await eventually(lambda: _is_set(bridge.connected), timeout=30.0)
            async with gateway.mqtt_client(sn, clean_session=False) as device_client:
                await device_client.subscribe(f"devices/{sn}/commands", qos=1)
                await device_client.publish(f"devices/{sn}/presence", b"online", qos=1)

                async def online() -> bool:
                    r = await gateway.client.get(
                        f"/v1/devices/{device['id']}", headers=gateway.auth(merchant_id)
                    )
                    return bool(r.json()["online"])

                await eventually(online, timeout=30.0)
                await proxy.cut()
                await eventually(lambda: _is_set(bridge.connected, False), timeout=30.0)
                response = await gateway.client.post(
                    f"/v1/devices/{device['id']}/commands",
                    json={"kind": "open_drawer"},
                    headers=gateway.auth(merchant_id),
                )
                command_id = response.json()["id"]
                await proxy.restore()

                async def delivered() -> str:
                    async for message in device_client.messages:
                        if message.topic.matches(f"devices/{sn}/commands"):
                            assert isinstance(message.payload, bytes)
                            return str(json.loads(message.payload)["command_id"])
                    return ""

                assert await asyncio.wait_for(delivered(), 30.0) == command_id
                assert bridge.connections >= 2
    finally:
        await proxy.stop()
        await main_bridge.start()


def gateway_bridge(gw: Gateway) -> Any:
    # The session app's bridge, reached through the ASGI transport's app.
    transport = gw.client._transport
    assert isinstance(transport, httpx.ASGITransport)
    return transport.app.state.runtime.extras["mqtt_bridge"]  # type: ignore[attr-defined]


async def _is_set(event: asyncio.Event, expected: bool = True) -> bool:
    return event.is_set() == expected


async def test_a_job_whose_dispatcher_died_is_printed_when_its_lease_ends(gateway: Gateway) -> None:
    merchant_id = uuid.uuid4()
    store_id = await gateway.store(merchant_id)
    printer = await gateway.printer()
    await gateway.bind_printer(merchant_id, store_id, printer, station="hot")
    sent = ticket(store_id)
    await printer.stop()  # the first attempt fails
    await gateway.publish(envelope(sent, merchant_id, sent.ticket_id))

    async def attempted() -> bool:
        async with gateway.database.transaction() as session:
            job = await session.scalar(
                sa.select(PrintJob).where(PrintJob.source_id == sent.ticket_id)
            )
            return job is not None and job.attempts >= 1

    await eventually(attempted, timeout=30.0)
    # As a dispatcher that claimed the job and died would leave it: sent, lease ended.
    async with gateway.database.transaction() as session:
        await session.execute(
            sa.update(PrintJob)
            .where(PrintJob.source_id == sent.ticket_id)
            .values(state="sent", next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    await printer.start()
    await printer.wait_for(1)
    await wait_job_state(gateway, merchant_id, store_id, sent.ticket_id, "printed")
