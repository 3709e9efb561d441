"""Phones, resident ID numbers and credit codes are checked against the real rules (numbering
plans, GB 11643, GB 32100), not a pattern."""

from __future__ import annotations

import pytest

from identity.common.validation import normalize_id_number, normalize_phone
from identity.merchants import credit_code
from identity.testing import Api, new_credit_code, new_phone


@pytest.mark.parametrize(
    ("given", "e164"),
    [
        ("+86 138-0013-8000", "+8613800138000"),
        ("13800138000", "+8613800138000"),  # no country code: a mainland number
        ("+852 6123 4567", "+85261234567"),
        ("+1 (650) 253-0000", "+16502530000"),
    ],
)
def test_phones_come_out_in_e164(given: str, e164: str) -> None:
    assert normalize_phone(given) == e164


@pytest.mark.parametrize(
    "phone",
    [
        "+8610000000000",  # the right length for a regex, no such mobile range
        "+86123",
        "+999123456789",  # no such country
        "call me",
    ],
)
def test_numbers_no_phone_can_have_are_refused(phone: str) -> None:
    with pytest.raises(ValueError, match="phone"):
        normalize_phone(phone)


def test_resident_id_numbers_are_checked() -> None:
    assert normalize_id_number("110101199003074514") == "110101199003074514"
    for wrong in ("110101199003074515", "110101199013074514", "000000199003074514"):
        with pytest.raises(ValueError, match="resident ID"):
            normalize_id_number(wrong)
    # A passport or a Hong Kong permit is not a resident ID number and is kept.
    assert normalize_id_number("e12345678") == "E12345678"
    with pytest.raises(ValueError):
        normalize_id_number("E1234-5678")


def test_credit_codes_are_checked_by_gb_32100() -> None:
    code = new_credit_code()
    assert credit_code.normalize(f" {code.lower()} ") == code
    wrong = code[:17] + ("0" if code[17] != "0" else "1")
    with pytest.raises(ValueError, match="check character"):
        credit_code.normalize(wrong)
    with pytest.raises(ValueError, match="18 characters"):
        credit_code.normalize("AB" + code[2:])


async def test_signup_refuses_a_fake_id_number_and_phone(api: Api) -> None:
    phone = new_phone()
    body = api.signup_body(phone, await api.code(phone, "signup"))
    body["merchant"]["legal_rep_id_number"] = "110101199003074515"
    body["merchant"]["contact_phone"] = "+8610000000000"
    refused = await api.client.post("/v1/merchants", json=body)
    assert refused.status_code == 422
    fields = {error["field"] for error in refused.json()["errors"]}
    assert fields == {"merchant.legal_rep_id_number", "merchant.contact_phone"}
