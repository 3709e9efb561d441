"""problem+json for raised problems, validation failures, malformed bodies, unknown routes and
crashes, through a real FastAPI app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, StrictInt, model_validator
from pydantic_core import PydanticCustomError

from servicekit.errors import (
    PROBLEM_CONTENT_TYPE,
    FieldError,
    Forbidden,
    IllegalState,
    Locked,
    NotFound,
    Problem,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
    VersionMismatch,
    field_path,
    install_problem_handlers,
    problem_responses,
)

SECRET = "s3cr3t-connection-string"


class Line(BaseModel):
    sku: str
    quantity: StrictInt


class Money(BaseModel):
    amount: int
    currency: str


class OrderIn(BaseModel):
    lines: list[Line]
    total: Money

    @model_validator(mode="after")
    def _not_empty(self) -> OrderIn:
        if not self.lines:
            raise PydanticCustomError("empty_order", "An order needs at least one line.")
        return self


def make_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/v1/orders", status_code=201, responses=problem_responses(409, 422))
    async def create_order(order: OrderIn) -> dict[str, int]:
        return {"lines": len(order.lines)}

    @app.get("/v1/orders")
    async def list_orders(limit: int = Query(50, ge=1, le=200)) -> dict[str, int]:
        return {"limit": limit}

    @app.get("/v1/raise/{kind}")
    async def raise_problem(kind: str) -> dict[str, str]:
        problems: dict[str, Problem] = {
            "not_found": NotFound("Order not found."),
            "version": VersionMismatch(current_version=7),
            "illegal": IllegalState("order_already_paid", "The order is paid."),
            "locked": Locked("The business day is closing."),
            "rate": TooManyRequests(2.3),
            "unauthorized": Unauthorized(),
            "forbidden": Forbidden("Needs orders:refund."),
            "fields": ValidationFailed(
                [FieldError("tenders[0].amount", "amount_mismatch", "Tenders do not add up.")]
            ),
        }
        raise problems[kind]

    @app.get("/v1/http-exception")
    async def http_exception() -> None:
        raise HTTPException(status_code=400, detail="Bad filter.")

    @app.get("/v1/crash")
    async def crash() -> None:
        raise RuntimeError(f"database password is {SECRET}")

    return app


@pytest_asyncio.fixture(loop_scope="session")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"https://countertop.dev/problems/{code}"
    assert body["title"]
    assert body["instance"] == response.request.url.path
    return body


VALID_ORDER = {
    "lines": [{"sku": "A1", "quantity": 2}],
    "total": {"amount": 1250, "currency": "CNY"},
}


async def test_valid_request_passes(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/orders", json=VALID_ORDER)
    assert response.status_code == 201
    assert response.json() == {"lines": 1}


async def test_validation_lists_every_field_with_paths_and_codes(
    client: httpx.AsyncClient,
) -> None:
    order = {
        "lines": [{"sku": "A1", "quantity": 1.5}, {"quantity": "3"}],
        "total": {"amount": 12.5, "currency": 3},
    }
    body = assert_problem(await client.post("/v1/orders", json=order), 422, "validation_failed")
    errors = {(e["field"], e["code"]) for e in body["errors"]}
    assert errors == {
        ("lines[0].quantity", "expected_integer"),
        ("lines[1].sku", "missing"),
        ("lines[1].quantity", "expected_integer"),
        ("total.amount", "expected_integer"),
        ("total.currency", "expected_string"),
    }
    assert all(e["message"] for e in body["errors"])
    # The rejected input is not echoed back.
    assert "12.5" not in str(body["errors"])


async def test_string_where_integer_expected(client: httpx.AsyncClient) -> None:
    order = {**VALID_ORDER, "lines": [{"sku": "A1", "quantity": "2"}]}
    body = assert_problem(await client.post("/v1/orders", json=order), 422, "validation_failed")
    assert body["errors"] == [
        {
            "field": "lines[0].quantity",
            "code": "expected_integer",
            "message": "Expected an integer (a JSON number without a fraction, not a string).",
        }
    ]


async def test_boolean_where_integer_expected(client: httpx.AsyncClient) -> None:
    order = {**VALID_ORDER, "lines": [{"sku": "A1", "quantity": True}]}
    body = assert_problem(await client.post("/v1/orders", json=order), 422, "validation_failed")
    assert body["errors"][0]["code"] == "expected_integer"


async def test_custom_error_type_becomes_the_code(client: httpx.AsyncClient) -> None:
    order = {**VALID_ORDER, "lines": []}
    body = assert_problem(await client.post("/v1/orders", json=order), 422, "validation_failed")
    assert body["errors"] == [
        {"field": "body", "code": "empty_order", "message": "An order needs at least one line."}
    ]


async def test_missing_body(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.post("/v1/orders"), 422, "validation_failed")
    assert body["errors"][0]["field"] == "body"
    assert body["errors"][0]["code"] == "missing"


async def test_query_parameter_errors(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/v1/orders?limit=abc"), 422, "validation_failed")
    assert body["errors"][0]["field"] == "limit"
    assert body["errors"][0]["code"] == "expected_integer"
    body = assert_problem(await client.get("/v1/orders?limit=500"), 422, "validation_failed")
    assert body["errors"][0]["code"] == "out_of_range"


async def test_malformed_json(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/orders", content=b'{"lines": [', headers={"content-type": "application/json"}
    )
    body = assert_problem(response, 400, "malformed_json")
    assert "position" in body["detail"]


async def test_unknown_route(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/nothing-here"), 404, "not_found")


async def test_wrong_method(client: httpx.AsyncClient) -> None:
    response = await client.delete("/v1/orders")
    assert_problem(response, 405, "method_not_allowed")
    # Starlette names the methods of the first route matching the path.
    assert "POST" in response.headers["allow"]


async def test_http_exception_keeps_its_detail(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/v1/http-exception"), 400, "bad_request")
    assert body["detail"] == "Bad filter."


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("not_found", 404, "not_found"),
        ("version", 409, "version_mismatch"),
        ("illegal", 409, "order_already_paid"),
        ("locked", 423, "locked"),
        ("rate", 429, "too_many_requests"),
        ("unauthorized", 401, "unauthorized"),
        ("forbidden", 403, "forbidden"),
        ("fields", 422, "validation_failed"),
    ],
)
async def test_raised_problems(
    client: httpx.AsyncClient, kind: str, status: int, code: str
) -> None:
    assert_problem(await client.get(f"/v1/raise/{kind}"), status, code)


async def test_problem_headers_and_extension_members(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/raise/version")
    assert response.json()["current_version"] == 7
    response = await client.get("/v1/raise/rate")
    assert response.headers["retry-after"] == "3"
    assert response.json()["retry_after"] == 3
    response = await client.get("/v1/raise/unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")
    response = await client.get("/v1/raise/fields")
    assert response.json()["errors"] == [
        {
            "field": "tenders[0].amount",
            "code": "amount_mismatch",
            "message": "Tenders do not add up.",
        }
    ]


async def test_unhandled_error_is_a_generic_500_and_logged(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="servicekit.errors"):
        response = await client.get("/v1/crash")
    body = assert_problem(response, 500, "internal_error")
    assert SECRET not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text
    assert body["detail"] == "An unexpected error occurred. It has been logged."
    logged = [r for r in caplog.records if r.exc_info]
    assert logged
    assert logged[0].exc_info is not None
    assert SECRET in str(logged[0].exc_info[1])


def test_problem_rejects_bad_codes_and_clashing_members() -> None:
    with pytest.raises(ValueError, match="snake_case"):
        Problem(409, "Version-Mismatch")
    with pytest.raises(ValueError, match="clash"):
        Problem(409, "conflict", type="https://elsewhere.example/x")
    with pytest.raises(ValueError, match="error status"):
        Problem(200, "ok")


def test_field_path() -> None:
    assert field_path(("body", "lines", 0, "quantity")) == "lines[0].quantity"
    assert field_path(("query", "limit")) == "limit"
    assert field_path(("body",)) == "body"
    assert field_path(("body", "matrix", 0, 1)) == "matrix[0][1]"


def test_openapi_documents_problem_responses() -> None:
    schema = make_app().openapi()
    assert "ProblemModel" in schema["components"]["schemas"]
    responses = schema["paths"]["/v1/orders"]["post"]["responses"]
    assert PROBLEM_CONTENT_TYPE in responses["409"]["content"]
