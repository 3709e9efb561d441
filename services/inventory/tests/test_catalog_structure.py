"""Categories, tax rates, packs and barcodes, product status: the catalog a chain needs."""

from __future__ import annotations

import uuid
from typing import Any

from servicekit.auth import Role
from servicekit.testing.tokens import bearer_headers

from .conftest import KEY, Harness


def _cny(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "CNY"}


def store_manager(merchant: uuid.UUID, store: uuid.UUID) -> dict[str, str]:
    return bearer_headers(
        KEY,
        merchant,
        scopes=frozenset({"catalog:manage", "inventory:adjust"}),
        store_ids=frozenset({store}),
        role=Role.STORE_MANAGER,
    )


def barcode(harness: Harness) -> str:
    return harness.ean13(f"69{uuid.uuid4().int % 10**10:010d}")


async def test_categories_form_a_tree_and_products_name_one_of_theirs(harness: Harness) -> None:
    merchant, other = uuid.uuid4(), uuid.uuid4()
    headers = harness.auth(merchant)
    drinks = await harness.client.post("/v1/categories", json={"name": "Drinks"}, headers=headers)
    assert drinks.status_code == 201, drinks.text
    tea = await harness.client.post(
        "/v1/categories", json={"name": "Tea", "parent_id": drinks.json()["id"]}, headers=headers
    )
    assert tea.status_code == 201
    children = await harness.client.get(
        "/v1/categories", params={"parent_id": drinks.json()["id"]}, headers=headers
    )
    assert [c["name"] for c in children.json()["items"]] == ["Tea"]

    product = await harness.product(merchant, category_id=tea.json()["id"])
    assert product["category_id"] == tea.json()["id"]
    unknown = await harness.client.post(
        "/v1/products",
        json={"sku": "U-1", "name": "x", "price": _cny(1), "category_id": str(uuid.uuid4())},
        headers=headers,
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["code"] == "unknown_category"
    # Another merchant's category is as unknown as a made-up one.
    foreign = await harness.client.post(
        "/v1/products",
        json={"sku": "U-2", "name": "x", "price": _cny(1), "category_id": tea.json()["id"]},
        headers=harness.auth(other),
    )
    assert foreign.status_code == 422
    patched = await harness.client.patch(
        f"/v1/products/{product['id']}",
        json={"version": 1, "category_id": str(uuid.uuid4())},
        headers=headers,
    )
    assert patched.status_code == 422

    cycle = await harness.client.patch(
        f"/v1/categories/{drinks.json()['id']}",
        json={"version": 1, "parent_id": tea.json()["id"]},
        headers=headers,
    )
    assert cycle.status_code == 422
    assert cycle.json()["errors"][0]["code"] == "category_cycle"
    twin = await harness.client.post(
        "/v1/categories", json={"name": "Tea", "parent_id": drinks.json()["id"]}, headers=headers
    )
    assert twin.status_code == 409
    assert twin.json()["code"] == "duplicate_category_name"


async def test_a_store_manager_cannot_change_the_category_tree_or_tax_rates(
    harness: Harness,
) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    manager = store_manager(merchant, store)
    created = await harness.client.post("/v1/categories", json={"name": "x"}, headers=manager)
    assert created.status_code == 403
    assert created.json()["code"] == "merchant_scope_required"
    rates = await harness.client.put(
        "/v1/tax-rates", json={"rates": [{"rate_bps": 0, "name": "zero"}]}, headers=manager
    )
    assert rates.status_code == 403
    # Reading is fine.
    listed = await harness.client.get("/v1/tax-rates", headers=manager)
    assert listed.status_code == 200


async def test_a_products_tax_rate_is_one_the_merchant_uses(harness: Harness) -> None:
    merchant = uuid.uuid4()
    headers = harness.auth(merchant)
    body = {"sku": "T-1", "name": "x", "price": _cny(100), "tax_rate_bps": 700}
    refused = await harness.client.post("/v1/products", json=body, headers=headers)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["code"] == "unknown_tax_rate"
    assert (await harness.product(merchant, tax_rate_bps=1300))["tax_rate_bps"] == 1300

    rates = {"rates": [{"rate_bps": 0, "name": "zero"}, {"rate_bps": 700, "name": "local"}]}
    changed = await harness.client.put("/v1/tax-rates", json=rates, headers=headers)
    assert changed.status_code == 200, changed.text
    accepted = await harness.client.post("/v1/products", json=body, headers=headers)
    assert accepted.status_code == 201
    no_longer = await harness.client.post(
        "/v1/products",
        json={**body, "sku": "T-2", "tax_rate_bps": 1300},
        headers=headers,
    )
    assert no_longer.status_code == 422
    # Another merchant still has the default list.
    assert (await harness.product(uuid.uuid4(), tax_rate_bps=1300))["tax_rate_bps"] == 1300


async def test_packs_and_several_barcodes_scan_to_the_product(harness: Harness) -> None:
    merchant = uuid.uuid4()
    headers = harness.auth(merchant)
    single, case, extra = barcode(harness), barcode(harness), barcode(harness)
    product = await harness.product(
        merchant,
        barcode=single,
        unit="bottle",
        packs=[{"unit": "case", "quantity": 24, "barcode": case}],
    )
    assert {b["barcode"]: b["pack_quantity"] for b in product["barcodes"]} == {
        single: 1,
        case: 24,
    }
    added = await harness.client.post(
        f"/v1/products/{product['id']}/barcodes", json={"barcode": extra}, headers=headers
    )
    assert added.status_code == 200, added.text
    assert added.json()["version"] == 2

    scanned = await harness.client.get(f"/v1/products/by-barcode/{case}", headers=headers)
    assert scanned.status_code == 200
    assert scanned.json()["id"] == product["id"]
    assert scanned.json()["scanned_pack"] == {
        "barcode": case,
        "pack_unit": "case",
        "pack_quantity": 24,
    }
    by_extra = await harness.client.get(f"/v1/products/by-barcode/{extra}", headers=headers)
    assert by_extra.json()["scanned_pack"]["pack_quantity"] == 1

    # A barcode belongs to one product of the merchant, whichever slot it sits in.
    other = await harness.product(merchant)
    for attempt in (
        harness.client.post(
            f"/v1/products/{other['id']}/barcodes", json={"barcode": case}, headers=headers
        ),
        harness.client.patch(
            f"/v1/products/{other['id']}", json={"version": 1, "barcode": extra}, headers=headers
        ),
    ):
        response = await attempt
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "duplicate_barcode"
    # Another merchant may use the same code.
    await harness.product(uuid.uuid4(), barcode=case)

    removed = await harness.client.delete(
        f"/v1/products/{product['id']}/barcodes/{extra}", headers=headers
    )
    assert removed.status_code == 200
    gone = await harness.client.get(f"/v1/products/by-barcode/{extra}", headers=headers)
    assert gone.status_code == 404

    events = await harness.wait_events("inventory.product.updated", merchant, 2)
    assert events[-1].payload["barcodes"] == [single]


async def test_a_discontinued_product_says_so_to_the_till(harness: Harness) -> None:
    merchant = uuid.uuid4()
    product = await harness.product(merchant)
    changed = await harness.client.patch(
        f"/v1/products/{product['id']}",
        json={"version": 1, "status": "discontinued"},
        headers=harness.auth(merchant),
    )
    assert changed.status_code == 200
    [event] = await harness.wait_events("inventory.product.updated", merchant, 1)
    assert event.payload["status"] == "discontinued"
    listed = await harness.client.get(
        "/v1/products", params={"status": "discontinued"}, headers=harness.auth(merchant)
    )
    assert [p["id"] for p in listed.json()["items"]] == [product["id"]]


async def test_goods_received_in_cases_are_stocked_as_singles(harness: Harness) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    product = await harness.product(merchant, unit="can", packs=[{"unit": "case", "quantity": 24}])
    url = f"/v1/stores/{store}/stock-in"
    lines = [
        {"product_id": product["id"], "quantity": 2, "unit": "case"},
        {"product_id": product["id"], "quantity": 3, "unit": "can"},
    ]
    received = await harness.client.post(
        url,
        json={"occurred_at": "2026-03-01T09:00:00Z", "lines": lines},
        headers=harness.keyed(merchant),
    )
    assert received.status_code == 201, received.text
    assert [m["quantity"] for m in received.json()["movements"]] == [48, 3]
    assert await harness.on_hand(merchant, store, product["id"]) == 51
    unknown = await harness.client.post(
        url,
        json={
            "occurred_at": "2026-03-01T09:00:00Z",
            "lines": [{"product_id": product["id"], "quantity": 1, "unit": "pallet"}],
        },
        headers=harness.keyed(merchant),
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["code"] == "unknown_pack"


async def test_a_duplicate_id_under_an_idempotency_key_is_a_conflict_not_a_crash(
    harness: Harness,
) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    product = await harness.product(merchant)
    supplier = await harness.client.post(
        "/v1/suppliers", json={"name": "x"}, headers=harness.auth(merchant)
    )
    same_id = str(uuid.uuid4())
    for url, body in (
        ("/v1/categories", {"id": same_id, "name": "A"}),
        ("/v1/suppliers", {"id": same_id, "name": "A"}),
        ("/v1/store-groups", {"id": same_id, "name": "A", "store_ids": [str(store)]}),
        (
            f"/v1/stores/{store}/purchase-orders",
            {
                "id": same_id,
                "supplier_id": supplier.json()["id"],
                "lines": [{"product_id": product["id"], "quantity": 1, "unit_cost": _cny(1)}],
            },
        ),
        ("/v1/products", {"id": product["id"], "sku": "NEW-1", "name": "x", "price": _cny(1)}),
    ):
        first = await harness.client.post(url, json=body, headers=harness.keyed(merchant))
        second = await harness.client.post(
            url,
            json={**body, "name": "B"} if "name" in body else body,
            headers=harness.keyed(merchant),
        )
        assert second.status_code == 409, (url, first.text, second.text)
