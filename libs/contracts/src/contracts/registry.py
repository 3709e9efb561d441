"""The event-schema registry: which pydantic model is the payload of each ``(type, version)``.

A payload model is declared once, in ``contracts/events/<service>.py``::

    @event(type="orders.order.placed", version=1)
    class OrderPlaced(EventPayload):
        order_id: UUID
        total: Money

Producers build envelopes with :func:`make_envelope`; consumers turn an envelope's payload back
into the model with :func:`validate_payload`. The JSON Schema of every registered model is
snapshotted (``python -m contracts.snapshot``) and the contract tests refuse breaking changes to a
published ``(type, version)``: a breaking change is a new version.

Payload models ignore unknown fields (``extra="ignore"``) rather than forbid them. Adding an
optional field is a compatible change within a version, and producers are deployed
independently of consumers: a consumer still on the previous model must accept the newer
payload, not send it to the dead-letter topic. The registry refuses models declared with
``extra="forbid"`` for that reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from pydantic import BaseModel, ConfigDict

from contracts.envelope import EventEnvelope, utcnow
from contracts.topics import split_event_type

ModelT = TypeVar("ModelT", bound=type[BaseModel])


class UnknownEventType(LookupError):
    """No payload model is registered for an event's ``(type, version)``."""

    def __init__(self, event_type: str, version: int) -> None:
        super().__init__(f"no payload model registered for {event_type!r} version {version}")
        self.event_type = event_type
        self.version = version


class DuplicateEvent(ValueError):
    """Two different models were registered for the same ``(type, version)``."""


class EventPayload(BaseModel):
    """Base class for event payloads: immutable, unknown fields ignored (see the module doc)."""

    model_config = ConfigDict(frozen=True, extra="ignore")


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One registration: the payload ``model`` of ``event_type`` at ``version``."""

    event_type: str
    version: int
    model: type[BaseModel]

    @property
    def service(self) -> str:
        return split_event_type(self.event_type)[0]

    @property
    def aggregate_type(self) -> str:
        return split_event_type(self.event_type)[1]

    @property
    def key(self) -> tuple[str, int]:
        return (self.event_type, self.version)


class EventRegistry:
    """A set of registrations. The module-level functions use one shared instance,
    :data:`default_registry`; a separate instance keeps test-only events out of it."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, int], EventSpec] = {}
        self._by_model: dict[type[BaseModel], EventSpec] = {}

    def event(self, *, type: str, version: int = 1) -> Callable[[ModelT], ModelT]:
        """Class decorator registering a payload model for ``(type, version)``."""
        split_event_type(type)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"event version must be an int >= 1, got {version!r}")

        def register(model: ModelT) -> ModelT:
            self.register(EventSpec(event_type=type, version=version, model=model))
            return model

        return register

    def register(self, spec: EventSpec) -> None:
        model = spec.model
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"{spec.event_type} v{spec.version}: payload must be a pydantic model")
        if model.model_config.get("extra") == "forbid":
            raise TypeError(
                f"{model.__qualname__}: payload models must not forbid extra fields, or "
                "consumers on an older model reject payloads that gained an optional field"
            )
        if model in self._by_model and self._by_model[model].key != spec.key:
            other = self._by_model[model]
            raise DuplicateEvent(
                f"{model.__qualname__} is already registered as {other.event_type} v{other.version}"
            )
        existing = self._by_key.get(spec.key)
        if existing is not None and existing.model is not model:
            if _same_definition(existing.model, model):
                # The defining module was imported again (a reload): the new class replaces
                # the stale one.
                del self._by_model[existing.model]
            else:
                raise DuplicateEvent(
                    f"{spec.event_type} v{spec.version} is already registered to "
                    f"{existing.model.__module__}.{existing.model.__qualname__}"
                )
        self._by_key[spec.key] = spec
        self._by_model[model] = spec

    def spec_for(self, model: type[BaseModel]) -> EventSpec:
        try:
            return self._by_model[model]
        except KeyError:
            raise LookupError(f"{model.__qualname__} is not a registered event payload") from None

    def payload_model(self, event_type: str, version: int) -> type[BaseModel]:
        spec = self._by_key.get((event_type, version))
        if spec is None:
            raise UnknownEventType(event_type, version)
        return spec.model

    def registered_events(self) -> list[EventSpec]:
        """Every registration, sorted by type then version."""
        return [self._by_key[key] for key in sorted(self._by_key)]

    def validate_payload(self, envelope: EventEnvelope) -> BaseModel:
        """The envelope's payload as its registered model (``pydantic.ValidationError`` if it
        does not match, :class:`UnknownEventType` if nothing is registered)."""
        model = self.payload_model(envelope.type, envelope.version)
        return model.model_validate(envelope.payload)

    def make_envelope(
        self,
        payload: BaseModel,
        *,
        producer: str,
        aggregate_id: str | uuid.UUID,
        merchant_id: uuid.UUID | None = None,
        store_id: uuid.UUID | None = None,
        correlation_id: uuid.UUID | None = None,
        causation_id: uuid.UUID | None = None,
        occurred_at: datetime | None = None,
    ) -> EventEnvelope:
        """An envelope for ``payload``, with type, version and aggregate type taken from the
        registration of the payload's model. The payload is stored in its JSON form, exactly
        as it goes on the bus."""
        spec = self.spec_for(type(payload))
        return EventEnvelope(
            type=spec.event_type,
            version=spec.version,
            occurred_at=occurred_at if occurred_at is not None else utcnow(),
            producer=producer,
            merchant_id=merchant_id,
            store_id=store_id,
            aggregate_type=spec.aggregate_type,
            aggregate_id=str(aggregate_id),
            correlation_id=correlation_id,
            causation_id=causation_id,
            payload=payload.model_dump(mode="json"),
        )


def _same_definition(a: type[BaseModel], b: type[BaseModel]) -> bool:
    return (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


default_registry = EventRegistry()
"""The registry that ``contracts.events`` modules register into."""


def event(*, type: str, version: int = 1) -> Callable[[ModelT], ModelT]:
    """Register the decorated payload model as ``(type, version)`` in the default registry."""
    return default_registry.event(type=type, version=version)


def payload_model(event_type: str, version: int) -> type[BaseModel]:
    """The payload model of ``(event_type, version)``; :class:`UnknownEventType` if none."""
    return default_registry.payload_model(event_type, version)


def registered_events() -> list[EventSpec]:
    """Every registration in the default registry, sorted by type then version."""
    return default_registry.registered_events()


def validate_payload(envelope: EventEnvelope) -> BaseModel:
    """The envelope's payload validated against its registered model."""
    return default_registry.validate_payload(envelope)


def make_envelope(
    payload: BaseModel,
    *,
    producer: str,
    aggregate_id: str | uuid.UUID,
    merchant_id: uuid.UUID | None = None,
    store_id: uuid.UUID | None = None,
    correlation_id: uuid.UUID | None = None,
    causation_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
) -> EventEnvelope:
    """An envelope for a registered payload (see :meth:`EventRegistry.make_envelope`)."""
    return default_registry.make_envelope(
        payload,
        producer=producer,
        aggregate_id=aggregate_id,
        merchant_id=merchant_id,
        store_id=store_id,
        correlation_id=correlation_id,
        causation_id=causation_id,
        occurred_at=occurred_at,
    )
