"""What counts as a breaking change to a published event schema (``contracts.compat``)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from contracts.compat import breaking_changes
from contracts.money import Money


def schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def changes(old: type[BaseModel], new: type[BaseModel]) -> list[str]:
    return breaking_changes(schema(old), schema(new))


# -- pydantic models, as events are declared -----------------------------------------------------


def test_identical_schemas_have_no_breaking_changes() -> None:
    class Paid(BaseModel):
        order_id: uuid.UUID
        total: Money
        paid_at: datetime
        note: str | None = None
        tags: list[str] = []

    assert changes(Paid, Paid) == []


def test_removed_property_is_breaking() -> None:
    class Old(BaseModel):
        order_id: uuid.UUID
        note: str | None = None

    class New(BaseModel):
        order_id: uuid.UUID

    assert changes(Old, New) == ["removed property 'note'"]


def test_retyped_property_is_breaking() -> None:
    class Old(BaseModel):
        quantity: int

    class New(BaseModel):
        quantity: str

    assert changes(Old, New) == ["'quantity': type changed from integer to string"]


def test_new_required_property_is_breaking() -> None:
    class Old(BaseModel):
        order_id: uuid.UUID

    class New(BaseModel):
        order_id: uuid.UUID
        store_id: uuid.UUID

    assert changes(Old, New) == ["new required property 'store_id'"]


def test_optional_property_becoming_required_is_breaking() -> None:
    class Old(BaseModel):
        note: str = ""

    class New(BaseModel):
        note: str

    assert changes(Old, New) == ["'note': became required"]


def test_new_optional_property_is_fine() -> None:
    class Old(BaseModel):
        order_id: uuid.UUID

    class New(BaseModel):
        order_id: uuid.UUID
        note: str | None = None
        table: int = 0

    assert changes(Old, New) == []


def test_narrowing_a_nullable_is_breaking() -> None:
    class Old(BaseModel):
        points: int | None

    class New(BaseModel):
        points: int

    assert changes(Old, New) == ["'points': no longer accepts null"]


def test_widening_to_nullable_is_fine() -> None:
    class Old(BaseModel):
        points: int

    class New(BaseModel):
        points: int | None

    assert changes(Old, New) == []


def test_removed_enum_value_is_breaking() -> None:
    class OldStatus(enum.StrEnum):
        OPEN = "open"
        PAID = "paid"
        VOID = "void"

    class NewStatus(enum.StrEnum):
        OPEN = "open"
        PAID = "paid"

    class Old(BaseModel):
        status: OldStatus

    class New(BaseModel):
        status: NewStatus

    assert changes(Old, New) == ["'status': enum value(s) removed: 'void'"]


def test_added_enum_value_is_fine() -> None:
    class Old(BaseModel):
        channel: Literal["pos", "delivery"]

    class New(BaseModel):
        channel: Literal["pos", "delivery", "kiosk"]

    assert changes(Old, New) == []


def test_removed_literal_value_is_breaking() -> None:
    class Old(BaseModel):
        channel: Literal["pos", "delivery"]

    class New(BaseModel):
        channel: Literal["pos"]

    assert changes(Old, New) == ["'channel': enum value(s) removed: 'delivery'"]


def test_nested_model_field_removed_is_breaking() -> None:
    class OldLine(BaseModel):
        sku: str
        unit_price: Money
        note: str | None = None

    class NewLine(BaseModel):
        sku: str
        unit_price: Money

    class Old(BaseModel):
        lines: list[OldLine]
        first: OldLine | None = None

    class New(BaseModel):
        lines: list[NewLine]
        first: NewLine | None = None

    assert changes(Old, New) == ["removed property 'lines[].note'", "removed property 'first.note'"]


def test_change_deep_inside_a_shared_model_is_found() -> None:
    class OldAmount(BaseModel):
        amount: int
        currency: str

    class NewAmount(BaseModel):
        amount: float
        currency: str

    class OldLine(BaseModel):
        price: OldAmount

    class NewLine(BaseModel):
        price: NewAmount

    class Old(BaseModel):
        lines: list[OldLine]
        totals: dict[str, OldAmount]

    class New(BaseModel):
        lines: list[NewLine]
        totals: dict[str, NewAmount]

    # integer -> number widens what is accepted: the new schema still takes every old payload.
    assert changes(Old, New) == []
    assert changes(New, Old) == [
        "'lines[].price.amount': type changed from number to integer",
        "'totals.{}.amount': type changed from number to integer",
    ]


def test_renaming_a_model_alone_is_not_a_change() -> None:
    class Line(BaseModel):
        sku: str

    class OrderLine(BaseModel):
        sku: str

    class Old(BaseModel):
        lines: list[Line]

    class New(BaseModel):
        lines: list[OrderLine]

    assert changes(Old, New) == []


def test_replacing_a_model_by_a_scalar_is_breaking() -> None:
    class Customer(BaseModel):
        member_id: uuid.UUID

    class Old(BaseModel):
        customer: Customer | None = None

    class New(BaseModel):
        customer: str | None = None

    assert changes(Old, New) == ["'customer': type changed from object | null to string | null"]


def test_tighter_constraints_are_breaking() -> None:
    class Old(BaseModel):
        code: Annotated[str, Field(max_length=20)]
        quantity: Annotated[int, Field(ge=0)]
        lines: list[int]

    class New(BaseModel):
        code: Annotated[str, Field(max_length=10, pattern=r"^[A-Z]+$")]
        quantity: Annotated[int, Field(gt=0, le=999)]
        lines: Annotated[list[int], Field(min_length=1)]

    assert changes(Old, New) == [
        "'code': pattern changed to '^[A-Z]+$'",
        "'code': maxLength lowered from 20 to 10",
        "'quantity': lower bound raised from 0 to 0 (exclusive)",
        "'quantity': upper bound lowered from none to 999",
        "'lines': minItems raised from 0 to 1",
    ]
    assert changes(New, Old) == []


def test_format_added_is_breaking_and_removed_is_fine() -> None:
    class Old(BaseModel):
        reference: str

    class New(BaseModel):
        reference: uuid.UUID

    assert changes(Old, New) == ["'reference': format changed from none to uuid"]
    assert changes(New, Old) == []


def test_recursive_models_terminate_and_are_compared() -> None:
    class OldCategory(BaseModel):
        name: str
        code: str | None = None
        children: list[OldCategory] = []
        parent: OldCategory | None = None

    class NewCategory(BaseModel):
        name: str
        children: list[NewCategory] = []
        parent: NewCategory | None = None

    class Old(BaseModel):
        root: OldCategory

    class New(BaseModel):
        root: NewCategory

    assert changes(Old, New) == ["removed property 'root.code'"]
    assert changes(Old, Old) == []


# -- raw JSON Schema, for what pydantic does not emit today ---------------------------------------


def test_type_lists_and_const() -> None:
    old = {
        "type": "object",
        "properties": {"a": {"type": ["integer", "null"]}, "b": {"const": "x"}},
    }
    new = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"enum": ["y"]}}}
    assert breaking_changes(old, new) == [
        "'a': no longer accepts null",
        "'b': enum value(s) removed: 'x'",
    ]


def test_all_of_is_merged() -> None:
    old = {
        "$defs": {"Base": {"type": "object", "properties": {"id": {"type": "string"}}}},
        "allOf": [{"$ref": "#/$defs/Base"}, {"properties": {"n": {"type": "integer"}}}],
    }
    new = {"type": "object", "properties": {"id": {"type": "string"}}}
    assert breaking_changes(old, new) == ["removed property 'n'"]


def test_additional_properties_closed_is_breaking() -> None:
    old = {"type": "object", "properties": {"id": {"type": "string"}}}
    new = {**old, "additionalProperties": False}
    assert breaking_changes(old, new) == ["the payload: additional properties no longer accepted"]
    assert breaking_changes(new, old) == []


def test_any_narrowed_to_a_type_is_breaking() -> None:
    old = {"type": "object", "properties": {"meta": {}}}
    new = {"type": "object", "properties": {"meta": {"type": "object"}}}
    assert breaking_changes(old, new) == ["'meta': type changed from any to object"]
    assert breaking_changes(new, old) == []


def test_tuple_positions_are_compared() -> None:
    old = {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]}
    new = {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}]}
    assert breaking_changes(old, new) == ["'[1]': type changed from string to boolean"]


def test_several_problems_are_all_listed() -> None:
    old = {
        "type": "object",
        "required": ["a"],
        "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
    }
    new = {
        "type": "object",
        "required": ["a", "c"],
        "properties": {"a": {"type": "string"}, "c": {"type": "string"}},
    }
    assert breaking_changes(old, new) == [
        "'a': type changed from integer to string",
        "removed property 'b'",
        "new required property 'c'",
    ]
