"""Barcodes as a scanner reads them: separators, GTIN-14 and non-ASCII digits are refused
even where the check-digit library would accept them."""

from __future__ import annotations

import pytest

from inventory.catalog.barcode import gtin_check_digit, is_valid_barcode


@pytest.mark.parametrize("code", ["4006-3813-3393-1", " 4006381333931", "10012345678902"])
def test_only_plain_retail_lengths_are_barcodes(code: str) -> None:
    assert not is_valid_barcode(code)


def test_check_digits_for_every_length() -> None:
    assert gtin_check_digit("590123412345") == 7  # EAN-13
    assert gtin_check_digit("03600029145") == 2  # UPC-A
    assert gtin_check_digit("9638507") == 4  # EAN-8
