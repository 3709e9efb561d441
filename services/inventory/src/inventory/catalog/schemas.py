"""Request and response models of the catalog API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, field_validator
from pydantic_core import PydanticCustomError

from contracts.money import Money
from inventory.catalog.barcode import is_valid_barcode
from servicekit.text import StorableStr

ProductStatus = Literal["active", "inactive", "discontinued"]
StoreOverride = Literal["allowed", "forbidden", "range"]
TaxRate = Annotated[int, Strict(), Field(ge=0, le=10_000, description="basis points")]
Text = Annotated[StorableStr, Field(min_length=1, max_length=200)]
Sku = Annotated[StorableStr, Field(min_length=1, max_length=64)]
Unit = Annotated[StorableStr, Field(min_length=1, max_length=32)]
Station = Annotated[StorableStr, Field(min_length=1, max_length=64)]


def _not_negative(value: Money) -> Money:
    if value.amount < 0:
        raise PydanticCustomError("negative_amount", "amount must not be negative")
    return value


#: A price or cost: zero (a free item) or more, never negative.
Price = Annotated[Money, AfterValidator(_not_negative)]


def _check_barcode(value: str | None) -> str | None:
    if value is not None and not is_valid_barcode(value):
        raise PydanticCustomError(
            "invalid_barcode",
            "barcode must be an EAN-13, EAN-8 or UPC-A code with a valid check digit",
        )
    return value


TobaccoCode = Annotated[StorableStr, Field(min_length=1, max_length=64)]


class Pack(BaseModel):
    """A pack the product is bought in: ``{"unit": "case", "quantity": 24}``; stock is kept in
    singles, so receiving 2 cases adds 48."""

    model_config = ConfigDict(extra="forbid")

    unit: Unit
    quantity: Annotated[int, Strict(), Field(ge=2, le=100_000)]
    barcode: str | None = Field(default=None, description="The pack's own barcode, if any.")

    @field_validator("barcode")
    @classmethod
    def _valid_barcode(cls, value: str | None) -> str | None:
        return _check_barcode(value)


Packs = Annotated[list[Pack], Field(max_length=10)]


class ProductCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: uuid.UUID | None = Field(default=None, description="Client-chosen id; generated if absent.")
    sku: Sku
    barcode: str | None = None
    name: Text
    category_id: uuid.UUID | None = None
    unit: Unit = "each"
    price: Price
    cost: Price | None = None
    tax_rate_bps: TaxRate = 0
    is_tobacco: bool = False
    status: ProductStatus = "active"
    kitchen_station: Station | None = None
    packs: Packs = []
    tobacco_code: TobaccoCode | None = None
    store_override: StoreOverride = Field(
        default="allowed", description="What a store's own staff may do to the price."
    )
    override_min: Price | None = None
    override_max: Price | None = None

    @field_validator("barcode")
    @classmethod
    def _valid_barcode(cls, value: str | None) -> str | None:
        return _check_barcode(value)


class ProductUpdate(BaseModel):
    """Only the fields sent change; ``version`` is the one the client last read."""

    model_config = ConfigDict(extra="forbid")

    version: Annotated[int, Strict(), Field(ge=1)]
    sku: Sku | None = None
    barcode: str | None = None
    name: Text | None = None
    category_id: uuid.UUID | None = None
    unit: Unit | None = None
    price: Price | None = None
    cost: Price | None = None
    tax_rate_bps: TaxRate | None = None
    is_tobacco: bool | None = None
    status: ProductStatus | None = None
    kitchen_station: Station | None = None
    packs: Packs | None = None
    tobacco_code: TobaccoCode | None = None
    store_override: StoreOverride | None = None
    override_min: Price | None = None
    override_max: Price | None = None

    @field_validator("barcode")
    @classmethod
    def _valid_barcode(cls, value: str | None) -> str | None:
        return _check_barcode(value)


class StorePriceSet(BaseModel):
    """A store's own price; ``null`` removes it so the HQ price applies again."""

    model_config = ConfigDict(extra="forbid")

    version: Annotated[int, Strict(), Field(ge=1)]
    price: Price | None


class BarcodeIn(BaseModel):
    """One more barcode for the product, or for one of its packs (``pack_unit``)."""

    model_config = ConfigDict(extra="forbid")

    barcode: str
    pack_unit: Unit | None = None

    @field_validator("barcode")
    @classmethod
    def _valid_barcode(cls, value: str) -> str:
        _check_barcode(value)
        return value


class BarcodeOut(BaseModel):
    barcode: str
    pack_unit: str | None
    pack_quantity: int


class ProductOut(BaseModel):
    id: uuid.UUID
    sku: str
    barcode: str | None
    name: str
    category_id: uuid.UUID | None
    unit: str
    price: Money
    cost: Money | None = Field(description="Shown only to callers with catalog:manage.")
    tax_rate_bps: int
    is_tobacco: bool
    status: ProductStatus
    kitchen_station: str | None
    packs: list[Pack]
    barcodes: list[BarcodeOut] = Field(description="Every barcode of the product and its packs.")
    tobacco_code: str | None
    store_override: StoreOverride
    override_min: Money | None
    override_max: Money | None
    version: int
    created_at: datetime
    updated_at: datetime
    store_id: uuid.UUID | None = Field(
        default=None, description="The store the prices below are for, when one was asked."
    )
    store_price: Money | None = Field(
        default=None, description="The store's own price, when it has one."
    )
    effective_price: Money = Field(description="What the product sells for (store or HQ).")
    scanned_pack: BarcodeOut | None = Field(
        default=None, description="On a barcode lookup: the barcode scanned and what it counts."
    )
