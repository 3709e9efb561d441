"""Input rules shared by identity's domains: phones, ID numbers, passwords, timezones, and
masking. Phone numbers are checked against the real numbering plans (``phonenumbers``) and
resident ID numbers with ``python-stdnum``, not with patterns."""

from __future__ import annotations

import re
import zoneinfo
from typing import Annotated

from pydantic import AfterValidator
from stdnum.cn import ric
from stdnum.exceptions import ValidationError

from contracts.phones import normalize_phone as normalize_phone

_RESIDENT_ID_SHAPE = re.compile(r"^\d{17}[\dX]$")


def normalize_id_number(value: str) -> str:
    """A mainland resident ID number (18 characters, GB 11643) must be a real one: its check
    character, birth date and place are verified. Other documents (passports, permits of
    Hong Kong, Macao and Taiwan residents) are kept as given, upper-cased."""
    number = value.strip().replace(" ", "").upper()
    if _RESIDENT_ID_SHAPE.match(number):
        try:
            return str(ric.validate(number))
        except ValidationError:
            raise ValueError(
                "not a valid resident ID number (check character, birth date or region)"
            ) from None
    if not number.isascii() or not number.isalnum():
        raise ValueError("an ID number has only letters and digits")
    return number


def check_password(value: str) -> str:
    """At least 8 characters with at least one letter and one digit."""
    if len(value) < 8:
        raise ValueError("password must be at least 8 characters long")
    if len(value) > 128:
        raise ValueError("password must be at most 128 characters long")
    if not any(c.isalpha() for c in value) or not any(c.isdigit() for c in value):
        raise ValueError("password must contain letters and digits")
    return value


def check_timezone(value: str) -> str:
    """An IANA timezone name known to this system (``Asia/Shanghai``)."""
    if value not in _timezones():
        raise ValueError("timezone must be an IANA name such as Asia/Shanghai")
    return value


_TIMEZONES: frozenset[str] | None = None


def _timezones() -> frozenset[str]:
    global _TIMEZONES
    if _TIMEZONES is None:
        _TIMEZONES = frozenset(zoneinfo.available_timezones())
    return _TIMEZONES


Phone = Annotated[str, AfterValidator(normalize_phone)]
IdNumber = Annotated[str, AfterValidator(normalize_id_number)]
Password = Annotated[str, AfterValidator(check_password)]
Timezone = Annotated[str, AfterValidator(check_timezone)]


def mask_phone(phone: str) -> str:
    """``+8613812345678`` -> ``+86138****5678``: enough to recognise, not to call."""
    if len(phone) <= 8:
        return phone[:2] + "*" * (len(phone) - 2)
    return phone[:-8] + "****" + phone[-4:]


def mask_id_number(value: str | None) -> str | None:
    """An ID number with all but its first and last four characters hidden."""
    if value is None:
        return None
    if len(value) <= 8:
        return "*" * len(value)
    return value[:4] + "*" * (len(value) - 8) + value[-4:]
