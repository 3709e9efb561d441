"""The OpenAPI document lists the problems a route really answers, not only its own.

Routes document what their domain refuses (``responses=problem_responses(...)``); what the
platform refuses on every route is added here once, from what the route depends on:

* a caller is authenticated: 401; a permission is required: 403;
* the path names a resource: 404;
* anything is validated (path, query, headers, body), including the text PostgreSQL cannot
  store: 422 as ``application/problem+json`` (FastAPI's default 422 describes another body);
  a body that is not JSON: 400;
* an ``Idempotency-Key`` is honoured: 400 for a missing or malformed key, 409 while the first
  request still runs, 422 for a key reused with another body;
* a cursor is taken: 400 for a cursor that is not one of ours.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from servicekit.auth import get_principal
from servicekit.errors import ProblemModel, problem_responses
from servicekit.idempotency import Idempotency


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def _platform_statuses(route: APIRoute) -> set[int]:
    dependants = list(_dependants(route.dependant))
    calls = [d.call for d in dependants if d.call is not None]
    statuses: set[int] = set()
    if get_principal in calls:
        statuses.add(401)
    if any(getattr(call, "__qualname__", "").startswith("require.") for call in calls):
        statuses.add(403)
    params = [
        p
        for d in dependants
        for p in (*d.path_params, *d.query_params, *d.header_params, *d.cookie_params)
    ]
    if route.dependant.path_params:
        statuses.add(404)
    if params or route.body_field is not None:
        statuses.add(422)
    if route.body_field is not None:
        statuses.add(400)  # a body that is not JSON at all
    if any(isinstance(call, Idempotency) for call in calls):
        statuses.update({400, 409, 422})
    if any(p.alias == "cursor" for p in params):
        statuses.add(400)
    return statuses


def _api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        # An included router stays a router of its own (FastAPI >= 0.16x keeps the tree).
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


def document_problems(app: FastAPI) -> None:
    """Add the platform's problems to every route's documented responses."""
    for route in _api_routes(app.routes):
        if not route.include_in_schema:
            continue
        documented: dict[int | str, Any] = dict(route.responses)
        for status, entry in problem_responses(*sorted(_platform_statuses(route))).items():
            if status not in documented and str(status) not in documented:
                # The route's response models were read when it was built: these entries
                # point at the problem schema by reference instead.
                documented[status] = {k: v for k, v in entry.items() if k != "model"}
        route.responses = documented
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        if "ProblemModel" not in schemas:
            schemas["ProblemModel"] = ProblemModel.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
