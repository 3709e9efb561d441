"""The catalog: barcodes, uniqueness, optimistic concurrency, tenancy and product events."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from inventory.catalog.barcode import gtin_check_digit, is_valid_barcode


@pytest.mark.parametrize(
    "code",
    ["4006381333931", "5901234123457", "73513537", "96385074", "036000291452", "012345678905"],
)
def test_valid_barcodes(code: str) -> None:
    assert is_valid_barcode(code)


@pytest.mark.parametrize(
    "code",
    [
        "4006381333932",
        "73513538",
        "036000291453",
        "12345",
        "40063813339a1",
        "",
        "\uff14\uff10\uff10\uff16\uff13\uff18\uff11\uff13\uff13\uff13\uff19\uff13\uff11",
    ],
)
def test_invalid_barcodes(code: str) -> None:
    assert not is_valid_barcode(code)


def test_check_digit_matches_published_examples() -> None:
    assert gtin_check_digit("400638133393") == 1
    assert gtin_check_digit("7351353") == 7


async def test_create_and_read_product(harness: Any) -> None:
    merchant = uuid.uuid4()
    barcode = harness.ean13("690000000001")
    created = await harness.product(
        merchant,
        barcode=barcode,
        kitchen_station="bar",
        tax_rate_bps=600,
        cost={"amount": 700, "currency": "CNY"},
    )
    assert created["version"] == 1
    assert created["effective_price"] == {"amount": 1200, "currency": "CNY"}
    got = await harness.client.get(f"/v1/products/{created['id']}", headers=harness.auth(merchant))
    assert got.status_code == 200
    assert got.json()["kitchen_station"] == "bar"
    found = await harness.client.get(
        f"/v1/products/by-barcode/{barcode}", headers=harness.auth(merchant)
    )
    assert found.json()["id"] == created["id"]
    events = await harness.wait_events("inventory.product.created", merchant, 1)
    assert events[0].payload["product_id"] == created["id"]
    assert events[0].payload["price"] == {"amount": 1200, "currency": "CNY"}
    assert events[0].payload["version"] == 1


async def test_invalid_barcode_is_a_field_error(harness: Any) -> None:
    response = await harness.client.post(
        "/v1/products",
        json={
            "sku": "A",
            "name": "x",
            "barcode": "4006381333932",
            "price": {"amount": 1, "currency": "CNY"},
        },
        headers=harness.auth(uuid.uuid4()),
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "barcode"
    assert response.json()["errors"][0]["code"] == "invalid_barcode"


async def test_float_price_is_refused(harness: Any) -> None:
    response = await harness.client.post(
        "/v1/products",
        json={"sku": "A", "name": "x", "price": {"amount": 12.5, "currency": "CNY"}},
        headers=harness.auth(uuid.uuid4()),
    )
    assert response.status_code == 422
    assert response.json()["errors"][0] == {
        "field": "price.amount",
        "code": "expected_integer",
        "message": response.json()["errors"][0]["message"],
    }


async def test_duplicate_sku_and_barcode_within_a_merchant(harness: Any) -> None:
    merchant, other = uuid.uuid4(), uuid.uuid4()
    barcode = harness.ean13("690000000002")
    await harness.product(merchant, sku="TEA-1", barcode=barcode)
    same_sku = await harness.client.post(
        "/v1/products",
        json={"sku": "TEA-1", "name": "y", "price": {"amount": 1, "currency": "CNY"}},
        headers=harness.auth(merchant),
    )
    assert same_sku.status_code == 409
    assert same_sku.json()["code"] == "duplicate_sku"
    same_barcode = await harness.client.post(
        "/v1/products",
        json={
            "sku": "TEA-2",
            "name": "y",
            "barcode": barcode,
            "price": {"amount": 1, "currency": "CNY"},
        },
        headers=harness.auth(merchant),
    )
    assert same_barcode.status_code == 409
    assert same_barcode.json()["code"] == "duplicate_barcode"
    # Another merchant may use the same SKU and barcode.
    await harness.product(other, sku="TEA-1", barcode=barcode)


async def test_update_needs_the_current_version(harness: Any) -> None:
    merchant = uuid.uuid4()
    product = await harness.product(merchant)
    url = f"/v1/products/{product['id']}"
    first = await harness.client.patch(
        url,
        json={"version": 1, "name": "Jasmine tea", "price": {"amount": 1500, "currency": "CNY"}},
        headers=harness.auth(merchant),
    )
    assert first.status_code == 200, first.text
    assert first.json()["version"] == 2
    assert first.json()["price"]["amount"] == 1500
    stale = await harness.client.patch(
        url, json={"version": 1, "name": "Green tea"}, headers=harness.auth(merchant)
    )
    assert stale.status_code == 409
    assert stale.json()["code"] == "version_mismatch"
    assert stale.json()["current_version"] == 2
    events = await harness.wait_events("inventory.product.updated", merchant, 1)
    assert events[0].payload["name"] == "Jasmine tea"
    assert events[0].payload["version"] == 2


async def test_store_price_overrides_hq_price(harness: Any) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)
    product = await harness.product(merchant)
    url = f"/v1/products/{product['id']}/store-prices/{store}"
    set_price = await harness.client.put(
        url,
        json={"version": 1, "price": {"amount": 990, "currency": "CNY"}},
        headers=harness.auth(merchant),
    )
    assert set_price.status_code == 200, set_price.text
    assert set_price.json()["effective_price"]["amount"] == 990
    assert set_price.json()["version"] == 2
    got = await harness.client.get(
        f"/v1/products/{product['id']}",
        params={"store_id": str(store)},
        headers=harness.auth(merchant),
    )
    assert got.json()["store_price"]["amount"] == 990
    removed = await harness.client.put(
        url, json={"version": 2, "price": None}, headers=harness.auth(merchant)
    )
    assert removed.json()["effective_price"]["amount"] == 1200
    events = await harness.wait_events("inventory.product.price_changed", merchant, 2)
    assert [e.payload["price"] for e in events] == [{"amount": 990, "currency": "CNY"}, None]
    assert [e.payload["version"] for e in events] == [2, 3]


async def test_other_merchants_product_is_not_found(harness: Any) -> None:
    owner, intruder = uuid.uuid4(), uuid.uuid4()
    product = await harness.product(owner)
    url = f"/v1/products/{product['id']}"
    assert (await harness.client.get(url, headers=harness.auth(intruder))).status_code == 404
    patched = await harness.client.patch(
        url, json={"version": 1, "name": "x"}, headers=harness.auth(intruder)
    )
    assert patched.status_code == 404
    listed = await harness.client.get("/v1/products", headers=harness.auth(intruder))
    assert listed.json()["items"] == []


async def test_catalog_writes_need_the_scope(harness: Any) -> None:
    response = await harness.client.post(
        "/v1/products",
        json={"sku": "A", "name": "x", "price": {"amount": 1, "currency": "CNY"}},
        headers=harness.auth(uuid.uuid4(), scopes=frozenset({"orders:write"})),
    )
    assert response.status_code == 403


async def test_list_products_pages_with_a_cursor(harness: Any) -> None:
    merchant = uuid.uuid4()
    ids = [(await harness.product(merchant))["id"] for _ in range(3)]
    first = await harness.client.get(
        "/v1/products", params={"limit": 2}, headers=harness.auth(merchant)
    )
    body = first.json()
    second = await harness.client.get(
        "/v1/products",
        params={"limit": 2, "cursor": body["next_cursor"]},
        headers=harness.auth(merchant),
    )
    assert [p["id"] for p in body["items"] + second.json()["items"]] == ids
    assert "next_cursor" not in second.json()
