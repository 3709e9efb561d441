"""Checks every service's test suite runs against its own app: input PostgreSQL cannot store
is refused with 422 ``invalid_character``, never a 500."""

from __future__ import annotations

from typing import Any

import httpx


def assert_invalid_character(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "invalid_character", problem
    assert field in [error["field"] for error in problem["errors"]], problem


async def assert_unstorable_refused(
    client: httpx.AsyncClient,
    *,
    post: str,
    body: dict[str, Any],
    field: str,
    get_by_path: str,
    listing: str,
    headers: dict[str, str] | None = None,
) -> None:
    """A NUL and a lone surrogate in ``body[field]`` posted to ``post``; a NUL in the path
    ``get_by_path`` (``{}`` marks where) and in the ``cursor`` of ``listing``."""
    sent = dict(headers or {})
    for bad in ("\\u0000", "\\ud800"):
        raw = httpx.Request("POST", "http://x", json={**body, field: "@@"}).content
        raw = raw.replace(b"@@", bad.encode())
        response = await client.post(
            post, content=raw, headers={**sent, "content-type": "application/json"}
        )
        assert_invalid_character(response, field)
    response = await client.get(get_by_path.format("a%00b"), headers=sent)
    assert_invalid_character(response, "path")
    response = await client.get(listing, params={"cursor": "x\x00"}, headers=sent)
    assert_invalid_character(response, "cursor")
