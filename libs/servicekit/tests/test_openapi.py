"""The OpenAPI document lists the platform's problems on every route."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query
from pydantic import BaseModel

from servicekit.auth import Principal, PrincipalDep, require
from servicekit.errors import install_problem_handlers
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.openapi import document_problems

PROBLEM = "application/problem+json"


class ThingIn(BaseModel):
    name: str


def build() -> dict[str, Any]:
    app = FastAPI()
    install_problem_handlers(app)
    router = APIRouter(route_class=IdempotentRoute)

    @router.post("/v1/things", status_code=201, dependencies=[Depends(Idempotency(required=True))])
    async def create(
        body: ThingIn, principal: Annotated[Principal, Depends(require("things:write"))]
    ) -> dict[str, str]:
        return {"name": body.name}

    @router.get("/v1/things/{thing_id}")
    async def read(thing_id: uuid.UUID, principal: PrincipalDep) -> dict[str, str]:
        return {}

    @router.get("/v1/things")
    async def listing(cursor: Annotated[str | None, Query()] = None) -> list[str]:
        return []

    app.include_router(router)
    document_problems(app)
    schema: dict[str, Any] = app.openapi()
    return schema


def test_every_platform_problem_is_documented_as_problem_json() -> None:
    paths = build()["paths"]
    created = paths["/v1/things"]["post"]["responses"]
    assert {"400", "401", "403", "409", "422"} <= set(created)
    read = paths["/v1/things/{thing_id}"]["get"]["responses"]
    assert {"401", "404", "422"} <= set(read)
    assert "403" not in read
    listed = paths["/v1/things"]["get"]["responses"]
    assert {"400", "422"} <= set(listed)
    assert "401" not in listed
    for responses in (created, read, listed):
        assert PROBLEM in responses["422"]["content"]
        ref = responses["422"]["content"][PROBLEM]["schema"]["$ref"]
        assert ref == "#/components/schemas/ProblemModel"


def test_the_problem_schema_is_a_component() -> None:
    assert "ProblemModel" in build()["components"]["schemas"]
