"""Events of the device gateway: devices bound to stores, their presence, failed print jobs
and device alerts a store manager should see.

The gateway's service name is ``device-gateway``, so its event types are
``devices.device.bound``, ``devices.print_job.failed`` and so on.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime

from contracts.registry import EventPayload, event

DeviceType = Literal[
    "pos_terminal",
    "receipt_printer",
    "kitchen_printer",
    "label_printer",
    "scanner",
    "kds",
    "cash_drawer",
]
AlertKind = Literal["paper_out", "cover_open", "offline", "print_failed"]


class DeviceRef(EventPayload):
    """What every device event says about the device."""

    device_id: UUID
    sn: str
    type: DeviceType
    store_id: UUID
    station: str | None = None


@event(type="devices.device.bound", version=1)
class DeviceBound(DeviceRef):
    bound_by: UUID | None = None


@event(type="devices.device.unbound", version=1)
class DeviceUnbound(DeviceRef):
    unbound_by: UUID | None = None


@event(type="devices.device.rebound", version=1)
class DeviceRebound(DeviceRef):
    """The device moved to ``store_id`` (of the envelope's merchant) in one step."""

    previous_merchant_id: UUID
    previous_store_id: UUID
    rebound_by: UUID | None = None


@event(type="devices.device.online", version=1)
class DeviceOnline(DeviceRef):
    at: AwareDatetime


@event(type="devices.device.offline", version=1)
class DeviceOffline(DeviceRef):
    at: AwareDatetime
    last_seen_at: AwareDatetime | None = None


@event(type="devices.print_job.failed", version=1)
class PrintJobFailed(EventPayload):
    """The last retry of a print job failed: nothing was printed."""

    job_id: UUID
    store_id: UUID
    source: Literal["kitchen_ticket", "receipt", "reprint"]
    source_id: UUID
    station: str | None = None
    attempts: int
    reason: str


@event(type="devices.alert.raised", version=1)
class DeviceAlertRaised(EventPayload):
    alert_id: UUID
    store_id: UUID
    device_id: UUID | None = None
    kind: AlertKind
    detail: str


@event(type="devices.alert.resolved", version=1)
class DeviceAlertResolved(EventPayload):
    alert_id: UUID
    store_id: UUID
    device_id: UUID | None = None
    kind: AlertKind
