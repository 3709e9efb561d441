"""Money: strict integer amounts, currency rules, exact arithmetic, splits and fees."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from contracts.money import (
    CURRENCY_EXPONENTS,
    MAX_AMOUNT,
    CurrencyMismatch,
    Money,
    minor_unit_exponent,
)


def cny(amount: int) -> Money:
    return Money.of(amount, "CNY")


class Priced(BaseModel):
    price: Money


# -- validation ----------------------------------------------------------------------------------


def test_json_round_trip() -> None:
    money = Money.model_validate_json('{"amount": 1250, "currency": "CNY"}')
    assert money == cny(1250)
    assert json.loads(money.model_dump_json()) == {"amount": 1250, "currency": "CNY"}


@pytest.mark.parametrize(
    "raw",
    [
        '{"amount": 12.5, "currency": "CNY"}',
        '{"amount": 1250.0, "currency": "CNY"}',
        '{"amount": "1250", "currency": "CNY"}',
        '{"amount": true, "currency": "CNY"}',
        '{"amount": null, "currency": "CNY"}',
    ],
)
def test_amount_must_be_a_json_integer(raw: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Money.model_validate_json(raw)
    (error,) = caught.value.errors()
    assert error["type"] == "expected_integer"
    assert error["loc"] == ("amount",)
    assert "integer number of minor units" in error["msg"]


@pytest.mark.parametrize("amount", [12.5, 1250.0, "1250", False, None])
def test_amount_must_be_an_int_in_python_too(amount: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        Money(amount=amount, currency="CNY")
    assert caught.value.errors()[0]["type"] == "expected_integer"


def test_nested_amount_error_points_at_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        Priced.model_validate_json('{"price": {"amount": 9.9, "currency": "CNY"}}')
    (error,) = caught.value.errors()
    assert error["type"] == "expected_integer"
    assert error["loc"] == ("price", "amount")


def test_amount_fits_a_bigint() -> None:
    assert Money.of(MAX_AMOUNT, "CNY").amount == 2**63 - 1
    with pytest.raises(ValidationError):
        Money.of(MAX_AMOUNT + 1, "CNY")
    with pytest.raises(ValidationError):
        cny(MAX_AMOUNT) + cny(1)


@pytest.mark.parametrize("currency", ["cny", "CN", "CNYY", "12A", ""])
def test_currency_must_be_three_upper_case_letters(currency: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Money(amount=1, currency=currency)
    assert caught.value.errors()[0]["type"] == "string_pattern_mismatch"


def test_unknown_currency_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        Money(amount=1, currency="XYZ")
    assert caught.value.errors()[0]["type"] == "unknown_currency"


def test_extra_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        Money.model_validate({"amount": 1, "currency": "CNY", "scale": 2})


def test_money_is_immutable_and_hashable() -> None:
    money = cny(1)
    with pytest.raises(ValidationError):
        money.amount = 2  # type: ignore[misc]
    assert {cny(1), cny(1), Money.of(1, "USD")} == {cny(1), Money.of(1, "USD")}


def test_exponents() -> None:
    expected = {
        "CNY": 2,
        "HKD": 2,
        "USD": 2,
        "EUR": 2,
        "JPY": 0,
        "GBP": 2,
        "SGD": 2,
        "TWD": 2,
        "KRW": 0,
        "VND": 0,
        "BHD": 3,
        "KWD": 3,
    }
    for code, exponent in expected.items():
        assert CURRENCY_EXPONENTS[code] == exponent
        assert minor_unit_exponent(code) == exponent
    assert all(len(code) == 3 and code.isupper() for code in CURRENCY_EXPONENTS)
    with pytest.raises(ValueError, match="unsupported currency"):
        minor_unit_exponent("XXX")


# -- formatting and parsing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (1250, "CNY", "CNY 12.50"),
        (5, "CNY", "CNY 0.05"),
        (0, "CNY", "CNY 0.00"),
        (-5, "CNY", "CNY -0.05"),
        (-1250, "USD", "USD -12.50"),
        (1250, "JPY", "JPY 1250"),
        (-7, "KRW", "KRW -7"),
        (1250, "BHD", "BHD 1.250"),
        (100000000, "HKD", "HKD 1000000.00"),
    ],
)
def test_str(amount: int, currency: str, text: str) -> None:
    assert str(Money.of(amount, currency)) == text


@pytest.mark.parametrize(
    ("text", "currency", "amount"),
    [
        ("12.50", "CNY", 1250),
        ("12.5", "CNY", 1250),
        ("12", "CNY", 1200),
        ("0.01", "CNY", 1),
        ("-3.07", "CNY", -307),
        ("1250", "JPY", 1250),
        ("1.250", "BHD", 1250),
        (" 7 ", "USD", 700),
    ],
)
def test_parse(text: str, currency: str, amount: int) -> None:
    assert Money.parse(text, currency) == Money.of(amount, currency)


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        ("12.505", "CNY"),
        ("12.5", "JPY"),
        ("1e3", "CNY"),
        ("", "CNY"),
        ("12.", "CNY"),
        (".5", "CNY"),
        ("+1", "CNY"),
        ("1,000", "CNY"),
        ("NaN", "CNY"),
    ],
)
def test_parse_refuses_what_would_need_rounding_or_guessing(text: str, currency: str) -> None:
    with pytest.raises(ValueError):
        Money.parse(text, currency)


def test_parse_and_format_round_trip() -> None:
    for amount in (-100001, -1, 0, 1, 99, 100, 123456789):
        for currency in ("CNY", "JPY", "BHD"):
            money = Money.of(amount, currency)
            assert Money.parse(money.to_decimal_str(), currency) == money


# -- arithmetic ----------------------------------------------------------------------------------


def test_add_sub_neg_abs() -> None:
    assert cny(1250) + cny(50) == cny(1300)
    assert cny(1250) - cny(1300) == cny(-50)
    assert -cny(5) == cny(-5)
    assert abs(cny(-5)) == cny(5)


def test_mixing_currencies_raises() -> None:
    with pytest.raises(CurrencyMismatch, match="CNY with USD"):
        cny(1) + Money.of(1, "USD")
    with pytest.raises(CurrencyMismatch):
        cny(1) - Money.of(1, "HKD")
    with pytest.raises(CurrencyMismatch):
        assert cny(1) < Money.of(2, "USD")
    assert issubclass(CurrencyMismatch, ValueError)


def test_equality_across_currencies_is_false_not_an_error() -> None:
    assert cny(1) != Money.of(1, "USD")


def test_adding_a_bare_number_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        cny(1) + 1  # type: ignore[operator]


def test_multiply_by_int_only() -> None:
    assert cny(1250) * 3 == cny(3750)
    assert 3 * cny(1250) == cny(3750)
    assert cny(1250) * -1 == cny(-1250)
    with pytest.raises(TypeError):
        cny(1250) * 1.5  # type: ignore[operator]
    with pytest.raises(TypeError):
        cny(1250) * True


def test_comparison_within_a_currency() -> None:
    assert cny(1) < cny(2) <= cny(2) < cny(3)
    assert cny(3) > cny(2) >= cny(2)
    assert max(cny(5), cny(9), cny(-1)) == cny(9)
    assert sorted([cny(3), cny(-1), cny(2)]) == [cny(-1), cny(2), cny(3)]


def test_zero_and_sign() -> None:
    zero = Money.zero("JPY")
    assert zero == Money.of(0, "JPY")
    assert (zero.is_zero, zero.is_positive, zero.is_negative) == (True, False, False)
    assert (cny(1).is_zero, cny(1).is_positive, cny(1).is_negative) == (False, True, False)
    assert (cny(-1).is_zero, cny(-1).is_positive, cny(-1).is_negative) == (False, False, True)


def test_total() -> None:
    assert Money.total([cny(1), cny(2), cny(3)], "CNY") == cny(6)
    assert Money.total([], "USD") == Money.zero("USD")
    with pytest.raises(CurrencyMismatch):
        Money.total([cny(1)], "USD")


# -- allocation ----------------------------------------------------------------------------------


def test_allocate_gives_leftover_to_largest_remainders() -> None:
    # 100 in 1:1:1 -> 33.33 each; the single leftover fen goes to the first on a tie.
    assert cny(100).allocate([1, 1, 1]) == [cny(34), cny(33), cny(33)]
    # Exact shares need no leftover.
    assert cny(5).allocate([1, 2, 2]) == [cny(1), cny(2), cny(2)]
    # 10 in 1:1:1:4 -> 1.43, 1.43, 1.43, 5.71: floors 1,1,1,5 and two left over; remainders
    # .43 .43 .43 .71 -> the last, then the first.
    assert cny(10).allocate([1, 1, 1, 4]) == [cny(2), cny(1), cny(1), cny(6)]


def test_allocate_zero_ratio_gets_nothing() -> None:
    assert cny(101).allocate([0, 1, 1]) == [cny(0), cny(51), cny(50)]


def test_allocate_negative_mirrors_positive() -> None:
    assert cny(-100).allocate([1, 1, 1]) == [-m for m in cny(100).allocate([1, 1, 1])]


def test_allocate_sums_exactly_for_many_cases() -> None:
    ratio_sets = [[1], [1, 1], [1, 2, 3], [3, 3, 3, 1], [7, 0, 13, 1], [10_000, 1], [1] * 17]
    for amount in [*range(-50, 51), 999_999_997, -123_456_789, MAX_AMOUNT]:
        for ratios in ratio_sets:
            parts = cny(amount).allocate(ratios)
            assert sum(p.amount for p in parts) == amount
            assert len(parts) == len(ratios)
            # No part is off its exact share by a whole minor unit or more.
            total = sum(ratios)
            for part, ratio in zip(parts, ratios, strict=True):
                assert abs(part.amount * total - amount * ratio) < total


@pytest.mark.parametrize("ratios", [[], [0, 0], [1, -1], [1.5, 1]])
def test_allocate_refuses_bad_ratios(ratios: list[Any]) -> None:
    with pytest.raises((ValueError, TypeError)):
        cny(100).allocate(ratios)


def test_split() -> None:
    assert cny(1000).split(3) == [cny(334), cny(333), cny(333)]
    assert Money.of(5, "JPY").split(1) == [Money.of(5, "JPY")]
    with pytest.raises(ValueError, match="at least 1"):
        cny(1).split(0)


# -- basis points --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "bps", "fee"),
    [
        (1250, 38, 5),  # 4.75 -> 5
        (1250, 60, 8),  # 7.5 -> 8 (half rounds up)
        (1250, 4, 1),  # 0.5 -> 1
        (1249, 4, 0),  # 0.4996 -> 0
        (2500, 2, 1),  # 0.5 exactly -> 1
        (2499, 2, 0),  # 0.4998 -> 0
        (10_000, 38, 38),  # exact
        (0, 38, 0),
        (1, 38, 0),  # 0.0038 -> 0
        (1, 5000, 1),  # 0.5 -> 1
        (1, 4999, 0),
        (1, 10_000, 1),
        (12345, 0, 0),
        (12345, 10_000, 12345),  # 100%
        (12345, 20_000, 24690),  # rates above 100% are arithmetic like any other
        (MAX_AMOUNT, 1, (MAX_AMOUNT + 5_000) // 10_000),
    ],
)
def test_percent_bps_rounds_half_up(amount: int, bps: int, fee: int) -> None:
    assert cny(amount).percent_bps(bps) == cny(fee)


@pytest.mark.parametrize(("amount", "bps"), [(1250, 38), (1250, 60), (1, 5000), (2500, 2), (7, 3)])
def test_percent_bps_on_refunds_is_the_negated_charge_fee(amount: int, bps: int) -> None:
    # Refunds carry negative amounts; the rule is half away from zero, so a full refund
    # reverses exactly the fee that was charged.
    assert cny(-amount).percent_bps(bps) == -cny(amount).percent_bps(bps)


def test_percent_bps_refund_examples() -> None:
    assert cny(-1250).percent_bps(38) == cny(-5)
    assert cny(-1).percent_bps(5000) == cny(-1)
    assert cny(-1).percent_bps(4999) == cny(0)


@pytest.mark.parametrize("bps", [-1, 1.5, True, "38"])
def test_percent_bps_refuses_bad_rates(bps: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        cny(100).percent_bps(bps)


def test_percent_bps_in_zero_decimal_currency() -> None:
    assert Money.of(1250, "JPY").percent_bps(38) == Money.of(5, "JPY")


def test_json_schema_tells_other_languages_it_is_a_bounded_integer() -> None:
    amount = Money.model_json_schema()["properties"]["amount"]
    assert amount["type"] == "integer"
    assert (amount["minimum"], amount["maximum"]) == (-(2**63 - 1), 2**63 - 1)
