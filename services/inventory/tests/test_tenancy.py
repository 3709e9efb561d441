"""Tenant and store scoping of the inventory API: another merchant's ids over every id-taking
route with the three roles, writes naming foreign or unknown stores, merchant-wide catalog
changes, cost visibility, ids unique per merchant only, and refused nonsense."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from servicekit.auth import Role
from servicekit.testing.tokens import bearer_headers

from .conftest import KEY, Harness

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC).isoformat()
STORE_MANAGER_SCOPES = frozenset({"orders:write", "inventory:adjust", "catalog:manage"})
CASHIER_SCOPES = frozenset({"orders:write"})
ALL = frozenset({"catalog:manage", "inventory:adjust", "orders:write", "reports:read"})


def as_role(role: Role, merchant: uuid.UUID, store: uuid.UUID | None = None) -> dict[str, str]:
    """Headers of an HQ admin (every store), or of a store manager or cashier of ``store``,
    with the role's usual permissions and a fresh ``Idempotency-Key``."""
    if role is Role.HQ_ADMIN:
        scopes, stores = ALL, None
    elif role is Role.STORE_MANAGER:
        scopes, stores = STORE_MANAGER_SCOPES, frozenset({store or uuid.uuid4()})
    else:
        scopes, stores = CASHIER_SCOPES, frozenset({store or uuid.uuid4()})
    headers = bearer_headers(KEY, merchant, scopes=scopes, store_ids=stores, role=role)
    return {**headers, "Idempotency-Key": uuid.uuid4().hex}


ROLES = [Role.HQ_ADMIN, Role.STORE_MANAGER, Role.CASHIER]


def id_taking_requests(
    product_id: str, barcode: str, store_id: uuid.UUID, **ids: str
) -> dict[tuple[str, str], tuple[str, dict[str, Any] | None]]:
    """Every route of the API that names a product, a barcode, a store or another of the
    merchant's resources, filled in with another merchant's ids, and a body that would be
    valid for that merchant."""
    line = {"product_id": product_id, "quantity": 1}
    return {
        **back_office_requests(product_id, barcode, store_id, **ids),
        ("get", "/v1/products/by-barcode/{barcode}"): (f"/v1/products/by-barcode/{barcode}", None),
        ("get", "/v1/products/{product_id}"): (f"/v1/products/{product_id}", None),
        ("patch", "/v1/products/{product_id}"): (
            f"/v1/products/{product_id}",
            {"version": 1, "name": "taken over"},
        ),
        ("put", "/v1/products/{product_id}/store-prices/{store_id}"): (
            f"/v1/products/{product_id}/store-prices/{store_id}",
            {"version": 1, "price": {"amount": 1, "currency": "CNY"}},
        ),
        ("post", "/v1/stores/{store_id}/stock-in"): (
            f"/v1/stores/{store_id}/stock-in",
            {"occurred_at": T0, "lines": [line]},
        ),
        ("post", "/v1/stores/{store_id}/adjustments"): (
            f"/v1/stores/{store_id}/adjustments",
            {"product_id": product_id, "quantity": -1, "reason": "x", "occurred_at": T0},
        ),
        ("post", "/v1/stores/{store_id}/counts"): (
            f"/v1/stores/{store_id}/counts",
            {"occurred_at": T0, "lines": [{"product_id": product_id, "counted": 0}]},
        ),
        ("get", "/v1/stores/{store_id}/stock"): (f"/v1/stores/{store_id}/stock", None),
        ("get", "/v1/stores/{store_id}/stock/{product_id}"): (
            f"/v1/stores/{store_id}/stock/{product_id}",
            None,
        ),
        ("put", "/v1/stores/{store_id}/stock/{product_id}/threshold"): (
            f"/v1/stores/{store_id}/stock/{product_id}/threshold",
            {"threshold": 1},
        ),
        ("get", "/v1/stores/{store_id}/movements"): (f"/v1/stores/{store_id}/movements", None),
    }


def back_office_requests(
    product_id: str,
    barcode: str,
    store_id: uuid.UUID,
    *,
    category_id: str = "",
    supplier_id: str = "",
    order_id: str = "",
    stocktake_id: str = "",
    transfer_id: str = "",
    group_id: str = "",
    change_id: str = "",
    import_id: str = "",
) -> dict[tuple[str, str], tuple[str, dict[str, Any] | None]]:
    line = {"product_id": product_id, "quantity": 1}
    store = f"/v1/stores/{store_id}"
    return {
        ("get", "/v1/categories/{category_id}"): (f"/v1/categories/{category_id}", None),
        ("patch", "/v1/categories/{category_id}"): (
            f"/v1/categories/{category_id}",
            {"version": 1, "name": "taken over"},
        ),
        ("post", "/v1/products/{product_id}/barcodes"): (
            f"/v1/products/{product_id}/barcodes",
            {"barcode": "96385074"},
        ),
        ("delete", "/v1/products/{product_id}/barcodes/{barcode}"): (
            f"/v1/products/{product_id}/barcodes/{barcode}",
            None,
        ),
        ("get", "/v1/suppliers/{supplier_id}"): (f"/v1/suppliers/{supplier_id}", None),
        ("patch", "/v1/suppliers/{supplier_id}"): (
            f"/v1/suppliers/{supplier_id}",
            {"version": 1, "name": "taken over"},
        ),
        ("get", "/v1/suppliers/{supplier_id}/products"): (
            f"/v1/suppliers/{supplier_id}/products",
            None,
        ),
        ("put", "/v1/suppliers/{supplier_id}/products/{product_id}"): (
            f"/v1/suppliers/{supplier_id}/products/{product_id}",
            {"cost": _cny(1)},
        ),
        ("delete", "/v1/suppliers/{supplier_id}/products/{product_id}"): (
            f"/v1/suppliers/{supplier_id}/products/{product_id}",
            None,
        ),
        ("get", "/v1/stores/{store_id}/purchase-orders"): (f"{store}/purchase-orders", None),
        ("post", "/v1/stores/{store_id}/purchase-orders"): (
            f"{store}/purchase-orders",
            {"supplier_id": supplier_id, "lines": [{**line, "unit_cost": _cny(1)}]},
        ),
        ("get", "/v1/stores/{store_id}/purchase-orders/{order_id}"): (
            f"{store}/purchase-orders/{order_id}",
            None,
        ),
        ("post", "/v1/stores/{store_id}/purchase-orders/{order_id}/send"): (
            f"{store}/purchase-orders/{order_id}/send",
            {"version": 1},
        ),
        ("post", "/v1/stores/{store_id}/purchase-orders/{order_id}/cancel"): (
            f"{store}/purchase-orders/{order_id}/cancel",
            {"version": 1},
        ),
        ("post", "/v1/stores/{store_id}/purchase-orders/{order_id}/receipts"): (
            f"{store}/purchase-orders/{order_id}/receipts",
            {"occurred_at": T0, "lines": [line]},
        ),
        ("get", "/v1/stores/{store_id}/stocktakes"): (f"{store}/stocktakes", None),
        ("post", "/v1/stores/{store_id}/stocktakes"): (f"{store}/stocktakes", {}),
        ("get", "/v1/stores/{store_id}/stocktakes/{stocktake_id}"): (
            f"{store}/stocktakes/{stocktake_id}",
            None,
        ),
        ("post", "/v1/stores/{store_id}/stocktakes/{stocktake_id}/counts"): (
            f"{store}/stocktakes/{stocktake_id}/counts",
            {"lines": [line]},
        ),
        ("get", "/v1/stores/{store_id}/stocktakes/{stocktake_id}/report"): (
            f"{store}/stocktakes/{stocktake_id}/report",
            None,
        ),
        ("post", "/v1/stores/{store_id}/stocktakes/{stocktake_id}/approve"): (
            f"{store}/stocktakes/{stocktake_id}/approve",
            {"version": 1},
        ),
        ("post", "/v1/stores/{store_id}/stocktakes/{stocktake_id}/cancel"): (
            f"{store}/stocktakes/{stocktake_id}/cancel",
            {"version": 1},
        ),
        ("get", "/v1/stores/{store_id}/transfers"): (f"{store}/transfers", None),
        ("post", "/v1/stores/{store_id}/transfers"): (
            f"{store}/transfers",
            {"from_store_id": str(uuid.uuid4()), "lines": [line]},
        ),
        ("get", "/v1/stores/{store_id}/transfers/{transfer_id}"): (
            f"{store}/transfers/{transfer_id}",
            None,
        ),
        ("post", "/v1/stores/{store_id}/transfers/{transfer_id}/ship"): (
            f"{store}/transfers/{transfer_id}/ship",
            {"version": 1},
        ),
        ("post", "/v1/stores/{store_id}/transfers/{transfer_id}/receive"): (
            f"{store}/transfers/{transfer_id}/receive",
            {"version": 1},
        ),
        ("post", "/v1/stores/{store_id}/transfers/{transfer_id}/cancel"): (
            f"{store}/transfers/{transfer_id}/cancel",
            {"version": 1},
        ),
        ("get", "/v1/stores/{store_id}/replenishment"): (f"{store}/replenishment", None),
        ("get", "/v1/stores/{store_id}/tobacco/daily-report"): (
            f"{store}/tobacco/daily-report?date=2026-03-01",
            None,
        ),
        ("get", "/v1/store-groups/{group_id}"): (f"/v1/store-groups/{group_id}", None),
        ("patch", "/v1/store-groups/{group_id}"): (
            f"/v1/store-groups/{group_id}",
            {"version": 1, "name": "taken over"},
        ),
        ("get", "/v1/price-changes/{change_id}"): (f"/v1/price-changes/{change_id}", None),
        ("post", "/v1/price-changes/{change_id}/cancel"): (
            f"/v1/price-changes/{change_id}/cancel",
            None,
        ),
        ("get", "/v1/product-imports/{import_id}"): (f"/v1/product-imports/{import_id}", None),
    }


async def owner_back_office(
    harness: Harness, owner: uuid.UUID, store: uuid.UUID, product: dict[str, Any]
) -> dict[str, str]:
    """One of each of the owner's back-office resources, for the walk."""
    headers = harness.auth(owner)
    other_store = await harness.store(owner)

    async def post(url: str, body: dict[str, Any], **extra: str) -> str:
        response = await harness.client.post(url, json=body, headers={**headers, **extra})
        assert response.status_code in (200, 201, 202), (url, response.text)
        return str(response.json()["id"])

    category_id = await post("/v1/categories", {"name": "Drinks"})
    supplier_id = await post("/v1/suppliers", {"name": "Vendor"})
    order_id = await post(
        f"/v1/stores/{store}/purchase-orders",
        {
            "supplier_id": supplier_id,
            "lines": [{"product_id": product["id"], "quantity": 2, "unit_cost": _cny(100)}],
        },
    )
    stocktake_id = await post(f"/v1/stores/{store}/stocktakes", {})
    transfer_id = await post(
        f"/v1/stores/{store}/transfers",
        {
            "from_store_id": str(other_store),
            "lines": [{"product_id": product["id"], "quantity": 1}],
        },
    )
    group_id = await post("/v1/store-groups", {"name": "All", "store_ids": [str(store)]})
    change_id = await post(
        "/v1/price-changes",
        {
            "store_group_id": group_id,
            "effective_at": "2099-01-01T00:00:00",
            "lines": [{"product_id": product["id"], "price": _cny(1)}],
        },
    )
    imported = await harness.client.post(
        "/v1/product-imports",
        content=b"sku,name,price\nIMP-1,x,1.00\n",
        headers={**headers, "Content-Type": "text/csv"},
    )
    assert imported.status_code == 202
    return {
        "category_id": category_id,
        "supplier_id": supplier_id,
        "order_id": order_id,
        "stocktake_id": stocktake_id,
        "transfer_id": transfer_id,
        "group_id": group_id,
        "change_id": change_id,
        "import_id": imported.json()["id"],
    }


async def owner_with_stock(harness: Harness) -> tuple[uuid.UUID, uuid.UUID, dict[str, Any]]:
    owner = uuid.uuid4()
    store = await harness.store(owner)
    product = await harness.product(
        owner, barcode=harness.ean13(f"69{uuid.uuid4().int % 10**10:010d}"), cost=_cny(500)
    )
    response = await harness.client.post(
        f"/v1/stores/{store}/stock-in",
        json={"occurred_at": T0, "lines": [{"product_id": product["id"], "quantity": 5}]},
        headers=harness.keyed(owner),
    )
    assert response.status_code == 201, response.text
    return owner, store, product


def _cny(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "CNY"}


@pytest.mark.parametrize("role", ROLES)
async def test_another_merchants_ids_are_not_found_on_every_route(
    harness: Harness, role: Role
) -> None:
    owner, store, product = await owner_with_stock(harness)
    ids = await owner_back_office(harness, owner, store, product)
    intruder = uuid.uuid4()
    intruders_store = await harness.store(intruder)
    requests = id_taking_requests(product["id"], product["barcode"], store, **ids)

    spec = (await harness.client.get("/openapi.json")).json()
    routes = {
        (method, path)
        for path, operations in spec["paths"].items()
        if "{" in path
        for method in operations
    }
    assert routes == set(requests), "a route taking an id is missing from this walk"

    for (method, _), (url, body) in requests.items():
        headers = as_role(role, intruder, intruders_store)
        response = await harness.client.request(method, url, json=body, headers=headers)
        expected = {404} if role is Role.HQ_ADMIN else {403, 404}
        assert response.status_code in expected, (method, url, response.text)
        assert product["id"] not in response.text or response.status_code != 200

    # Nothing of the owner's moved.
    assert await harness.on_hand(owner, store, product["id"]) == 5
    mine = await harness.client.get(
        f"/v1/products/{product['id']}",
        params={"store_id": str(store)},
        headers=harness.auth(owner),
    )
    assert mine.json()["version"] == 1
    assert mine.json()["name"] == product["name"]
    assert mine.json()["store_price"] is None
    order = await harness.client.get(
        f"/v1/stores/{store}/purchase-orders/{ids['order_id']}", headers=harness.auth(owner)
    )
    assert (order.json()["status"], order.json()["version"]) == ("draft", 1)
    take = await harness.client.get(
        f"/v1/stores/{store}/stocktakes/{ids['stocktake_id']}", headers=harness.auth(owner)
    )
    assert (take.json()["status"], take.json()["counted"]) == ("open", 0)
    change = await harness.client.get(
        f"/v1/price-changes/{ids['change_id']}", headers=harness.auth(owner)
    )
    assert change.json()["status"] == "scheduled"


async def test_writes_to_another_merchants_or_an_unknown_store_are_not_found(
    harness: Harness,
) -> None:
    merchant, other = uuid.uuid4(), uuid.uuid4()
    product = await harness.product(merchant)
    foreign = await harness.store(other)
    unknown = uuid.uuid4()
    line = {"product_id": product["id"], "quantity": 1}
    for store in (foreign, unknown):
        writes = [
            ("post", f"/v1/stores/{store}/stock-in", {"occurred_at": T0, "lines": [line]}),
            (
                "post",
                f"/v1/stores/{store}/adjustments",
                {"product_id": product["id"], "quantity": 2, "reason": "x", "occurred_at": T0},
            ),
            (
                "post",
                f"/v1/stores/{store}/counts",
                {"occurred_at": T0, "lines": [{"product_id": product["id"], "counted": 9}]},
            ),
            ("put", f"/v1/stores/{store}/stock/{product['id']}/threshold", {"threshold": 1}),
            (
                "put",
                f"/v1/products/{product['id']}/store-prices/{store}",
                {"version": 1, "price": _cny(1)},
            ),
        ]
        for method, url, body in writes:
            response = await harness.client.request(
                method, url, json=body, headers=harness.keyed(merchant)
            )
            assert response.status_code == 404, (url, response.text)
            assert response.json()["code"] == "store_not_found"
    # Nothing was written under the caller's merchant either.
    async with harness.database.transaction() as session:
        from sqlalchemy import text

        rows = await session.scalar(
            text("SELECT count(*) FROM stock_movements WHERE merchant_id = :m"), {"m": merchant}
        )
    assert rows == 0


async def test_a_locked_store_takes_no_stock_or_price_changes(harness: Harness) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    product = await harness.product(merchant)
    await harness.lock_store(merchant, store)
    response = await harness.client.post(
        f"/v1/stores/{store}/stock-in",
        json={"occurred_at": T0, "lines": [{"product_id": product["id"], "quantity": 1}]},
        headers=harness.keyed(merchant),
    )
    assert response.status_code == 423
    assert response.json()["code"] == "store_read_only"
    # Reading it is still fine.
    stock = await harness.client.get(f"/v1/stores/{store}/stock", headers=harness.auth(merchant))
    assert stock.status_code == 200


async def test_store_managers_set_their_store_prices_but_not_merchant_wide_fields(
    harness: Harness,
) -> None:
    merchant = uuid.uuid4()
    mine, theirs = await harness.store(merchant), await harness.store(merchant)
    product = await harness.product(merchant, cost=_cny(400))
    manager = as_role(Role.STORE_MANAGER, merchant, mine)

    created = await harness.client.post(
        "/v1/products", json={"sku": "X-1", "name": "x", "price": _cny(1)}, headers=manager
    )
    assert created.status_code == 403
    assert created.json()["code"] == "merchant_scope_required"
    changed = await harness.client.patch(
        f"/v1/products/{product['id']}",
        json={"version": 1, "price": _cny(1)},
        headers=as_role(Role.STORE_MANAGER, merchant, mine),
    )
    assert changed.status_code == 403
    assert changed.json()["code"] == "merchant_scope_required"

    own_price = await harness.client.put(
        f"/v1/products/{product['id']}/store-prices/{mine}",
        json={"version": 1, "price": _cny(990)},
        headers=as_role(Role.STORE_MANAGER, merchant, mine),
    )
    assert own_price.status_code == 200, own_price.text
    assert own_price.json()["effective_price"] == _cny(990)
    other_store = await harness.client.put(
        f"/v1/products/{product['id']}/store-prices/{theirs}",
        json={"version": 2, "price": _cny(1)},
        headers=as_role(Role.STORE_MANAGER, merchant, mine),
    )
    assert other_store.status_code == 404
    hq = await harness.client.get(f"/v1/products/{product['id']}", headers=harness.auth(merchant))
    assert hq.json()["price"] == _cny(1200)


async def test_cost_is_shown_only_to_catalog_managers(harness: Harness) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    barcode = harness.ean13(f"69{uuid.uuid4().int % 10**10:010d}")
    product = await harness.product(merchant, cost=_cny(450), barcode=barcode)
    assert product["cost"] == _cny(450)
    reads = [
        f"/v1/products/{product['id']}",
        f"/v1/products/{product['id']}?store_id={store}",
        f"/v1/products/by-barcode/{barcode}",
    ]
    for role, shown in (
        (Role.CASHIER, False),
        (Role.STORE_MANAGER, True),
        (Role.HQ_ADMIN, True),
    ):
        headers = as_role(role, merchant, store)
        for url in reads:
            body = (await harness.client.get(url, headers=headers)).json()
            assert (body["cost"] == _cny(450)) is shown, (role, url, body)
            assert body["cost"] is None or shown
        listed = await harness.client.get("/v1/products", headers=headers)
        [item] = listed.json()["items"]
        assert (item["cost"] is not None) is shown


async def test_product_ids_are_unique_per_merchant_only(harness: Harness) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    shared = str(uuid.uuid4())
    await harness.product(first, id=shared, name="First's tea")
    # Another merchant choosing the same id is not told anything about the first one.
    theirs = await harness.product(second, id=shared, name="Second's tea")
    assert theirs["id"] == shared
    again = await harness.client.post(
        "/v1/products",
        json={"id": shared, "sku": "S-2", "name": "x", "price": _cny(1)},
        headers=harness.auth(second),
    )
    assert again.status_code == 409
    assert again.json()["code"] == "duplicate_product_id"

    renamed = await harness.client.patch(
        f"/v1/products/{shared}",
        json={"version": 1, "name": "Renamed"},
        headers=harness.auth(second),
    )
    assert renamed.status_code == 200
    store = await harness.store(second)
    stocked = await harness.client.post(
        f"/v1/stores/{store}/stock-in",
        json={"occurred_at": T0, "lines": [{"product_id": shared, "quantity": 4}]},
        headers=harness.keyed(second),
    )
    assert stocked.status_code == 201
    original = await harness.client.get(f"/v1/products/{shared}", headers=harness.auth(first))
    assert original.json()["name"] == "First's tea"
    assert original.json()["version"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"price": _cny(-1)},
        {"price": _cny(100), "cost": _cny(-5)},
        {"price": {"amount": 2**63, "currency": "CNY"}},
        {"price": {"amount": -(2**70), "currency": "CNY"}},
    ],
)
async def test_negative_or_overflowing_prices_are_refused(
    harness: Harness, body: dict[str, Any]
) -> None:
    response = await harness.client.post(
        "/v1/products",
        json={"sku": f"N-{uuid.uuid4().hex[:6]}", "name": "x", **body},
        headers=harness.auth(uuid.uuid4()),
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_failed"


async def test_negative_price_changes_and_overflowing_quantities_are_refused(
    harness: Harness,
) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    product = await harness.product(merchant)
    pid = product["id"]
    refused = [
        ("patch", f"/v1/products/{pid}", {"version": 1, "price": _cny(-100)}),
        ("patch", f"/v1/products/{pid}", {"version": 1, "cost": _cny(-1)}),
        ("put", f"/v1/products/{pid}/store-prices/{store}", {"version": 1, "price": _cny(-1)}),
        (
            "post",
            f"/v1/stores/{store}/stock-in",
            {"occurred_at": T0, "lines": [{"product_id": pid, "quantity": 10**30}]},
        ),
        (
            "post",
            f"/v1/stores/{store}/adjustments",
            {"product_id": pid, "quantity": -(2**63), "reason": "x", "occurred_at": T0},
        ),
        (
            "post",
            f"/v1/stores/{store}/counts",
            {"occurred_at": T0, "lines": [{"product_id": pid, "counted": 2**64}]},
        ),
        ("put", f"/v1/stores/{store}/stock/{pid}/threshold", {"threshold": 2**63}),
    ]
    for method, url, body in refused:
        response = await harness.client.request(
            method, url, json=body, headers=harness.keyed(merchant)
        )
        assert response.status_code == 422, (url, response.text)
    unchanged = await harness.client.get(f"/v1/products/{pid}", headers=harness.auth(merchant))
    assert unchanged.json()["version"] == 1


async def test_store_replica_keeps_the_newest_version_and_checks_the_merchant(
    harness: Harness,
) -> None:
    from contracts.events.identity import StoreStatusChanged
    from contracts.registry import make_envelope
    from inventory.stores.handlers import store_status_changed
    from servicekit.consumer import PoisonMessage

    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    product = await harness.product(merchant)
    await harness.lock_store(merchant, store)  # version 2
    # A late version-1 "active" changes nothing.
    late = StoreStatusChanged(
        store_id=store,
        merchant_id=merchant,
        status="active",
        previous_status="read_only",
        version=1,
    )
    async with harness.database.transaction() as session:
        await store_status_changed(
            session,
            make_envelope(late, producer="identity", aggregate_id=store, merchant_id=merchant),
        )
    response = await harness.client.post(
        f"/v1/stores/{store}/stock-in",
        json={"occurred_at": T0, "lines": [{"product_id": product["id"], "quantity": 1}]},
        headers=harness.keyed(merchant),
    )
    assert response.status_code == 423
    # An envelope of one merchant cannot hand a store to another.
    forged = late.model_copy(update={"version": 9})
    with pytest.raises(PoisonMessage):
        async with harness.database.transaction() as session:
            await store_status_changed(
                session,
                make_envelope(
                    forged, producer="identity", aggregate_id=store, merchant_id=uuid.uuid4()
                ),
            )


async def test_a_store_announced_while_a_request_waits_for_it_is_found(harness: Harness) -> None:
    import asyncio

    from inventory.stores.service import require_store
    from servicekit.auth import Principal

    merchant, store = uuid.uuid4(), uuid.uuid4()
    principal = Principal(
        subject=uuid.uuid4(),
        merchant_id=merchant,
        role=Role.HQ_ADMIN,
        scopes=ALL,
        store_ids=None,
        token_id="t",
        expires_at=datetime.now(UTC),
    )

    async def check() -> str:
        async with harness.database.transaction() as session:
            return await require_store(session, principal, store, wait=60.0)

    waiting = asyncio.create_task(check())
    await harness.store(merchant, store)
    assert await waiting == "active"


async def test_a_nul_character_is_a_client_mistake_not_a_server_error(harness: Harness) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    product = await harness.product(merchant)
    pid = product["id"]
    refused = [
        ("post", "/v1/products", {"sku": "A\x00", "name": "x", "price": _cny(1)}),
        ("post", "/v1/products", {"sku": "A-1", "name": "tea\x00", "price": _cny(1)}),
        ("patch", f"/v1/products/{pid}", {"version": 1, "unit": "\x00"}),
        (
            "post",
            f"/v1/stores/{store}/stock-in",
            {
                "document": "GRN\x00",
                "occurred_at": T0,
                "lines": [{"product_id": pid, "quantity": 1}],
            },
        ),
        (
            "post",
            f"/v1/stores/{store}/adjustments",
            {"product_id": pid, "quantity": 1, "reason": "\x00", "occurred_at": T0},
        ),
    ]
    for method, url, body in refused:
        response = await harness.client.request(
            method, url, json=body, headers=harness.keyed(merchant)
        )
        assert response.status_code == 422, (url, response.text)
        assert response.json()["errors"][0]["code"] == "invalid_character"
    lookup = await harness.client.get(
        "/v1/products/by-barcode/6901234%00", headers=harness.auth(merchant)
    )
    assert lookup.status_code == 422
    assert lookup.json()["code"] == "invalid_character"
