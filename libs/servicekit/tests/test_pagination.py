"""Keyset pagination over a real table with many ties on the sort key."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import pytest_asyncio
import sqlalchemy as sa
from fastapi import FastAPI, Request
from pydantic import BaseModel
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.orm import DeclarativeBase

from servicekit.db import Database
from servicekit.errors import BadRequest, Problem, install_problem_handlers
from servicekit.pagination import (
    CursorParams,
    CursorParamsDep,
    Page,
    decode_cursor,
    encode_cursor,
    paginate,
)
from servicekit.testing.plugin import CreateDatabase

MERCHANT = uuid.uuid4()
OTHER = uuid.uuid4()
BASE_TIME = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
ROWS = 47

_metadata = sa.MetaData()
items = sa.Table(
    "items",
    _metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("merchant_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("rank", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


class _Base(DeclarativeBase):
    metadata = _metadata


class Item(_Base):
    __table__ = items


class ItemOut(BaseModel):
    id: uuid.UUID
    name: str
    rank: int


def item_out(row: Any) -> ItemOut:
    return ItemOut(id=row.id, name=row.name, rank=row.rank)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def database(create_database: CreateDatabase) -> AsyncIterator[Database]:
    database = Database(await create_database("pagination"), pool_size=2)
    async with database.engine.begin() as conn:
        await conn.run_sync(_metadata.create_all)
        rows = [
            {
                "id": uuid.uuid4(),
                "merchant_id": MERCHANT,
                "name": f"item-{i}",
                # Few distinct values: most rows tie with others on the sort key.
                "rank": i % 4,
                "created_at": BASE_TIME + timedelta(minutes=i // 5),
            }
            for i in range(ROWS)
        ]
        rows += [
            {
                "id": uuid.uuid4(),
                "merchant_id": OTHER,
                "name": f"foreign-{i}",
                "rank": 0,
                "created_at": BASE_TIME,
            }
            for i in range(5)
        ]
        await conn.execute(items.insert(), rows)
    yield database
    await database.dispose()


def make_app(database: Database) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.state.database = database

    def base_query() -> sa.Select[Any]:
        return sa.select(items.c.id, items.c.name, items.c.rank).where(
            items.c.merchant_id == MERCHANT
        )

    @app.get("/v1/items")
    async def by_rank(request: Request, params: CursorParamsDep) -> Page[ItemOut]:
        async with database.transaction() as session:
            return await paginate(
                session,
                base_query(),
                order_by=(items.c.rank, items.c.id),
                params=params,
                map=item_out,
            )

    @app.get("/v1/items/newest", response_model=Page[ItemOut])
    async def newest(params: CursorParamsDep) -> Any:
        async with database.transaction() as session:
            return await paginate(
                session,
                base_query(),
                order_by=(items.c.created_at, items.c.id),
                params=params,
                map=item_out,
                descending=True,
            )

    return app


@pytest_asyncio.fixture(loop_scope="session")
async def client(database: Database) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(database))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def expected_ids(database: Database, *order: sa.ColumnElement[Any]) -> list[str]:
    async with database.transaction() as session:
        result = await session.execute(
            sa.select(items.c.id).where(items.c.merchant_id == MERCHANT).order_by(*order)
        )
        return [str(i) for i in result.scalars()]


async def walk(client: httpx.AsyncClient, path: str, limit: int) -> list[dict[str, Any]]:
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get(path, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        cursor = page.get("next_cursor")
        if cursor is None:
            return pages
        assert len(pages) <= ROWS, "pagination does not terminate"


@pytest.mark.parametrize("limit", [1, 5, 7, 47, 200])
async def test_walks_every_row_exactly_once_despite_ties(
    client: httpx.AsyncClient, database: Database, limit: int
) -> None:
    pages = await walk(client, "/v1/items", limit)
    seen = [item["id"] for page in pages for item in page["items"]]
    assert seen == await expected_ids(database, items.c.rank, items.c.id)
    assert all(len(page["items"]) == limit for page in pages[:-1])
    assert 1 <= len(pages[-1]["items"]) <= limit
    assert "next_cursor" not in pages[-1]
    assert all("next_cursor" in page for page in pages[:-1])
    assert len(pages) == -(-ROWS // limit)


async def test_descending_by_time(client: httpx.AsyncClient, database: Database) -> None:
    pages = await walk(client, "/v1/items/newest", 6)
    seen = [item["id"] for page in pages for item in page["items"]]
    assert seen == await expected_ids(database, items.c.created_at.desc(), items.c.id.desc())


async def test_exact_multiple_has_no_empty_last_page(database: Database) -> None:
    async with database.transaction() as session:
        query = sa.select(items.c.id).where(items.c.merchant_id == OTHER)
        first = await paginate(
            session, query, order_by=(items.c.rank, items.c.id), params=CursorParams(limit=5)
        )
        assert len(first.items) == 5
        assert first.next_cursor is None
        half = await paginate(
            session, query, order_by=(items.c.rank, items.c.id), params=CursorParams(limit=3)
        )
        assert half.next_cursor is not None
        rest = await paginate(
            session,
            query,
            order_by=(items.c.rank, items.c.id),
            params=CursorParams(limit=3, cursor=half.next_cursor),
        )
        assert len(rest.items) == 2
        assert rest.next_cursor is None
        assert set(half.items).isdisjoint(rest.items)


async def test_selecting_several_columns_gives_tuples(database: Database) -> None:
    async with database.transaction() as session:
        page = await paginate(
            session,
            sa.select(items.c.name, items.c.rank).where(items.c.merchant_id == OTHER),
            order_by=(items.c.name, items.c.id),
            params=CursorParams(limit=2),
        )
    assert page.items == [("foreign-0", 0), ("foreign-1", 0)]


async def test_mapped_entities(database: Database) -> None:
    names: list[str] = []
    cursor: str | None = None
    async with database.transaction() as session:
        while True:
            page = await paginate(
                session,
                sa.select(Item).where(Item.merchant_id == MERCHANT),
                order_by=(Item.created_at, Item.id),
                params=CursorParams(limit=10, cursor=cursor),
                map=lambda item: item.name,
            )
            names += page.items
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    assert sorted(names) == sorted(f"item-{i}" for i in range(ROWS))
    assert len(names) == ROWS


def b64json(document: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "not-base64-!!",
        "bm90IGpzb24",  # "not json"
        b64json([1, 2]),
        b64json({"k": [["i", 1]], "o": "x"}),
        b64json({"k": [["i", 1], ["u", "not-a-uuid"]]}),
        "A" * 2000,
    ],
)
async def test_bad_cursor_is_400(client: httpx.AsyncClient, cursor: str) -> None:
    response = await client.get("/v1/items", params={"cursor": cursor})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_cursor"


async def test_tampered_cursor_is_400(client: httpx.AsyncClient) -> None:
    first = (await client.get("/v1/items", params={"limit": 3})).json()
    raw = base64.urlsafe_b64decode(first["next_cursor"] + "==")
    document = json.loads(raw)
    document["k"][0] = ["s", "three"]  # a string where the integer rank belongs
    response = await client.get("/v1/items", params={"cursor": b64json(document)})
    assert response.status_code == 400
    document["k"] = document["k"][:1]
    response = await client.get("/v1/items", params={"cursor": b64json(document)})
    assert response.status_code == 400


async def test_cursor_of_another_ordering_is_400(client: httpx.AsyncClient) -> None:
    page = (await client.get("/v1/items/newest", params={"limit": 2})).json()
    response = await client.get("/v1/items", params={"cursor": page["next_cursor"]})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_cursor"


@pytest.mark.parametrize(
    ("query", "code"),
    [("limit=0", "out_of_range"), ("limit=201", "out_of_range"), ("limit=2.5", "expected_integer")],
)
async def test_limit_bounds(client: httpx.AsyncClient, query: str, code: str) -> None:
    response = await client.get(f"/v1/items?{query}")
    assert response.status_code == 422
    assert response.json()["errors"][0] == {
        "field": "limit",
        "code": code,
        "message": response.json()["errors"][0]["message"],
    }


async def test_default_limit(client: httpx.AsyncClient) -> None:
    page = (await client.get("/v1/items")).json()
    assert len(page["items"]) == ROWS  # under the default of 50
    assert "next_cursor" not in page


def test_cursor_values_round_trip() -> None:
    values = [
        7,
        True,
        "text",
        uuid.uuid4(),
        datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        date(2025, 1, 2),
        Decimal("12.50"),
        1.25,
    ]
    assert decode_cursor(encode_cursor(values, "o"), "o", len(values)) == values
    with pytest.raises(ValueError, match="NOT NULL"):
        encode_cursor([None], "o")
    with pytest.raises(Problem):
        decode_cursor(encode_cursor([1], "o"), "other", 1)


def test_cursor_params_bounds() -> None:
    assert CursorParams().limit == 50
    with pytest.raises(ValueError, match="limit"):
        CursorParams(limit=0)
    with pytest.raises(ValueError, match="limit"):
        CursorParams(limit=201)


def test_page_schema() -> None:
    schema = make_app(Database("postgresql+asyncpg://x@127.0.0.1:1/x")).openapi()
    page_schema = schema["components"]["schemas"]["Page_ItemOut_"]
    assert page_schema["required"] == ["items"]
    assert "next_cursor" in page_schema["properties"]


@pytest.mark.parametrize("text", ["a\x00b", "\ud800"])
def test_a_cursor_hiding_unstorable_text_is_invalid(text: str) -> None:
    cursor = b64json({"k": [["s", text]], "o": "x"})
    with pytest.raises(BadRequest) as caught:
        decode_cursor(cursor, "x", 1)
    assert caught.value.code == "invalid_cursor"


async def test_a_nul_in_the_cursor_parameter_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/items", params={"cursor": "abc\x00"})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_character"
    assert response.json()["errors"][0]["field"] == "cursor"
