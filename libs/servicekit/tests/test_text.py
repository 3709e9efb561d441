"""Text PostgreSQL cannot store is refused with 422 ``invalid_character`` before any route."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from pydantic import BaseModel, ValidationError

from servicekit.errors import install_problem_handlers
from servicekit.text import StorableStr, may_hold_unstorable_json, unstorable_fields


class Note(BaseModel):
    text: str
    tags: list[str] = []


def make_app(seen: list[Any]) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/v1/notes/{note_id}")
    async def create(note_id: str, note: Note, cursor: str | None = None) -> dict[str, Any]:
        seen.append((note_id, note, cursor))
        return {"id": note_id, "text": note.text, "cursor": cursor}

    return app


@pytest_asyncio.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, list[Any]]]:
    seen: list[Any] = []
    transport = httpx.ASGITransport(app=make_app(seen))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http, seen


JSON = {"content-type": "application/json"}


def assert_invalid_character(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "invalid_character"
    assert [e["field"] for e in problem["errors"]] == [field]
    assert problem["errors"][0]["code"] == "invalid_character"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"text": "soup\\u0000"}', "text"),
        (b'{"text": "ok", "tags": ["a", "\\ud800"]}', "tags[1]"),
        (b'{"text": "\\uDFFF"}', "text"),
        (b'{"text": "ok", "x\\u0000": "y"}', "<key>"),
    ],
)
async def test_unstorable_body_text(
    client: tuple[httpx.AsyncClient, list[Any]], raw: bytes, field: str
) -> None:
    http, seen = client
    response = await http.post("/v1/notes/n1", content=raw, headers=JSON)
    assert_invalid_character(response, field)
    assert seen == []


async def test_unstorable_path_and_query(client: tuple[httpx.AsyncClient, list[Any]]) -> None:
    http, seen = client
    body = json.dumps({"text": "ok"})
    assert_invalid_character(await http.post("/v1/notes/a%00b", content=body, headers=JSON), "path")
    assert_invalid_character(
        await http.post("/v1/notes/n1?cursor=%00", content=body, headers=JSON), "cursor"
    )
    assert seen == []


async def test_storable_text_passes_untouched(client: tuple[httpx.AsyncClient, list[Any]]) -> None:
    http, seen = client
    # An escaped backslash before "u0000", a surrogate pair (an emoji) and plain text.
    raw = b'{"text": "C:\\\\u0000 \\ud83c\\udf5c \xe7\x89\x9b\xe8\x82\x89\xe9\x9d\xa2"}'
    response = await http.post("/v1/notes/n1?cursor=abc%20d", content=raw, headers=JSON)
    assert response.status_code == 200, response.text
    assert response.json()["text"] == "C:\\u0000 \U0001f35c 牛肉面"
    assert response.json()["cursor"] == "abc d"
    assert len(seen) == 1


async def test_a_body_in_several_chunks_reaches_the_route(
    client: tuple[httpx.AsyncClient, list[Any]],
) -> None:
    http, _ = client

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"text": "noo'
        yield b'dles"}'

    response = await http.post("/v1/notes/n1", content=chunks(), headers=JSON)
    assert response.status_code == 200, response.text
    assert response.json()["text"] == "noodles"


async def test_malformed_json_is_left_to_the_route(
    client: tuple[httpx.AsyncClient, list[Any]],
) -> None:
    http, _ = client
    response = await http.post("/v1/notes/n1", content=b'{"text": "\\u0000', headers=JSON)
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_json"


def test_helpers() -> None:
    assert not may_hold_unstorable_json(b'{"a": "plain"}')
    assert may_hold_unstorable_json(b'{"a": "\\u0000"}')
    assert list(unstorable_fields({"a": [{"b": "x\x00"}]})) == ["a[0].b"]


def test_storable_str() -> None:
    class Model(BaseModel):
        name: StorableStr

    assert Model(name="tea").name == "tea"
    for bad in ("a\x00", "\ud800"):
        with pytest.raises(ValidationError) as caught:
            Model(name=bad)
        assert caught.value.errors()[0]["type"] == "invalid_character"
