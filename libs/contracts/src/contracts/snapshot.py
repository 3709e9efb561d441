"""Committed JSON Schema snapshots of every published event and of the envelope.

``python -m contracts.snapshot`` writes ``contracts/schemas/<type>.v<version>.json`` for every event
declared under ``contracts.events`` and ``envelope.v1.json`` for :class:`EventEnvelope`. It refuses
to overwrite a snapshot with a breaking change (see :mod:`contracts.compat`): that change needs a
new version, unless ``--allow-breaking`` says the old one was never released.

``python -m contracts.snapshot --check`` writes nothing and exits 1 listing every snapshot that is
missing, out of date, broken by the live schema, or left without a model.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from contracts.compat import breaking_changes
from contracts.envelope import EventEnvelope
from contracts.registry import EventRegistry, EventSpec, default_registry

SCHEMAS_DIR = Path(__file__).resolve().parent / "schemas"
ENVELOPE_SNAPSHOT = "envelope.v1.json"
PUBLISHED_PACKAGE = "contracts.events"
REGENERATE_HINT = "run python -m contracts.snapshot"
NEW_VERSION_HINT = "publish a new version of the event instead"

DifferenceKind = Literal["missing", "outdated", "breaking", "orphaned"]


@dataclass(frozen=True)
class Difference:
    """How one snapshot file differs from the live schema."""

    file: str
    kind: DifferenceKind
    changes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.kind == "missing":
            return f"{self.file}: no snapshot committed; {REGENERATE_HINT}"
        if self.kind == "outdated":
            return f"{self.file}: compatible changes not in the snapshot; {REGENERATE_HINT}"
        if self.kind == "orphaned":
            return (
                f"{self.file}: snapshot of an event no longer declared; a published event "
                "cannot disappear while consumers may still receive it"
            )
        lines = [f"{self.file}: breaking changes to a published schema; {NEW_VERSION_HINT}:"]
        lines += [f"  - {change}" for change in self.changes]
        return "\n".join(lines)


def snapshot_name(event_type: str, version: int) -> str:
    return f"{event_type}.v{version}.json"


def render(schema: Mapping[str, Any]) -> str:
    """The committed form of a schema: sorted keys, two-space indent, trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def published_events(registry: EventRegistry | None = None) -> list[EventSpec]:
    """Registrations declared under ``contracts.events`` (not, say, in a test module)."""
    if registry is None:
        import contracts.events  # noqa: F401  (registers every published event)

        registry = default_registry
    return [
        spec
        for spec in registry.registered_events()
        if spec.model.__module__ == PUBLISHED_PACKAGE
        or spec.model.__module__.startswith(PUBLISHED_PACKAGE + ".")
    ]


def live_schemas(events: Sequence[EventSpec]) -> dict[str, dict[str, Any]]:
    """Snapshot file name -> current JSON Schema, for ``events`` and the envelope."""
    schemas = {ENVELOPE_SNAPSHOT: EventEnvelope.model_json_schema()}
    for spec in events:
        schemas[snapshot_name(spec.event_type, spec.version)] = spec.model.model_json_schema()
    return schemas


def _load(path: Path) -> dict[str, Any]:
    loaded = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} does not hold a JSON Schema object")
    return loaded


def compare(directory: Path, live: Mapping[str, Mapping[str, Any]]) -> list[Difference]:
    """Every difference between the snapshots in ``directory`` and the ``live`` schemas."""
    differences: list[Difference] = []
    for name in sorted(live):
        path = directory / name
        if not path.exists():
            differences.append(Difference(name, "missing"))
            continue
        if path.read_text(encoding="utf-8") == render(live[name]):
            continue
        changes = breaking_changes(_load(path), live[name])
        differences.append(Difference(name, "breaking" if changes else "outdated", changes))
    if directory.is_dir():
        for path in sorted(directory.glob("*.json")):
            if path.name not in live:
                differences.append(Difference(path.name, "orphaned"))
    return differences


def write(
    directory: Path, live: Mapping[str, Mapping[str, Any]], *, allow_breaking: bool = False
) -> tuple[list[str], list[Difference]]:
    """Write the snapshots that are missing or out of date.

    Returns the files written and the differences left unresolved: breaking changes (written
    only with ``allow_breaking``) and orphaned snapshots, which are never deleted automatically.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    unresolved: list[Difference] = []
    for difference in compare(directory, live):
        if difference.kind == "orphaned" or (difference.kind == "breaking" and not allow_breaking):
            unresolved.append(difference)
            continue
        (directory / difference.file).write_text(render(live[difference.file]), encoding="utf-8")
        written.append(difference.file)
    return written, unresolved


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m contracts.snapshot",
        description="Write or check the JSON Schema snapshots of the published events.",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 on any difference"
    )
    parser.add_argument(
        "--allow-breaking",
        action="store_true",
        help="overwrite snapshots even with breaking changes (only for unreleased versions)",
    )
    parser.add_argument("--dir", type=Path, default=SCHEMAS_DIR, help="snapshot directory")
    args = parser.parse_args(argv)

    live = live_schemas(published_events())
    if args.check:
        differences = compare(args.dir, live)
        for difference in differences:
            print(difference.describe(), file=sys.stderr)
        if not differences:
            print(f"{len(live)} schema snapshots up to date")
        return 1 if differences else 0

    written, unresolved = write(args.dir, live, allow_breaking=args.allow_breaking)
    for name in written:
        print(f"wrote {args.dir / name}")
    for difference in unresolved:
        print(difference.describe(), file=sys.stderr)
    if not written and not unresolved:
        print(f"{len(live)} schema snapshots up to date")
    return 1 if unresolved else 0


if __name__ == "__main__":
    raise SystemExit(main())
