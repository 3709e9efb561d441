"""The unit of work of an HTTP request: one session, one transaction.

On an ordinary route the transaction commits when the endpoint returns and *before* the
response is sent (``scope="function"``), so a commit failure reaches the caller as an error
instead of a success for data that was never saved.

On a route of an ``IdempotentRoute`` router the route owns the transaction instead
(:class:`OwnedUnitOfWork`): ``get_session`` hands out the route's session and only reports how
the endpoint ended, and the route commits the business change together with the stored
response, then sends it (see :mod:`servicekit.idempotency`). Endpoints cannot tell the two
apart.

An error rolls the transaction back, except :class:`FailAfterCommit`: some refusals must keep
what was recorded on the way (a failed login's counter, a burnt verification code, a revoked
token family), or an attacker retries for free. The work is committed, then the problem is
answered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, TypeVar

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction

from servicekit.db import Database
from servicekit.errors import Problem

T = TypeVar("T")

_OWNED_SCOPE_KEY: Final = "countertop.unit_of_work"


class FailAfterCommit(Exception):
    """Commit the unit of work, then answer with ``problem``."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.code)
        self.problem = problem


@dataclass(slots=True)
class OwnedUnitOfWork:
    """A request's transaction opened by its route rather than by ``get_session``.

    ``returned`` is set when the endpoint returned; ``failed`` when an exception left it
    through the unit of work (its work must be rolled back); ``keep`` when that exception was
    a :class:`FailAfterCommit`.
    ``savepoint`` brackets the business work when an idempotency key row precedes it, so a
    refused request can drop its work and still commit its stored answer.
    """

    session: AsyncSession
    returned: bool = False
    failed: bool = False
    keep: bool = False
    savepoint: AsyncSessionTransaction | None = None

    def attach(self, scope: MutableMapping[str, Any]) -> None:
        scope[_OWNED_SCOPE_KEY] = self

    @staticmethod
    def of(scope: MutableMapping[str, Any]) -> OwnedUnitOfWork | None:
        owned = scope.get(_OWNED_SCOPE_KEY)
        return owned if isinstance(owned, OwnedUnitOfWork) else None

    @property
    def work_kept(self) -> bool:
        return self.keep or (self.returned and not self.failed)


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    owned = OwnedUnitOfWork.of(request.scope)
    if owned is not None:
        try:
            yield owned.session
        except FailAfterCommit as failure:
            owned.failed = owned.keep = True
            raise failure.problem from None
        except BaseException:
            owned.failed = True
            raise
        return
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


async def _database_dependency(request: Request) -> Database:
    # A coroutine: FastAPI would run a plain function in a worker thread on every request.
    return get_database(request)


DatabaseDep = Annotated[Database, Depends(_database_dependency)]
