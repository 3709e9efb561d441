"""Input rules shared by identity's domains: phones, passwords, timezones, and masking."""

from __future__ import annotations

import re
import zoneinfo
from typing import Annotated

from pydantic import AfterValidator

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_SEPARATORS = re.compile(r"[\s\-().]")


def normalize_phone(value: str) -> str:
    """An E.164 phone number (``+8613800000000``); spaces, dashes and brackets are dropped."""
    phone = _SEPARATORS.sub("", value)
    if not _E164.match(phone):
        raise ValueError("phone must be in E.164 format, e.g. +8613800000000")
    return phone


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
