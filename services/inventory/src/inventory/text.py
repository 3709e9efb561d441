"""Text fields as PostgreSQL can store them: a NUL character is refused up front (422
``unstorable_character``) instead of failing in the database."""

from __future__ import annotations

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError


def _storable(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError(
            "unstorable_character", "text must not contain the NUL character (U+0000)"
        )
    return value


#: Put after the length ``Field`` of an ``Annotated[str, ...]``.
Storable = AfterValidator(_storable)
