"""Every published event schema (and the envelope) matches its committed snapshot.

A compatible change fails too, asking for the snapshot to be regenerated, so that what is
published is always what is committed. A breaking change to an existing ``(type, version)``
fails with the list of changes: it must be published as a new version.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Literal

import pytest

from contracts.money import Money
from contracts.registry import EventPayload, EventRegistry
from contracts.snapshot import (
    ENVELOPE_SNAPSHOT,
    SCHEMAS_DIR,
    Difference,
    compare,
    live_schemas,
    published_events,
    snapshot_name,
    write,
)

LIVE = live_schemas(published_events())


def _problems(differences: list[Difference]) -> str:
    return "\n".join(d.describe() for d in differences)


@pytest.mark.parametrize("name", sorted(LIVE))
def test_live_schema_matches_committed_snapshot(name: str) -> None:
    differences = [d for d in compare(SCHEMAS_DIR, LIVE) if d.file == name]
    assert not differences, _problems(differences)


def test_every_committed_snapshot_has_a_live_schema() -> None:
    orphaned = [d for d in compare(SCHEMAS_DIR, LIVE) if d.kind == "orphaned"]
    assert not orphaned, _problems(orphaned)


def test_the_envelope_is_snapshotted() -> None:
    assert ENVELOPE_SNAPSHOT in LIVE
    assert (SCHEMAS_DIR / ENVELOPE_SNAPSHOT).is_file()


def test_every_published_event_has_a_snapshot_file() -> None:
    missing = [
        snapshot_name(spec.event_type, spec.version)
        for spec in published_events()
        if not (SCHEMAS_DIR / snapshot_name(spec.event_type, spec.version)).is_file()
    ]
    assert not missing, f"no snapshot for {missing}; run python -m contracts.snapshot"


# -- the same checks on a published event that changes ---------------------------------------------


def _published(tmp_path: Path) -> Path:
    """Snapshots of a v1 ``orders.order.placed`` as it was released."""
    released = EventRegistry()

    @released.event(type="orders.order.placed", version=1)
    class OrderPlaced(EventPayload):
        order_id: uuid.UUID
        total: Money
        channel: Literal["pos", "mini_program", "delivery"]
        placed_at: datetime
        table: str | None = None

    write(tmp_path, live_schemas(released.registered_events()))
    return tmp_path


def test_breaking_change_to_a_published_version_fails_and_asks_for_a_new_version(
    tmp_path: Path,
) -> None:
    directory = _published(tmp_path)
    changed = EventRegistry()

    @changed.event(type="orders.order.placed", version=1)
    class OrderPlaced(EventPayload):
        order_id: uuid.UUID
        total: Money
        channel: Literal["pos", "delivery"]
        placed_at: datetime
        table: str
        cashier_id: uuid.UUID

    differences = compare(directory, live_schemas(changed.registered_events()))
    (difference,) = differences
    assert difference.file == "orders.order.placed.v1.json"
    assert difference.kind == "breaking"
    assert difference.changes == [
        "'channel': enum value(s) removed: 'mini_program'",
        "'table': no longer accepts null",
        "'table': became required",
        "new required property 'cashier_id'",
    ]
    message = difference.describe()
    assert "publish a new version" in message
    for change in difference.changes:
        assert change in message


def test_breaking_change_as_a_new_version_passes(tmp_path: Path) -> None:
    directory = _published(tmp_path)
    registry = EventRegistry()

    @registry.event(type="orders.order.placed", version=1)
    class OrderPlaced(EventPayload):
        order_id: uuid.UUID
        total: Money
        channel: Literal["pos", "mini_program", "delivery"]
        placed_at: datetime
        table: str | None = None

    @registry.event(type="orders.order.placed", version=2)
    class OrderPlacedV2(EventPayload):
        order_id: uuid.UUID
        total: Money
        cashier_id: uuid.UUID

    live = live_schemas(registry.registered_events())
    assert [d.kind for d in compare(directory, live)] == ["missing"]
    write(directory, live)
    assert compare(directory, live) == []


def test_compatible_change_fails_until_regenerated(tmp_path: Path) -> None:
    directory = _published(tmp_path)
    registry = EventRegistry()

    @registry.event(type="orders.order.placed", version=1)
    class OrderPlaced(EventPayload):
        order_id: uuid.UUID
        total: Money
        channel: Literal["pos", "mini_program", "delivery", "kiosk"]
        placed_at: datetime
        table: str | None = None
        guests: int | None = None

    live = live_schemas(registry.registered_events())
    (difference,) = compare(directory, live)
    assert difference.kind == "outdated"
    assert "run python -m contracts.snapshot" in difference.describe()
    write(directory, live)
    assert compare(directory, live) == []
