"""Barcode check digits: EAN-13, EAN-8 and UPC-A (GTIN-13/8/12), checked with
``python-stdnum`` (:mod:`stdnum.ean`)."""

from __future__ import annotations

from stdnum import ean

GTIN_LENGTHS = frozenset({8, 12, 13})


def gtin_check_digit(body: str) -> int:
    """The check digit for ``body`` (the code without its last digit)."""
    return int(ean.calc_check_digit(body))


def is_valid_barcode(code: str) -> bool:
    """True for an all-digit EAN-13, EAN-8 or UPC-A code whose check digit is right."""
    # stdnum also accepts GTIN-14 and strips separators; a scanned retail barcode is neither.
    if len(code) not in GTIN_LENGTHS or not code.isascii() or not code.isdigit():
        return False
    return bool(ean.is_valid(code))
