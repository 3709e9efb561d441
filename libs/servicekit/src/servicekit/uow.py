"""The unit of work of an HTTP request: one session, one transaction.

The transaction commits when the endpoint returns and *before* the response is sent
(``scope="function"``), so a commit failure reaches the caller as an error instead of a
success for data that was never saved.

An error rolls the transaction back, except :class:`FailAfterCommit`: some refusals must keep
what was recorded on the way (a failed login's counter, a burnt verification code, a revoked
token family), or an attacker retries for free. The work is committed, then the problem is
answered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.db import Database
from servicekit.errors import Problem

T = TypeVar("T")


class FailAfterCommit(Exception):
    """Commit the unit of work, then answer with ``problem``."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.code)
        self.problem = problem


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    deferred: Problem | None = None
    async with get_database(request).transaction() as session:
        try:
            yield session
        except FailAfterCommit as failure:
            deferred = failure.problem
    if deferred is not None:
        raise deferred


async def committing(database: Database, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction outside a request's unit of work, with the same rule:
    :class:`FailAfterCommit` commits before raising its problem, anything else rolls back."""
    deferred: Problem | None = None
    async with database.transaction() as session:
        try:
            return await work(session)
        except FailAfterCommit as failure:
            deferred = failure.problem
    assert deferred is not None
    raise deferred


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
DatabaseDep = Annotated[Database, Depends(get_database)]
