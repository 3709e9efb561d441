"""Another merchant's ids, over every id-taking route of every service.

Merchant A sets up a store with a catalog, stock, a member, an order, a cash payment, a
settlement account, a region and staff. Merchant B's HQ admin, store manager and cashier then
call every route of every service's OpenAPI that takes an id in its path, with A's ids filled
in and a body built from the route's request schema naming B's own things: no write may
succeed (2xx), no read may show any of A's ids, and nothing may fail with a 5xx. Every list
route is called with A's ids as filters: none may show any of A's ids. Within merchant A, a
cashier bound to the first store gets nothing of a second store's data.

The routes come from the services' own OpenAPI documents, so a new route is walked without
anyone adding it here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from .conftest import Merchant, Service, Staff, System, wait_for

pytestmark = pytest.mark.timeout(300)

CNY = "CNY"
PARAM = re.compile(r"{([^}]+)}")


def cny(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": CNY}


# --- bodies from JSON Schema -----------------------------------------------------------------


class Bodies:
    """A body that passes a route's request schema, with ids taken from ``ids`` by field name,
    so that validation lets the request reach the code that must refuse it."""

    def __init__(self, spec: dict[str, Any], ids: dict[str, str]) -> None:
        self.schemas: dict[str, Any] = spec.get("components", {}).get("schemas", {})
        self.ids = ids

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.schemas[schema["$ref"].rsplit("/", 1)[-1]]
        return schema

    def build(self, schema: dict[str, Any], name: str = "", depth: int = 0) -> Any:
        schema = self.resolve(schema)
        if depth > 6:
            return None
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return schema["enum"][0]
        if "default" in schema and schema["default"] is not None and depth > 0:
            return schema["default"]
        for combinator in ("allOf", "anyOf", "oneOf"):
            if combinator in schema:
                options = [self.resolve(s) for s in schema[combinator]]
                non_null = [o for o in options if o.get("type") != "null"]
                return self.build((non_null or options)[0], name, depth + 1)
        kind = schema.get("type")
        if kind == "object" or "properties" in schema:
            props: dict[str, Any] = schema.get("properties", {})
            if set(props) == {"amount", "currency"}:
                return cny(100)
            required = schema.get("required", [])
            return {key: self.build(props[key], key, depth + 1) for key in required if key in props}
        if kind == "array":
            item = self.build(schema.get("items", {}), name, depth + 1)
            return [item] * max(1, schema.get("minItems", 1))
        if kind == "integer":
            low = schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1)
            return max(1, low) if schema.get("maximum", 10**9) >= 1 else low
        if kind == "number":
            return 1
        if kind == "boolean":
            return False
        if kind == "string":
            return self.string(schema, name)
        return None

    def string(self, schema: dict[str, Any], name: str) -> str:
        fmt = schema.get("format")
        if fmt == "uuid" or name.endswith("_id") or name == "id":
            return self.ids.get(name, str(uuid.uuid4()))
        if fmt == "date-time":
            return datetime.now(UTC).isoformat()
        if fmt == "date":
            return datetime.now(UTC).date().isoformat()
        if name == "phone":
            return "+8613800138999"
        if name == "currency":
            return CNY
        if name in ("code", "sku"):
            return "X1"
        return "x" * max(1, schema.get("minLength", 1))


# --- merchant A's world ------------------------------------------------------------------------


async def build_world(system: System, a: Merchant) -> dict[str, str]:
    """What merchant A owns, by the path parameter names the services use."""
    ids: dict[str, str] = {"store_id": a.store_id, "merchant_id": a.id, "staff_id": a.cashier.id}
    hq = {**a.hq.headers}

    def key() -> dict[str, str]:
        return {**hq, "Idempotency-Key": str(uuid.uuid4())}

    response = await system.inventory.client.post(
        "/v1/products",
        json={"sku": "A-TEA", "name": "Tea", "price": cny(1200), "barcode": "4006381333931"},
        headers=key(),
    )
    assert response.status_code == 201, response.text
    ids["product_id"] = response.json()["id"]
    ids["barcode"] = "4006381333931"
    response = await system.inventory.client.post(
        f"/v1/stores/{a.store_id}/stock-in",
        json={
            "occurred_at": datetime.now(UTC).isoformat(),
            "lines": [{"product_id": ids["product_id"], "quantity": 10}],
        },
        headers=key(),
    )
    assert response.status_code == 201, response.text
    response = await system.members.client.post(
        "/v1/members", json={"phone": "+8613900139000", "name": "A member"}, headers=key()
    )
    assert response.status_code == 201, response.text
    ids["member_id"] = response.json()["id"]
    response = await system.payments.client.post(
        "/v1/settlement/accounts",
        json={
            "kind": "bank",
            "institution": "ICBC",
            "account_number": "6222020200112233",
            "holder_name": "A",
        },
        headers=key(),
    )
    assert response.status_code == 201, response.text
    ids["account_id"] = response.json()["id"]
    region = await system.identity.client.post("/v1/regions", json={"name": "East"}, headers=hq)
    assert region.status_code == 201, region.text
    ids["region_id"] = region.json()["id"]

    order_id = str(uuid.uuid4())
    body = {
        "id": order_id,
        "channel": "pos",
        "store_id": a.store_id,
        "occurred_at": datetime.now(UTC).isoformat(),
        "lines": [{"product_id": ids["product_id"], "quantity": 1}],
    }

    async def placed() -> bool:
        response = await system.orders.client.post(
            "/v1/orders",
            json=body,
            headers={**a.cashier.headers, "Idempotency-Key": f"place-{order_id}"},
        )
        return response.status_code in (200, 201)

    await wait_for(placed, "merchant A's order is accepted")
    ids["order_id"] = order_id

    async def paid() -> bool:
        response = await system.payments.client.post(
            "/v1/payments",
            json={"order_id": order_id, "method": "cash", "amount": cny(1200)},
            headers={**a.cashier.headers, "Idempotency-Key": str(uuid.uuid4())},
        )
        if response.status_code == 201:
            ids["payment_id"] = response.json()["id"]
            return True
        return False

    await wait_for(paid, "merchant A's payment is taken")
    return ids


async def openapi(service: Service) -> dict[str, Any]:
    response = await service.client.get("/openapi.json")
    assert response.status_code == 200
    spec: dict[str, Any] = response.json()
    return spec


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield path, method, operation


def request_body(bodies: Bodies, operation: dict[str, Any]) -> Any:
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    return None if schema is None else bodies.build(schema)


async def call(
    service: Service, method: str, path: str, staff: Staff, body: Any, params: dict[str, str]
) -> tuple[int, str]:
    headers = {**staff.headers, "Idempotency-Key": str(uuid.uuid4())}
    response = await service.client.request(
        method.upper(), path, json=body, params=params, headers=headers
    )
    return response.status_code, response.text


# --- the test --------------------------------------------------------------------------------


async def test_no_route_lets_another_merchant_reach_a_merchants_data(system: System) -> None:
    a = await system.onboard()
    b = await system.onboard()
    ids = await build_world(system, a)
    own = await build_world(system, b)
    secret_ids = {v for k, v in ids.items() if k != "barcode"}

    breaches: list[str] = []
    server_errors: list[str] = []
    for service in system.services:
        spec = await openapi(service)
        # Bodies name B's own things: only the path points at A's.
        bodies = Bodies(spec, own)
        for path, method, operation in operations(spec):
            names = PARAM.findall(path)
            for staff in (b.hq, b.manager, b.cashier):
                if names:
                    filled = path
                    for name in names:
                        filled = filled.replace(f"{{{name}}}", ids.get(name, str(uuid.uuid4())))
                    body = request_body(bodies, operation)
                    status, text = await call(service, method, filled, staff, body, {})
                    where = f"{service.name} {method.upper()} {path} as B's {staff.role}"
                    leaked = sorted(i for i in secret_ids if i in text)
                    if 200 <= status < 300 and (method != "get" or leaked):
                        breaches.append(f"{where}: {status} {text[:200]}")
                    if status >= 500:
                        server_errors.append(f"{where}: {status} {text[:200]}")
                elif method == "get":
                    params = {
                        p["name"]: ids[p["name"]]
                        for p in operation.get("parameters", [])
                        if p.get("in") == "query" and p["name"] in ids
                    }
                    status, text = await call(service, method, path, staff, None, params)
                    where = f"{service.name} GET {path}?{params} as B's {staff.role}"
                    if status >= 500:
                        server_errors.append(f"{where}: {status} {text[:200]}")
                    leaked = sorted(i for i in secret_ids if i in text)
                    if 200 <= status < 300 and leaked:
                        breaches.append(f"{where} shows A's ids {leaked}")
    assert not server_errors, "\n".join(server_errors)
    assert not breaches, "\n".join(breaches)


async def test_a_cashier_gets_nothing_of_another_store(system: System) -> None:
    a = await system.onboard()
    ids = await build_world(system, a)
    response = await system.identity.client.post(
        "/v1/stores",
        json={"code": f"S{uuid.uuid4().hex[:6]}", "name": "Second store"},
        headers=a.hq.headers,
    )
    assert response.status_code == 201, response.text
    ids = {**ids, "store_id": str(response.json()["id"])}
    breaches: list[str] = []
    for service in system.services:
        spec = await openapi(service)
        bodies = Bodies(spec, ids)
        for path, method, operation in operations(spec):
            if "{store_id}" not in path:
                continue
            filled = path
            for name in PARAM.findall(path):
                filled = filled.replace(f"{{{name}}}", ids.get(name, str(uuid.uuid4())))
            body = request_body(bodies, operation)
            status, text = await call(service, method, filled, a.cashier, body, {})
            if 200 <= status < 300 or status >= 500:
                breaches.append(f"{service.name} {method.upper()} {path}: {status} {text[:200]}")
    assert not breaches, "\n".join(breaches)
