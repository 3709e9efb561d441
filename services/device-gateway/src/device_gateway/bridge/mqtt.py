"""The MQTT bridge: the gateway's connection to the broker (aiomqtt).

It subscribes to ``devices/+/+`` with QoS 1 and applies each message in a transaction; it
publishes queued commands to ``devices/{sn}/commands`` with QoS 1. Its session is persistent
(``clean_session=False`` under a fixed client id), so the broker keeps device messages that
arrive while the gateway reconnects; commands wait in the database, not in memory. When the
broker goes away the bridge reconnects with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import unquote, urlsplit

import aiomqtt

from device_gateway.bridge import service
from device_gateway.common import utcnow
from device_gateway.config import Settings
from device_gateway.listen import listen_forever
from servicekit.db import Database

log = logging.getLogger(__name__)

SUBSCRIPTION = "devices/+/+"


class MqttBridge:
    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.settings = settings
        url = urlsplit(settings.mqtt_url)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 1883
        self.username = unquote(url.username) if url.username else None
        self.password = unquote(url.password) if url.password else None
        self.connected = asyncio.Event()
        self.connections = 0
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name="mqtt-bridge"),
            asyncio.create_task(
                listen_forever(self.database, {service.COMMANDS_CHANNEL: self._wake.set}),
                name="mqtt-commands-listen",
            ),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    async def _run(self) -> None:
        backoff = self.settings.mqtt_reconnect_backoff
        while True:
            try:
                client = aiomqtt.Client(
                    self.host,
                    self.port,
                    username=self.username,
                    password=self.password,
                    identifier=self.settings.mqtt_client_id,
                    clean_session=False,
                    keepalive=30,
                    timeout=10,
                )
                async with client:
                    await client.subscribe(SUBSCRIPTION, qos=1)
                    self.connections += 1
                    self.connected.set()
                    backoff = self.settings.mqtt_reconnect_backoff
                    log.info("MQTT bridge connected to %s:%s", self.host, self.port)
                    sender = asyncio.create_task(self._send_loop(client), name="mqtt-sender")
                    try:
                        async for message in client.messages:
                            await self._receive(message)
                    finally:
                        sender.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await sender
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("MQTT bridge disconnected (%s); retrying in %.1fs", exc, backoff)
            self.connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.settings.mqtt_reconnect_backoff_max)

    async def _receive(self, message: aiomqtt.Message) -> None:
        parts = message.topic.value.split("/")
        if len(parts) != 3 or parts[0] != "devices" or parts[2] == "commands":
            return
        payload = (
            message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        )
        try:
            async with self.database.transaction() as session:
                wake = await service.handle(session, parts[1], parts[2], payload)
        except Exception as exc:
            # A message that cannot be applied must not stop the bridge; devices repeat
            # presence and heartbeats, and acks are resent with the command.
            log.warning("MQTT message on %s not applied: %s", message.topic.value, exc)
            return
        if wake:
            self._wake.set()

    async def _send_loop(self, client: aiomqtt.Client) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.command_poll_interval)
            self._wake.clear()
            try:
                await self.send_pending(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Nothing was marked sent (the transaction rolled back): the next round
                # sends it again. A dead connection ends the receive loop and reconnects.
                log.warning("sending device commands failed: %s", exc)
                await asyncio.sleep(self.settings.command_poll_interval)

    async def send_pending(self, client: aiomqtt.Client) -> int:
        sent = 0
        async with self.database.transaction() as session:
            batch = await service.sendable(session, self.settings.command_resend_seconds)
            for command, sn in batch:
                # Published before the commit: if the commit fails the command is sent again,
                # and the device dedupes by command_id.
                await client.publish(
                    f"devices/{sn}/commands", service.command_message(command), qos=1
                )
                command.state = "sent"
                command.sent_at = utcnow()
                command.attempts += 1
                sent += 1
        if sent:
            # Resent when still unacknowledged then: wake for it rather than poll.
            asyncio.get_running_loop().call_later(
                self.settings.command_resend_seconds + 0.05, self._wake.set
            )
        return sent
