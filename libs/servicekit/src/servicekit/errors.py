"""RFC 9457 problem details: the one error format every Countertop HTTP API answers with.

Handlers raise a :class:`Problem` (or one of its subclasses); :func:`install_problem_handlers`
turns it, FastAPI's request validation errors, Starlette's HTTP exceptions and anything
unexpected into an ``application/problem+json`` response with a stable snake_case ``code``.
A stack trace is logged, never sent.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final, get_args
from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core.core_schema import ErrorType
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.text import (
    INVALID_CHARACTER,
    MESSAGE,
    is_storable,
    may_hold_unstorable_json,
    unstorable_fields,
)

log = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE: Final = "application/problem+json"
PROBLEM_TYPE_BASE: Final = "https://countertop.dev/problems/"

_CODE_RE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
_STANDARD_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "code", "errors"})

#: Statuses that say "not processed, try again" rather than answer the request: a problem
#: with one of them (or any 5xx) is transient unless it says otherwise.
TRANSIENT_STATUSES: Final = frozenset({401, 403, 408, 423, 425, 429})
#: Where the problem handler notes, in the ASGI scope, that the answer it rendered is transient
#: (read by the idempotency layer, which must never keep such an answer for replay).
TRANSIENT_SCOPE_KEY: Final = "countertop.transient_problem"


def problem_type(code: str) -> str:
    """The ``type`` URI of a problem code."""
    return PROBLEM_TYPE_BASE + code


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _status_code_name(status: int) -> str:
    """A snake_case code derived from the status phrase, for errors raised without one."""
    return re.sub(r"[^a-z0-9]+", "_", _phrase(status).lower()).strip("_") or "error"


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid input: where (``lines[0].quantity``), a stable code, and a human message."""

    field: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


class Problem(Exception):
    """An error with an HTTP status and a stable ``code``, rendered as problem+json.

    ``extra`` keyword arguments become extension members of the body (``current_version=3``);
    ``headers`` are sent with the response (``Retry-After``, ``WWW-Authenticate``).
    ``transient`` marks an answer that may change when the client simply retries (a replica
    not caught up yet, a lock, a throttle); it defaults to true for 5xx and
    :data:`TRANSIENT_STATUSES`. A transient answer is never stored under an idempotency key.
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str | None = None,
        *,
        title: str | None = None,
        errors: Sequence[FieldError] = (),
        headers: Mapping[str, str] | None = None,
        transient: bool | None = None,
        **extra: Any,
    ) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"a problem needs an error status, not {status}")
        if not _CODE_RE.match(code):
            raise ValueError(f"problem code must be snake_case: {code!r}")
        clashing = _STANDARD_MEMBERS.intersection(extra)
        if clashing:
            raise ValueError(f"extension members clash with standard ones: {sorted(clashing)}")
        super().__init__(detail or code)
        self.status = status
        self.code = code
        self.title = title or _phrase(status)
        self.detail = detail
        self.errors: list[FieldError] = list(errors)
        self.headers: dict[str, str] = dict(headers or {})
        self.extra: dict[str, Any] = extra
        self.transient: bool = (
            transient if transient is not None else status >= 500 or status in TRANSIENT_STATUSES
        )

    @property
    def type(self) -> str:
        return problem_type(self.code)

    def to_dict(self, instance: str | None = None) -> dict[str, Any]:
        """The problem+json body; ``instance`` is the request path."""
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "code": self.code,
        }
        if self.detail is not None:
            body["detail"] = self.detail
        if instance is not None:
            body["instance"] = instance
        if self.errors:
            body["errors"] = [error.as_dict() for error in self.errors]
        if self.extra:
            body.update(jsonable_encoder(self.extra))
        return body

    def to_response(self, instance: str | None = None) -> Response:
        return problem_response(self.to_dict(instance), self.status, self.headers)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r})"


class BadRequest(Problem):
    """400 with a specific code (``malformed_json``, ``invalid_cursor``...)."""

    def __init__(self, code: str, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(400, code, detail, **kwargs)


class Unauthorized(Problem):
    """401: no credentials, or credentials that do not verify.

    Carries ``WWW-Authenticate: Bearer`` (RFC 6750); a rejected token adds
    ``error="invalid_token"`` so a client knows to sign in again.
    """

    def __init__(
        self, detail: str | None = None, *, code: str = "unauthorized", **kwargs: Any
    ) -> None:
        challenge = 'Bearer realm="countertop"'
        if code != "unauthorized":
            challenge += ', error="invalid_token"'
        headers = {"WWW-Authenticate": challenge, **kwargs.pop("headers", {})}
        super().__init__(401, code, detail, headers=headers, **kwargs)


class Forbidden(Problem):
    """403: authenticated, but lacking the permission the action needs."""

    def __init__(
        self, detail: str | None = None, *, code: str = "forbidden", **kwargs: Any
    ) -> None:
        super().__init__(403, code, detail, **kwargs)


class NotFound(Problem):
    """404: absent, or outside what the caller may see (existence is not revealed)."""

    def __init__(
        self, detail: str | None = None, *, code: str = "not_found", **kwargs: Any
    ) -> None:
        super().__init__(404, code, detail, **kwargs)


class Conflict(Problem):
    """409: the request conflicts with the resource's current state."""

    def __init__(self, detail: str | None = None, *, code: str = "conflict", **kwargs: Any) -> None:
        super().__init__(409, code, detail, **kwargs)


class VersionMismatch(Conflict):
    """409 ``version_mismatch``: an update carried a stale ``version``."""

    def __init__(
        self,
        detail: str | None = None,
        *,
        current_version: int | None = None,
        **kwargs: Any,
    ) -> None:
        if current_version is not None:
            kwargs["current_version"] = current_version
        super().__init__(
            detail or "The resource was changed by another request; reload it and retry.",
            code="version_mismatch",
            **kwargs,
        )


class IllegalState(Conflict):
    """409 with a domain code: the resource's state does not allow this (``order_already_paid``)."""

    def __init__(self, code: str, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(detail, code=code, **kwargs)


class ValidationFailed(Problem):
    """422 ``validation_failed`` with one :class:`FieldError` per invalid field."""

    def __init__(
        self,
        errors: Sequence[FieldError] = (),
        detail: str | None = None,
        *,
        code: str = "validation_failed",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            422,
            code,
            detail or "The request has invalid fields.",
            errors=errors,
            **kwargs,
        )


class Locked(Problem):
    """423: the resource is temporarily locked (a closing business day, a running migration)."""

    def __init__(self, detail: str | None = None, *, code: str = "locked", **kwargs: Any) -> None:
        super().__init__(423, code, detail, **kwargs)


class TooManyRequests(Problem):
    """429 with ``Retry-After`` in whole seconds."""

    def __init__(
        self,
        retry_after: float,
        detail: str | None = None,
        *,
        code: str = "too_many_requests",
        **kwargs: Any,
    ) -> None:
        seconds = max(1, math.ceil(retry_after))
        headers = {"Retry-After": str(seconds), **kwargs.pop("headers", {})}
        super().__init__(429, code, detail, headers=headers, retry_after=seconds, **kwargs)


class ServiceUnavailable(Problem):
    """503: a dependency this request needs is down; ``Retry-After`` when known."""

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str = "service_unavailable",
        retry_after: int | None = None,
        **kwargs: Any,
    ) -> None:
        headers = dict(kwargs.pop("headers", {}))
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        super().__init__(503, code, detail, headers=headers, **kwargs)


class FieldErrorModel(BaseModel):
    """OpenAPI shape of one entry of ``errors``."""

    field: str = Field(examples=["lines[0].quantity"])
    code: str = Field(examples=["expected_integer"])
    message: str


class ProblemModel(BaseModel):
    """OpenAPI shape of a problem+json body (RFC 9457), for ``responses=`` documentation."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["https://countertop.dev/problems/version_mismatch"])
    title: str = Field(examples=["Conflict"])
    status: int = Field(examples=[409])
    code: str = Field(
        examples=["version_mismatch"], description="Stable machine-readable error code."
    )
    detail: str | None = None
    instance: str | None = Field(default=None, description="The request path.")
    errors: list[FieldErrorModel] | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting problem+json answers for the given statuses."""
    return {
        status: {
            "model": ProblemModel,
            "description": _phrase(status),
            "content": {
                PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemModel"}}
            },
        }
        for status in statuses
    }


class _ProblemJSONResponse(Response):
    media_type = PROBLEM_CONTENT_TYPE

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode("utf-8")


def problem_response(
    body: Mapping[str, Any], status: int, headers: Mapping[str, str] | None = None
) -> Response:
    """An ``application/problem+json`` response of a prepared body."""
    return _ProblemJSONResponse(dict(body), status_code=status, headers=dict(headers or {}))


# --- request validation --------------------------------------------------------------------

_BUILTIN_ERROR_TYPES: frozenset[str] = frozenset(get_args(ErrorType))

# pydantic's error types mapped to our stable codes; the ones a client can act on get their own
# code (Square's EXPECTED_INTEGER), the rest collapse to ``invalid``.
_ERROR_CODES: dict[str, str] = {
    "missing": "missing",
    "int_type": "expected_integer",
    "int_from_float": "expected_integer",
    "int_parsing": "expected_integer",
    "int_parsing_size": "expected_integer",
    "float_type": "expected_number",
    "float_parsing": "expected_number",
    "decimal_type": "expected_number",
    "decimal_parsing": "expected_number",
    "finite_number": "expected_number",
    "string_type": "expected_string",
    "bool_type": "expected_boolean",
    "bool_parsing": "expected_boolean",
    "dict_type": "expected_object",
    "model_type": "expected_object",
    "model_attributes_type": "expected_object",
    "dataclass_type": "expected_object",
    "list_type": "expected_array",
    "tuple_type": "expected_array",
    "set_type": "expected_array",
    "extra_forbidden": "unexpected_field",
    "string_too_short": "too_short",
    "too_short": "too_short",
    "string_too_long": "too_long",
    "too_long": "too_long",
    "greater_than": "out_of_range",
    "greater_than_equal": "out_of_range",
    "less_than": "out_of_range",
    "less_than_equal": "out_of_range",
    "multiple_of": "out_of_range",
    "literal_error": "invalid_choice",
    "enum": "invalid_choice",
    "string_pattern_mismatch": "invalid_format",
    "uuid_type": "invalid_uuid",
    "uuid_parsing": "invalid_uuid",
    "uuid_version": "invalid_uuid",
    "datetime_type": "invalid_datetime",
    "datetime_parsing": "invalid_datetime",
    "datetime_from_date_parsing": "invalid_datetime",
    "datetime_object_invalid": "invalid_datetime",
    "timezone_aware": "timezone_required",
    "timezone_naive": "timezone_not_allowed",
    "date_type": "invalid_date",
    "date_parsing": "invalid_date",
    "date_from_datetime_parsing": "invalid_date",
    "date_from_datetime_inexact": "invalid_date",
    "time_type": "invalid_time",
    "time_parsing": "invalid_time",
    "url_type": "invalid_url",
    "url_parsing": "invalid_url",
    "url_syntax_violation": "invalid_url",
    "url_too_long": "invalid_url",
    "url_scheme": "invalid_url",
    "value_error": "invalid",
    "assertion_error": "invalid",
}

_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})


def field_path(loc: Sequence[str | int]) -> str:
    """``("body", "lines", 0, "quantity")`` -> ``lines[0].quantity``."""
    parts = list(loc)
    if len(parts) > 1 and parts[0] in _LOCATIONS:
        parts = parts[1:]
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def error_code(pydantic_type: str) -> str:
    """Our code for a pydantic error type; custom error types (``PydanticCustomError``) keep
    their own name so a model validator can choose the code."""
    if pydantic_type in _ERROR_CODES:
        return _ERROR_CODES[pydantic_type]
    if pydantic_type in _BUILTIN_ERROR_TYPES or not _CODE_RE.match(pydantic_type):
        return "invalid"
    return pydantic_type


def _message(error: Mapping[str, Any], code: str) -> str:
    if code == "expected_integer":
        return "Expected an integer (a JSON number without a fraction, not a string)."
    message = str(error.get("msg") or "Invalid value.")
    return message if message.endswith(".") else message + "."


def field_errors(errors: Iterable[Mapping[str, Any]]) -> list[FieldError]:
    """pydantic/FastAPI error dicts -> :class:`FieldError` entries (the input is not echoed)."""
    result: list[FieldError] = []
    for error in errors:
        code = error_code(str(error.get("type", "")))
        result.append(FieldError(field_path(error.get("loc", ())), code, _message(error, code)))
    return result


def problem_from_validation_error(exc: RequestValidationError) -> Problem:
    errors = exc.errors()
    for error in errors:
        if error.get("type") == "json_invalid":
            loc = error.get("loc", ())
            position = loc[-1] if loc and isinstance(loc[-1], int) else None
            reason = (error.get("ctx") or {}).get("error") or "invalid JSON"
            where = f" at position {position}" if position is not None else ""
            return BadRequest(
                "malformed_json", f"The request body is not valid JSON: {reason}{where}."
            )
    return ValidationFailed(field_errors(errors))


def problem_from_http_exception(exc: StarletteHTTPException) -> Problem:
    status = exc.status_code if 400 <= exc.status_code <= 599 else 500
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != _phrase(status) else None
    if status == 404:
        return NotFound(detail or "No resource exists at this path.", headers=exc.headers or {})
    if status == 405:
        return Problem(
            405,
            "method_not_allowed",
            detail or "This path does not support the request method.",
            headers=exc.headers or {},
        )
    return Problem(status, _status_code_name(status), detail, headers=exc.headers or {})


# --- handlers ------------------------------------------------------------------------------


def _internal_error(path: str) -> Response:
    problem = Problem(500, "internal_error", "An unexpected error occurred. It has been logged.")
    return problem.to_response(path)


async def _handle_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    if exc.transient:
        request.scope[TRANSIENT_SCOPE_KEY] = True
    return exc.to_response(request.url.path)


async def _handle_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return problem_from_validation_error(exc).to_response(request.url.path)


async def _handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return problem_from_http_exception(exc).to_response(request.url.path)


async def _handle_unexpected(request: Request, exc: Exception) -> Response:
    # Reached only for errors raised outside the catch-all middleware (an outer middleware);
    # Starlette re-raises afterwards so the server logs it as well.
    log.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return _internal_error(request.url.path)


class UnhandledErrorMiddleware:
    """Turns any exception escaping the routes into a 500 problem and logs its traceback.

    Starlette's own error middleware sends its response and then re-raises, which tests see as
    a crash and servers log twice; this one answers and stops there.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if started:
                # Too late for a problem body; let the server abort the connection.
                raise
            method = scope.get("method", "")
            path = scope.get("path", "")
            log.exception("unhandled error in %s %s", method, path)
            await _internal_error(path)(scope, receive, send)


def invalid_character(fields: Iterable[str]) -> Problem:
    """422 ``invalid_character``: text PostgreSQL cannot store (see :mod:`servicekit.text`)."""
    return ValidationFailed(
        [FieldError(field, INVALID_CHARACTER, MESSAGE) for field in fields],
        "The request contains a character that cannot be stored (NUL or a lone surrogate).",
        code=INVALID_CHARACTER,
    )


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return bool(media == b"application/json" or media.endswith(b"+json"))
    return False


class UnstorableInputGuard:
    """422 ``invalid_character`` for a NUL or a lone surrogate anywhere in the path, the query
    or a JSON body, before any route sees the request: such text would only fail later, in
    PostgreSQL, as a 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if not is_storable(path):
            await invalid_character(["path"]).to_response()(scope, receive, send)
            return
        query: bytes = scope.get("query_string", b"")
        if b"%00" in query or b"\x00" in query:
            fields = [
                name if is_storable(name) else "query"
                for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
                if not (is_storable(name) and is_storable(value))
            ]
            if fields:
                await invalid_character(fields).to_response(path)(scope, receive, send)
                return
        if not _is_json(scope):
            await self.app(scope, receive, send)
            return
        received: list[Message] = []
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        raw = b"".join(m.get("body", b"") for m in received if m["type"] == "http.request")
        if may_hold_unstorable_json(raw):
            fields = _unstorable_json_fields(raw)
            if fields:
                await invalid_character(fields).to_response(path)(scope, receive, send)
                return

        async def replay() -> Message:
            if received:
                return received.pop(0)
            return await receive()

        await self.app(scope, replay, send)


def _unstorable_json_fields(raw: bytes) -> list[str]:
    try:
        document = json.loads(raw)
    except ValueError:
        return []  # malformed: the route answers 400 malformed_json
    return list(dict.fromkeys(unstorable_fields(document)))


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` with problem+json. Call before the app serves requests."""
    app.add_exception_handler(Problem, _handle_problem)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    app.add_exception_handler(Exception, _handle_unexpected)
    app.add_middleware(UnstorableInputGuard)
    app.add_middleware(UnhandledErrorMiddleware)
