"""Phone numbers as every service stores them: E.164, checked against the real numbering plans
(``phonenumbers``), never against a pattern."""

from __future__ import annotations

import phonenumbers

#: Numbers written without a country code are read as mainland China numbers.
DEFAULT_PHONE_REGION = "CN"


def normalize_phone(value: str) -> str:
    """The number in E.164 (``+8613800000000``) if it is a number some phone can have:
    separators are allowed, a number without ``+`` is read as a mainland one.

    Raises ``ValueError`` with a message for the caller otherwise."""
    try:
        number = phonenumbers.parse(value, DEFAULT_PHONE_REGION)
    except phonenumbers.NumberParseException:
        raise ValueError("phone must be a phone number, e.g. +8613800000000") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("phone is not a number in use in its country's numbering plan")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
