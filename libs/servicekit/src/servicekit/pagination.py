"""Cursor pagination for every list endpoint: ``?limit=&cursor=``, never offsets.

A page is ``{"items": [...], "next_cursor": "..."}``; the last page carries no
``next_cursor``. Cursors are keyset positions (the last row's sort value and id), encoded as
URL-safe base64 of a small JSON document. They are opaque to clients but not secret: the
query they resume is already scoped to the caller, so an edited cursor can only start the
same listing somewhere else. A cursor that does not decode, or that was made for a different
ordering, is a 400 ``invalid_cursor``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections import namedtuple
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final, Generic, TypeVar, overload

import sqlalchemy as sa
from fastapi import Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from servicekit.errors import BadRequest
from servicekit.text import is_storable

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 200
MAX_CURSOR_LENGTH: Final = 1024

T = TypeVar("T")
SortColumn = sa.ColumnElement[Any] | QueryableAttribute[Any]


class Page(BaseModel, Generic[T]):
    """One page of a listing."""

    items: list[T]
    # Omitted rather than null on the last page (``exclude_if`` needs pydantic >= 2.11).
    next_cursor: str | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Pass as ?cursor= for the next page; absent on the last page.",
    )


class CursorParams:
    """``?limit=`` (1..200, default 50) and ``?cursor=``; use as ``CursorParamsDep``."""

    def __init__(
        self,
        limit: Annotated[
            int, Query(ge=1, le=MAX_LIMIT, description="Page size, 1 to 200.")
        ] = DEFAULT_LIMIT,
        cursor: Annotated[
            str | None, Query(description="The next_cursor of the previous page.")
        ] = None,
    ) -> None:
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
        self.limit = limit
        self.cursor = cursor

    def __repr__(self) -> str:
        return f"CursorParams(limit={self.limit}, cursor={self.cursor!r})"


CursorParamsDep = Annotated[CursorParams, Depends()]


# --- cursor encoding -----------------------------------------------------------------------


def _invalid() -> BadRequest:
    return BadRequest("invalid_cursor", "The cursor is invalid or belongs to another listing.")


def _tag(value: Any) -> list[Any]:
    # Tagged so the position decodes to the type the column compares with.
    if isinstance(value, bool):
        return ["b", value]
    if isinstance(value, int):
        return ["i", value]
    if isinstance(value, str):
        return ["s", value]
    if isinstance(value, uuid.UUID):
        return ["u", str(value)]
    if isinstance(value, datetime):
        return ["t", value.isoformat()]
    if isinstance(value, date):
        return ["d", value.isoformat()]
    if isinstance(value, Decimal):
        return ["n", str(value)]
    if isinstance(value, float):
        return ["f", value]
    if value is None:
        raise ValueError("keyset pagination needs NOT NULL sort columns")
    raise TypeError(f"cannot put a {type(value).__name__} into a cursor")


def _untag(item: Any) -> Any:
    if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str):
        raise _invalid()
    tag, raw = item
    try:
        if tag == "b" and isinstance(raw, bool):
            return raw
        if tag == "i" and isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if tag == "s" and isinstance(raw, str) and is_storable(raw):
            return raw
        if tag == "u" and isinstance(raw, str):
            return uuid.UUID(raw)
        if tag == "t" and isinstance(raw, str):
            return datetime.fromisoformat(raw)
        if tag == "d" and isinstance(raw, str):
            return date.fromisoformat(raw)
        if tag == "n" and isinstance(raw, str):
            return Decimal(raw)
        if tag == "f" and isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
    except (ValueError, InvalidOperation):
        raise _invalid() from None
    raise _invalid()


def _ordering_id(sort_column: SortColumn, id_column: SortColumn, descending: bool) -> str:
    text = f"{sort_column}|{id_column}|{'desc' if descending else 'asc'}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def encode_cursor(values: Sequence[Any], ordering: str) -> str:
    document = {"k": [_tag(value) for value in values], "o": ordering}
    raw = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, ordering: str, arity: int) -> list[Any]:
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise _invalid()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        document = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeError):
        raise _invalid() from None
    if not isinstance(document, dict) or document.get("o") != ordering:
        raise _invalid()
    keys = document.get("k")
    if not isinstance(keys, list) or len(keys) != arity:
        raise _invalid()
    return [_untag(item) for item in keys]


def _python_type(column: SortColumn) -> type | None:
    try:
        python_type: type = column.type.python_type
    except (NotImplementedError, AttributeError):
        return None
    return python_type


def _check_type(value: Any, column: SortColumn) -> None:
    expected = _python_type(column)
    if expected is None:
        return
    if expected is float and isinstance(value, int | Decimal):
        return
    if not isinstance(value, expected):
        raise _invalid()


# --- keyset query --------------------------------------------------------------------------


@overload
async def paginate(
    session: AsyncSession,
    stmt: sa.Select[Any],
    *,
    order_by: tuple[SortColumn, SortColumn],
    params: CursorParams,
    map: Callable[[Any], T],
    descending: bool = False,
) -> Page[T]: ...


@overload
async def paginate(
    session: AsyncSession,
    stmt: sa.Select[Any],
    *,
    order_by: tuple[SortColumn, SortColumn],
    params: CursorParams,
    map: None = None,
    descending: bool = False,
) -> Page[Any]: ...


async def paginate(
    session: AsyncSession,
    stmt: sa.Select[Any],
    *,
    order_by: tuple[SortColumn, SortColumn],
    params: CursorParams,
    map: Callable[[Any], Any] | None = None,
    descending: bool = False,
) -> Page[Any]:
    """Run ``stmt`` as one page of a keyset listing ordered by ``(sort column, id column)``.

    ``stmt`` is the scoped, unordered query; the ordering is imposed here. The sort column
    must be NOT NULL and the id column unique, so ties on the sort value still give every row
    exactly one place. ``map`` turns each selected row into an item: the entity or value when
    the statement selects one thing, else a named tuple of the selected columns.
    """
    sort_column, id_column = order_by
    ordering = _ordering_id(sort_column, id_column, descending)
    query = stmt.add_columns(sort_column.label("_page_sort"), id_column.label("_page_id"))
    if params.cursor is not None:
        sort_value, id_value = decode_cursor(params.cursor, ordering, 2)
        _check_type(sort_value, sort_column)
        _check_type(id_value, id_column)
        position = sa.tuple_(
            sa.bindparam(None, sort_value, type_=sort_column.type),
            sa.bindparam(None, id_value, type_=id_column.type),
        )
        key = sa.tuple_(sort_column, id_column)
        query = query.where(key < position if descending else key > position)
    if descending:
        query = query.order_by(None).order_by(sort_column.desc(), id_column.desc())
    else:
        query = query.order_by(None).order_by(sort_column.asc(), id_column.asc())
    result = await session.execute(query.limit(params.limit + 1))
    columns = list(result.keys())[:-2]
    rows = result.all()
    # The caller sees the rows of its own statement, without the two keyset columns.
    record = namedtuple("Record", columns, rename=True) if len(columns) > 1 else None

    items: list[Any] = []
    for row in rows[: params.limit]:
        selected = row[0] if record is None else record(*row[:-2])
        items.append(map(selected) if map is not None else selected)
    next_cursor = None
    if len(rows) > params.limit:
        last = rows[params.limit - 1]
        next_cursor = encode_cursor([last[-2], last[-1]], ordering)
    return Page[Any](items=items, next_cursor=next_cursor)
