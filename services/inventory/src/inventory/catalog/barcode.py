"""Barcode check digits: EAN-13, EAN-8 and UPC-A (GTIN-13/8/12 share one algorithm)."""

from __future__ import annotations

GTIN_LENGTHS = frozenset({8, 12, 13})


def gtin_check_digit(body: str) -> int:
    """The check digit for ``body`` (the code without its last digit).

    Weights alternate 3, 1 starting from the digit next to the check digit, which is the
    same rule for every GTIN length.
    """
    total = 0
    for position, char in enumerate(reversed(body)):
        total += int(char) * (3 if position % 2 == 0 else 1)
    return (10 - total % 10) % 10


def is_valid_barcode(code: str) -> bool:
    """True for an all-digit EAN-13, EAN-8 or UPC-A code whose check digit is right."""
    if len(code) not in GTIN_LENGTHS or not code.isascii() or not code.isdigit():
        return False
    return gtin_check_digit(code[:-1]) == int(code[-1])
