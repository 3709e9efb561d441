"""Schema snapshots: rendering, writing, checking, and refusing to overwrite a breaking change."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from contracts.registry import EventPayload, EventRegistry
from contracts.snapshot import (
    ENVELOPE_SNAPSHOT,
    SCHEMAS_DIR,
    compare,
    live_schemas,
    main,
    published_events,
    render,
    snapshot_name,
    write,
)


def test_render_is_canonical() -> None:
    text = render({"b": 1, "a": {"d": "é", "c": [2, 1]}})
    assert (
        text
        == '{\n  "a": {\n    "c": [\n      2,\n      1\n    ],\n    "d": "é"\n  },\n  "b": 1\n}\n'
    )


def test_snapshot_name() -> None:
    assert snapshot_name("orders.order.placed", 2) == "orders.order.placed.v2.json"


def test_schemas_dir_is_inside_the_package() -> None:
    assert SCHEMAS_DIR.name == "schemas"
    assert (SCHEMAS_DIR.parent / "__init__.py").exists()


def test_write_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dir", str(tmp_path)]) == 0
    assert (tmp_path / ENVELOPE_SNAPSHOT).exists()
    assert "wrote" in capsys.readouterr().out
    assert main(["--dir", str(tmp_path), "--check"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["--dir", str(tmp_path)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_check_reports_missing_and_stale_snapshots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--dir", str(tmp_path), "--check"]) == 1
    assert "no snapshot committed; run python -m contracts.snapshot" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []

    main(["--dir", str(tmp_path)])
    path = tmp_path / ENVELOPE_SNAPSHOT
    schema = json.loads(path.read_text())
    schema["properties"]["producer"]["description"] = "an older wording"
    path.write_text(render(schema))
    capsys.readouterr()
    assert main(["--dir", str(tmp_path), "--check"]) == 1
    err = capsys.readouterr().err
    assert "compatible changes not in the snapshot; run python -m contracts.snapshot" in err
    assert main(["--dir", str(tmp_path)]) == 0
    assert main(["--dir", str(tmp_path), "--check"]) == 0


def test_orphaned_snapshots_are_reported_and_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["--dir", str(tmp_path)])
    orphan = tmp_path / "orders.order.retired.v1.json"
    orphan.write_text(render({"type": "object"}))
    capsys.readouterr()
    assert main(["--dir", str(tmp_path), "--check"]) == 1
    assert "orders.order.retired.v1.json: snapshot of an event no longer declared" in (
        capsys.readouterr().err
    )
    assert main(["--dir", str(tmp_path)]) == 1
    assert orphan.exists()


def test_writing_refuses_breaking_changes(tmp_path: Path) -> None:
    before, after = EventRegistry(), EventRegistry()

    @before.event(type="payments.payment.succeeded", version=1)
    class PaymentSucceeded(EventPayload):
        payment_id: uuid.UUID
        method: str

    @after.event(type="payments.payment.succeeded", version=1)
    class PaymentSucceededChanged(EventPayload):
        payment_id: uuid.UUID

    written, unresolved = write(tmp_path, live_schemas(before.registered_events()))
    assert sorted(written) == [ENVELOPE_SNAPSHOT, "payments.payment.succeeded.v1.json"]
    assert unresolved == []
    original = (tmp_path / "payments.payment.succeeded.v1.json").read_text()

    live = live_schemas(after.registered_events())
    written, unresolved = write(tmp_path, live)
    assert written == []
    (difference,) = unresolved
    assert difference.kind == "breaking"
    assert difference.changes == ["removed property 'method'"]
    assert "publish a new version" in difference.describe()
    assert (tmp_path / "payments.payment.succeeded.v1.json").read_text() == original

    written, unresolved = write(tmp_path, live, allow_breaking=True)
    assert written == ["payments.payment.succeeded.v1.json"]
    assert compare(tmp_path, live) == []


def test_published_events_are_those_declared_under_contracts_events() -> None:
    registry = EventRegistry()

    @registry.event(type="orders.order.placed", version=1)
    class DeclaredInATest(EventPayload):
        order_id: uuid.UUID

    assert registry.registered_events()[0].model is DeclaredInATest
    assert published_events(registry) == []
    for spec in published_events():
        assert spec.model.__module__.startswith("contracts.events.")
