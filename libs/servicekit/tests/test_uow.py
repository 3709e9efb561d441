"""One request, one transaction, committed before the response leaves."""

from __future__ import annotations

import httpx
import sqlalchemy as sa
from fastapi import APIRouter, FastAPI

from servicekit.db import Database
from servicekit.errors import Conflict, install_problem_handlers
from servicekit.uow import FailAfterCommit, SessionDep

DDL = [
    "CREATE TABLE parent (id int PRIMARY KEY)",
    "CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL"
    " REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)",
]


async def make_app(create_database) -> tuple[FastAPI, Database]:
    database = Database(await create_database("uow"), pool_size=2)
    async with database.engine.begin() as conn:
        for statement in DDL:
            await conn.exec_driver_sql(statement)
    router = APIRouter()

    @router.post("/children/{child_id}")
    async def add_child(child_id: int, parent_id: int, session: SessionDep) -> dict[str, int]:
        await session.execute(
            sa.text("INSERT INTO child (id, parent_id) VALUES (:c, :p)"),
            {"c": child_id, "p": parent_id},
        )
        return {"id": child_id}

    @router.post("/parents/{parent_id}")
    async def add_parent(parent_id: int, session: SessionDep) -> dict[str, int]:
        await session.execute(sa.text("INSERT INTO parent (id) VALUES (:p)"), {"p": parent_id})
        if parent_id < 0:
            raise ValueError("rejected after the insert")
        if parent_id >= 1000:
            raise FailAfterCommit(Conflict("recorded, yet refused", code="refused_but_kept"))
        return {"id": parent_id}

    app = FastAPI()
    install_problem_handlers(app)
    app.state.database = database
    app.include_router(router)
    return app, database


async def count(database: Database, table: str) -> int:
    async with database.engine.connect() as conn:
        return int((await conn.exec_driver_sql(f"SELECT count(*) FROM {table}")).scalar_one())


async def test_commit_failure_is_not_reported_as_success(create_database) -> None:
    app, database = await make_app(create_database)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t"
    ) as client:
        # The foreign key is checked only at commit: the endpoint itself returns normally.
        response = await client.post("/children/1", params={"parent_id": 42})
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/problem+json"
        assert await count(database, "child") == 0

        assert (await client.post("/parents/42")).status_code == 200
        assert (await client.post("/children/1", params={"parent_id": 42})).status_code == 200
        assert await count(database, "child") == 1
    await database.dispose()


async def test_error_in_endpoint_rolls_back(create_database) -> None:
    app, database = await make_app(create_database)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t"
    ) as client:
        response = await client.post("/parents/-1")
        assert response.status_code == 500
        assert "Traceback" not in response.text
        assert await count(database, "parent") == 0
    await database.dispose()


async def test_fail_after_commit_keeps_the_work_and_answers_the_problem(create_database) -> None:
    app, database = await make_app(create_database)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t"
    ) as client:
        response = await client.post("/parents/1000")
        assert response.status_code == 409
        assert response.json()["code"] == "refused_but_kept"
        assert await count(database, "parent") == 1
    await database.dispose()
