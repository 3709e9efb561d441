"""The unified social credit code (统一社会信用代码) of GB 32100-2015.

18 characters from a 31-character alphabet (digits and upper-case letters without I, O, Z, S
and V): registration authority (1), entity type (1), administrative division (6 digits),
organisation code (9), and a check character computed with weights 3^i mod 31.
"""

from __future__ import annotations

import re

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_SHAPE = re.compile(rf"^[{ALPHABET}]{{2}}\d{{6}}[{ALPHABET}]{{10}}$")


def check_character(first17: str) -> str:
    """The 18th character for the first 17."""
    total = sum(
        ALPHABET.index(char) * weight for char, weight in zip(first17, WEIGHTS, strict=True)
    )
    return ALPHABET[(31 - total % 31) % 31]


def is_valid(code: str) -> bool:
    return bool(_SHAPE.match(code)) and check_character(code[:17]) == code[17]


def normalize(value: str) -> str:
    """Upper-cased, without spaces; raises ``ValueError`` naming the problem."""
    code = value.strip().replace(" ", "").upper()
    if not _SHAPE.match(code):
        raise ValueError("a unified social credit code is 18 characters (digits and letters)")
    if check_character(code[:17]) != code[17]:
        raise ValueError("the check character of the unified social credit code is wrong")
    return code
