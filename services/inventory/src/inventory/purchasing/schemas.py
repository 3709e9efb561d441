"""Request and response models of suppliers and purchase orders."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, Strict

from contracts.money import Money
from inventory.catalog.schemas import Price
from servicekit.text import StorableStr

Text = Annotated[StorableStr, Field(min_length=1, max_length=200)]
Short = Annotated[StorableStr, Field(min_length=1, max_length=64)]
Quantity = Annotated[int, Strict(), Field(gt=0, le=10**9)]
Version = Annotated[int, Strict(), Field(ge=1)]
SupplierStatus = Literal["active", "inactive"]
PurchaseOrderStatus = Literal["draft", "sent", "partially_received", "received", "cancelled"]


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text
    role: Short | None = None
    phone: Short | None = None
    email: Short | None = None


class SupplierCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: uuid.UUID | None = None
    name: Text
    contacts: Annotated[list[Contact], Field(max_length=20)] = []
    tobacco_licence: Short | None = Field(
        default=None, description="Tobacco monopoly licence number; needed to sell us tobacco."
    )


class SupplierUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Version
    name: Text | None = None
    contacts: Annotated[list[Contact], Field(max_length=20)] | None = None
    tobacco_licence: Short | None = None
    status: SupplierStatus | None = None


class SupplierOut(BaseModel):
    id: uuid.UUID
    name: str
    contacts: list[Contact]
    tobacco_licence: str | None
    status: SupplierStatus
    version: int


class SupplierProductSet(BaseModel):
    """What the supplier charges for one single of the product."""

    model_config = ConfigDict(extra="forbid")

    cost: Price
    supplier_sku: Short | None = None


class SupplierProductOut(BaseModel):
    supplier_id: uuid.UUID
    product_id: uuid.UUID
    cost: Money
    supplier_sku: str | None


class PurchaseOrderLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: uuid.UUID
    quantity: Quantity = Field(description="How many ``unit`` (singles when absent).")
    unit: Short | None = Field(default=None, description="A pack unit of the product: 'case'.")
    unit_cost: Price | None = Field(
        default=None,
        description="Per ``unit``; the supplier's cost price of the product when absent.",
    )


class PurchaseOrderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: uuid.UUID | None = None
    number: Short | None = Field(default=None, description="Unique per merchant; generated.")
    supplier_id: uuid.UUID
    note: Annotated[StorableStr, Field(max_length=500)] | None = None
    lines: Annotated[list[PurchaseOrderLineIn], Field(min_length=1, max_length=500)]


class Transition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Version


class ReceiptLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: uuid.UUID
    quantity: Quantity = Field(description="How many ``unit`` arrived; may differ from ordered.")
    unit: Short | None = None
    unit_cost: Price | None = Field(
        default=None, description="Per ``unit`` as invoiced; the order's cost when absent."
    )


class ReceiptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    occurred_at: AwareDatetime
    lines: Annotated[list[ReceiptLineIn], Field(min_length=1, max_length=500)]
    close: bool = Field(
        default=False,
        description="Nothing more will come: the order is received even if short.",
    )


class PurchaseOrderLineOut(BaseModel):
    product_id: uuid.UUID
    ordered: int = Field(description="Singles.")
    received: int = Field(description="Singles received so far.")
    unit_cost: Money | None = Field(description="Per single; shown with catalog:manage.")
    pack_unit: str | None
    pack_quantity: int


class PurchaseOrderOut(BaseModel):
    id: uuid.UUID
    number: str
    supplier_id: uuid.UUID
    store_id: uuid.UUID
    status: PurchaseOrderStatus
    note: str | None
    tobacco_licence: str | None
    lines: list[PurchaseOrderLineOut]
    total: Money | None = Field(description="Ordered times cost; shown with catalog:manage.")
    version: int
    created_at: datetime
    updated_at: datetime


class ReceiptLineOut(BaseModel):
    product_id: uuid.UUID
    quantity: int = Field(description="Singles received.")
    unit_cost: Money | None = Field(description="Per single; shown with catalog:manage.")
    ordered: int
    received_total: int
    difference: int = Field(description="Received so far minus ordered (negative: short).")
    new_average_cost: Money | None = Field(description="Shown with catalog:manage.")


class ReceiptOut(BaseModel):
    id: uuid.UUID
    purchase_order: PurchaseOrderOut
    lines: list[ReceiptLineOut]
