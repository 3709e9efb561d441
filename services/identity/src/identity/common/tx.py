"""Problems that must not roll back what was recorded before them.

A failed login, a wrong verification code and a reused refresh token are answered with an
error, yet the failure counter, the burnt attempt or the revoked token family has to be saved:
otherwise an attacker retries for free. Such routes run their unit of work with
:func:`committing`, and the service raises :class:`FailAfterCommit` to commit first and answer
with the problem afterwards.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.db import Database
from servicekit.errors import Problem

T = TypeVar("T")


class FailAfterCommit(Exception):
    """Commit the unit of work, then answer with ``problem``."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.code)
        self.problem = problem


async def committing(database: Database, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction; a :class:`FailAfterCommit` commits before raising its
    problem, any other exception rolls back."""
    deferred: Problem | None = None
    async with database.transaction() as session:
        try:
            return await work(session)
        except FailAfterCommit as failure:
            deferred = failure.problem
    assert deferred is not None
    raise deferred
