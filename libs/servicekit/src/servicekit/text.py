"""Text PostgreSQL can store.

PostgreSQL's ``text`` and ``jsonb`` refuse the NUL character and lone UTF-16 surrogates
(U+D800 to U+DFFF, which JSON's ``\\ud800`` escapes can smuggle in); left unchecked, a client's
string reaches the database and fails there as a 500. Every HTTP input is checked once, before
routing, by the guard :func:`servicekit.errors.install_problem_handlers` installs (422
``invalid_character``); :data:`StorableStr` does the same for models filled from elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, Final

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

INVALID_CHARACTER: Final = "invalid_character"
MESSAGE: Final = "Contains a character that cannot be stored (NUL or a lone surrogate)."

_UNSTORABLE: Final = re.compile("[\x00\ud800-\udfff]")
# A JSON escape that may decode to NUL or a surrogate; a hit is confirmed by decoding.
_SUSPECT_ESCAPE: Final = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


def is_storable(value: str) -> bool:
    return _UNSTORABLE.search(value) is None


def _storable(value: str) -> str:
    if not is_storable(value):
        raise PydanticCustomError(INVALID_CHARACTER, MESSAGE)
    return value


#: A ``str`` field that refuses what PostgreSQL cannot store.
StorableStr = Annotated[str, AfterValidator(_storable)]


def may_hold_unstorable_json(raw: bytes) -> bool:
    """Cheap test of a raw JSON body: false means no string in it can be unstorable."""
    return b"\x00" in raw or _SUSPECT_ESCAPE.search(raw) is not None


def unstorable_fields(value: Any, path: str = "") -> Iterator[str]:
    """The field paths (``lines[0].note``) of decoded JSON whose key or string value cannot
    be stored."""
    if isinstance(value, str):
        if not is_storable(value):
            yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and not is_storable(key):
                yield path or "<key>"
                continue
            yield from unstorable_fields(item, child)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from unstorable_fields(item, f"{path}[{index}]")
