"""The unified social credit code (统一社会信用代码) of GB 32100-2015, checked with
``python-stdnum`` (:mod:`stdnum.cn.uscc`): 18 characters, the first eight digits (registration
authority, entity type, administrative division), then the organisation code and a check
character from a 31-character alphabet (digits and upper-case letters without I, O, Z, S, V).
"""

from __future__ import annotations

from stdnum.cn import uscc
from stdnum.exceptions import InvalidChecksum, ValidationError

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def check_character(first17: str) -> str:
    """The 18th character for the first 17."""
    return str(uscc.calc_check_digit(first17))


def is_valid(code: str) -> bool:
    return bool(uscc.is_valid(code))


def normalize(value: str) -> str:
    """Upper-cased, without spaces or dashes; raises ``ValueError`` naming the problem."""
    try:
        return str(uscc.validate(value.strip().upper()))
    except InvalidChecksum:
        raise ValueError("the check character of the unified social credit code is wrong") from None
    except ValidationError:
        raise ValueError(
            "a unified social credit code is 18 characters: 8 digits, then digits and letters"
        ) from None
