"""Money as an integer count of a currency's minor unit, with exact integer arithmetic.

``Money`` is what travels on the wire (``{"amount": 1250, "currency": "CNY"}`` is CNY 12.50) and
what the services compute with. Floats never appear: ``amount`` must be a JSON integer (a float, a
numeric string or a boolean is refused with the error type ``expected_integer``), and fees, splits
and formatting are done with integer arithmetic only.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, field_validator
from pydantic_core import PydanticCustomError

# ISO 4217 minor-unit exponents ("E" column) of the currencies a store may price or settle in.
# The exponent is the currency's own, not a provider's display habit: TWD has 2 even though
# cash prices are whole dollars, and JPY, KRW and VND have none.
_EXPONENTS: dict[str, int] = {
    "AED": 2, "ARS": 2, "AUD": 2, "BDT": 2, "BGN": 2, "BHD": 3, "BND": 2, "BRL": 2, "CAD": 2,
    "CHF": 2, "CLP": 0, "CNY": 2, "COP": 2, "CZK": 2, "DKK": 2, "EGP": 2, "EUR": 2, "GBP": 2,
    "HKD": 2, "HUF": 2, "IDR": 2, "ILS": 2, "INR": 2, "IQD": 3, "ISK": 0, "JOD": 3, "JPY": 0,
    "KES": 2, "KHR": 2, "KRW": 0, "KWD": 3, "KZT": 2, "LAK": 2, "LKR": 2, "LYD": 3, "MMK": 2,
    "MNT": 2, "MOP": 2, "MXN": 2, "MYR": 2, "NGN": 2, "NOK": 2, "NPR": 2, "NZD": 2, "OMR": 3,
    "PEN": 2, "PHP": 2, "PKR": 2, "PLN": 2, "PYG": 0, "QAR": 2, "RON": 2, "RUB": 2, "SAR": 2,
    "SEK": 2, "SGD": 2, "THB": 2, "TND": 3, "TRY": 2, "TWD": 2, "UAH": 2, "UGX": 0, "USD": 2,
    "UZS": 2, "VND": 0, "XAF": 0, "XOF": 0, "ZAR": 2,
}  # fmt: skip

CURRENCY_EXPONENTS: Mapping[str, int] = MappingProxyType(_EXPONENTS)
"""Supported ISO 4217 codes and the number of decimal places of their minor unit."""

# The amount must fit a PostgreSQL BIGINT, where every service stores it.
MAX_AMOUNT = 2**63 - 1
MIN_AMOUNT = -MAX_AMOUNT

_BPS_PER_UNIT = 10_000
_DECIMAL_RE = re.compile(r"^(-?)(\d+)(?:\.(\d+))?$")


class CurrencyMismatch(ValueError):
    """Two amounts in different currencies were combined or compared."""

    def __init__(self, left: str, right: str) -> None:
        super().__init__(f"cannot combine {left} with {right}")
        self.left = left
        self.right = right


def minor_unit_exponent(currency: str) -> int:
    """Decimal places of ``currency``'s minor unit (2 for CNY, 0 for JPY, 3 for BHD)."""
    try:
        return _EXPONENTS[currency]
    except KeyError:
        raise ValueError(f"unsupported currency {currency!r}") from None


def _require_integer(value: Any) -> Any:
    # Strict ints alone would say "valid integer"; the API promises a specific, stable error
    # type so that clients sending 12.5 or "1250" learn that amounts are minor units.
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticCustomError(
            "expected_integer",
            "amount must be an integer number of minor units (1250 for 12.50), not {kind}",
            {"kind": type(value).__name__},
        )
    return value


def _require_int_operand(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    return value


class Money(BaseModel):
    """An amount of money: ``amount`` minor units (fen, cents, yen) of ``currency``.

    Addition, subtraction and comparison require the same currency and raise
    :class:`CurrencyMismatch` otherwise; equality across currencies is simply ``False``.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "description": "An amount of money: `amount` is an integer count of the minor unit "
            "(fen, cents, yen) of the ISO 4217 `currency`; 1250 CNY is 12.50 yuan."
        },
    )

    # The bounds come before the validator so that they reach the JSON Schema as the integer's
    # minimum and maximum rather than as unknown keywords.
    amount: Annotated[
        int,
        Strict(),
        Field(ge=MIN_AMOUNT, le=MAX_AMOUNT, description="integer count of the minor unit"),
        BeforeValidator(_require_integer),
    ]
    currency: Annotated[
        str,
        Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, upper case", examples=["CNY"]),
    ]

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        if value not in _EXPONENTS:
            raise PydanticCustomError(
                "unknown_currency", "unsupported currency {currency}", {"currency": value}
            )
        return value

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def of(cls, amount: int, currency: str) -> Money:
        """``Money.of(1250, "CNY")`` is CNY 12.50."""
        if type(amount) is int and type(currency) is str:
            # Money is immutable: the same amount is the same value, validated once. Exact
            # types only, so that 1.0 or True (equal to 1 as keys) are still refused.
            return _validated(cls, amount, currency)
        return cls(amount=amount, currency=currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(amount=0, currency=currency)

    @classmethod
    def parse(cls, text: str, currency: str) -> Money:
        """Read a decimal in major units ("12.50" CNY -> 1250 fen), exactly.

        For providers that report amounts as decimal strings. At most as many decimals as the
        currency has; anything that would need rounding is refused rather than rounded.
        """
        exponent = minor_unit_exponent(currency)
        match = _DECIMAL_RE.match(text.strip())
        if match is None:
            raise ValueError(f"not a decimal amount: {text!r}")
        sign, whole, fraction = match.group(1), match.group(2), match.group(3) or ""
        if len(fraction) > exponent:
            raise ValueError(f"{text!r} has more than {exponent} decimals for {currency}")
        minor = int(whole) * 10**exponent + int(fraction.ljust(exponent, "0") or "0")
        return cls(amount=-minor if sign else minor, currency=currency)

    @classmethod
    def total(cls, items: Iterable[Money], currency: str) -> Money:
        """The sum of ``items``, all in ``currency``; zero when there are none."""
        result = cls.zero(currency)
        for item in items:
            result = result + item
        return result

    # -- inspection -----------------------------------------------------------------------------

    @property
    def exponent(self) -> int:
        return _EXPONENTS[self.currency]

    @property
    def is_zero(self) -> bool:
        return self.amount == 0

    @property
    def is_positive(self) -> bool:
        return self.amount > 0

    @property
    def is_negative(self) -> bool:
        return self.amount < 0

    def to_decimal_str(self) -> str:
        """The amount in major units with the currency's decimals: "12.50", "-0.05", "1250"."""
        digits = str(abs(self.amount))
        sign = "-" if self.amount < 0 else ""
        if self.exponent == 0:
            return sign + digits
        digits = digits.rjust(self.exponent + 1, "0")
        return f"{sign}{digits[: -self.exponent]}.{digits[-self.exponent :]}"

    def __str__(self) -> str:
        return f"{self.currency} {self.to_decimal_str()}"

    def __repr__(self) -> str:
        return f"Money(amount={self.amount}, currency={self.currency!r})"

    # -- arithmetic -----------------------------------------------------------------------------

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(self.currency, other.currency)

    def _with(self, amount: int) -> Money:
        return Money(amount=amount, currency=self.currency)

    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self._with(self.amount + other.amount)

    def __sub__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self._with(self.amount - other.amount)

    def __mul__(self, factor: int) -> Money:
        if isinstance(factor, bool) or not isinstance(factor, int):
            return NotImplemented
        return self._with(self.amount * factor)

    def __rmul__(self, factor: int) -> Money:
        return self.__mul__(factor)

    def __neg__(self) -> Money:
        return self._with(-self.amount)

    def __abs__(self) -> Money:
        return self._with(abs(self.amount))

    def __lt__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount >= other.amount

    def allocate(self, ratios: Sequence[int]) -> list[Money]:
        """Split into parts proportional to ``ratios`` whose sum is exactly this amount.

        Largest remainder: each part gets the floor of its share, and the minor units left
        over go one each to the parts with the largest remainders, earlier parts first on a
        tie. A negative amount (a refund) is split as its positive counterpart and negated, so
        refunding a split charge gives back exactly what each part received.
        """
        weights = [_require_int_operand(r, "a ratio") for r in ratios]
        if not weights:
            raise ValueError("allocate needs at least one ratio")
        if any(r < 0 for r in weights):
            raise ValueError("ratios must not be negative")
        total = sum(weights)
        if total == 0:
            raise ValueError("ratios must not all be zero")
        magnitude = abs(self.amount)
        shares = [magnitude * r // total for r in weights]
        remainders = [magnitude * r % total for r in weights]
        leftover = magnitude - sum(shares)
        by_remainder = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
        for i in by_remainder[:leftover]:
            shares[i] += 1
        sign = -1 if self.amount < 0 else 1
        return [self._with(sign * share) for share in shares]

    def split(self, parts: int) -> list[Money]:
        """Split into ``parts`` near-equal amounts (the first ones get the extra minor units)."""
        count = _require_int_operand(parts, "parts")
        if count < 1:
            raise ValueError("parts must be at least 1")
        return self.allocate([1] * count)

    def percent_bps(self, bps: int) -> Money:
        """``bps`` basis points of this amount (a fee rate), rounded half-up to the minor unit.

        38 bps of CNY 12.50 is 4.75 fen, which gives CNY 0.05. Rounding is symmetric about zero
        (half away from zero): the fee on a refund is exactly the negated fee on the same
        charge, so a full refund reverses the whole fee. A negative rate is refused.
        """
        rate = _require_int_operand(bps, "bps")
        if rate < 0:
            raise ValueError("bps must not be negative")
        quotient, remainder = divmod(abs(self.amount) * rate, _BPS_PER_UNIT)
        if 2 * remainder >= _BPS_PER_UNIT:
            quotient += 1
        return self._with(-quotient if self.amount < 0 else quotient)


@functools.lru_cache(maxsize=8192)
def _validated(cls: type[Money], amount: int, currency: str) -> Money:
    # Building a Money runs its validators in Python (integer check, known currency): most of
    # the cost of the many amounts an order's events carry, which repeat a few prices.
    return cls(amount=amount, currency=currency)
