"""Structured logs: one JSON object per line on stderr, carrying the service name and the trace and
span ids of the active span, so a log line leads to its trace and back.

``setup_logging`` installs one handler on the root logger and routes uvicorn's loggers through it.
Run uvicorn with ``log_config=None`` so it does not install its own handlers over these.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import logging
import sys
import uuid
from decimal import Decimal
from typing import Any, Final, Literal, TextIO

from opentelemetry import trace
from opentelemetry.trace import format_span_id, format_trace_id
from pydantic import BaseModel

__all__ = [
    "ConsoleFormatter",
    "JsonFormatter",
    "LogFormat",
    "TraceContextFilter",
    "setup_logging",
]

LogFormat = Literal["json", "console"]

# Attributes every LogRecord has; anything else on a record came from ``extra={...}``.
_RECORD_ATTRIBUTES: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)
# Set by TraceContextFilter; rendered as fields of their own, not as extras.
_CONTEXT_ATTRIBUTES: Final = frozenset({"service", "trace_id", "span_id"})
# uvicorn passes an ANSI-coloured copy of its message as an extra.
_IGNORED_EXTRAS: Final = frozenset({"color_message"})
_UVICORN_LOGGERS: Final = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


class TraceContextFilter(logging.Filter):
    """Stamps each record with ``service`` and, while a span is active, ``trace_id`` and
    ``span_id`` (lower-case hex, as trace backends display them).

    A filter rather than formatter logic because it runs in the thread and context of the logging
    call, where the span is current."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        if not hasattr(record, "trace_id"):
            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                record.trace_id = format_trace_id(context.trace_id)
                record.span_id = format_span_id(context.span_id)
            else:
                record.trace_id = None
                record.span_id = None
        return True


def _timestamp(record: logging.LogRecord) -> str:
    moment = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _RECORD_ATTRIBUTES
        and key not in _CONTEXT_ATTRIBUTES
        and key not in _IGNORED_EXTRAS
        and not key.startswith("_")
    }


def _json_default(value: object) -> object:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    # A log line is never worth an exception: anything else is logged as its repr.
    return repr(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: timestamp (UTC ISO 8601), level, logger, message, service,
    trace_id, span_id, exception (the formatted traceback) when there is one, and the record's
    ``extra`` fields. An extra never overrides one of those keys."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "timestamp": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": getattr(record, "service", None),
            "trace_id": getattr(record, "trace_id", None),
            "span_id": getattr(record, "span_id", None),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exception"] = record.exc_text
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        for key, value in _extras(record).items():
            payload.setdefault(key, value)
        return json.dumps(payload, default=_json_default, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """A human-readable line for a terminal: time, level, logger, message, extras as key=value,
    the trace id when there is one, then the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            _timestamp(record),
            f"{record.levelname:<8}",
            f"{record.name}:",
            record.getMessage(),
        ]
        parts.extend(
            f"{key}={json.dumps(value, default=_json_default, ensure_ascii=False)}"
            for key, value in _extras(record).items()
        )
        trace_id = getattr(record, "trace_id", None)
        if trace_id:
            parts.append(f"trace_id={trace_id}")
        line = " ".join(parts)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class _ServicekitHandler(logging.StreamHandler[TextIO]):
    """The handler ``setup_logging`` owns. Without an explicit stream it writes to whatever
    ``sys.stderr`` is at emit time, so redirections made after setup (test capture) are honoured."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self._follow_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self._follow_stderr:
            self.stream = sys.stderr
        super().emit(record)


def setup_logging(
    service_name: str,
    level: str | int = "INFO",
    fmt: LogFormat | str = "json",
    *,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send every log record (the root logger and uvicorn's) through one handler writing
    ``fmt`` ("json", or "console" for people) to ``stream`` (stderr by default). Returns it.

    Idempotent: a second call replaces the handler installed by the first instead of adding one,
    so nothing is logged twice. Handlers installed by others (pytest's capture) are left alone.
    """
    if fmt not in ("json", "console"):
        raise ValueError(f"unknown log format {fmt!r}: expected 'json' or 'console'")
    if isinstance(level, str):
        resolved = logging.getLevelNamesMapping().get(level.upper())
        if resolved is None:
            raise ValueError(f"unknown log level {level!r}")
        level = resolved

    handler = _ServicekitHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    handler.addFilter(TraceContextFilter(service_name))

    root = logging.getLogger()
    for existing in list(root.handlers):
        if isinstance(existing, _ServicekitHandler):
            root.removeHandler(existing)
            existing.close()
    root.addHandler(handler)
    root.setLevel(level)

    # uvicorn's own logging config gives its loggers private handlers and stops propagation;
    # undo that so its lines get the same format and trace context.
    for name in _UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        for existing in list(uvicorn_logger.handlers):
            uvicorn_logger.removeHandler(existing)
        uvicorn_logger.propagate = True
        uvicorn_logger.setLevel(logging.NOTSET)
    return handler
