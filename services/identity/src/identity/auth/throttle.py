"""Sign-in throttling with growing delays, per phone and per client address.

A fixed lockout lets anyone lock any staff member out with a handful of wrong passwords. Here
a few failures are free, then every further failure doubles the wait before the next attempt
(up to a ceiling), and the count is forgotten a while after the last failure. The phone's
delay applies to password attempts only: the owner can still sign in with a one-time code
sent to the phone, which a stranger cannot do, and a manager can lift the delay. The address
delay slows one client guessing across many phones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from identity.auth.models import LoginThrottle
from identity.config import Settings

PHONE = "phone"
ADDRESS = "address"


@dataclass(frozen=True)
class Rule:
    free_failures: int
    base_delay: float
    max_delay: float
    window: float

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure in a row."""
        beyond = failures - self.free_failures
        if beyond <= 0:
            return 0.0
        return float(min(self.max_delay, self.base_delay * 2 ** min(beyond - 1, 32)))


def rules(settings: Settings) -> dict[str, Rule]:
    return {
        PHONE: Rule(
            settings.login_free_failures,
            settings.login_base_delay_seconds,
            settings.login_max_delay_seconds,
            settings.login_failure_window_seconds,
        ),
        ADDRESS: Rule(
            settings.login_address_free_failures,
            settings.login_base_delay_seconds,
            settings.login_max_delay_seconds,
            settings.login_failure_window_seconds,
        ),
    }


async def lock_phone(session: AsyncSession, phone: str) -> LoginThrottle:
    """The phone's counter, locked until commit: password guesses at one phone queue."""
    await session.execute(
        pg_insert(LoginThrottle).values(kind=PHONE, key=phone, failures=0).on_conflict_do_nothing()
    )
    row = await session.scalar(
        sa.select(LoginThrottle)
        .where(LoginThrottle.kind == PHONE, LoginThrottle.key == phone)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert row is not None
    return row


async def address_blocked_until(session: AsyncSession, address: str) -> datetime | None:
    return await session.scalar(
        sa.select(LoginThrottle.blocked_until).where(
            LoginThrottle.kind == ADDRESS, LoginThrottle.key == address
        )
    )


async def count_failure(
    session: AsyncSession, rule: Rule, kind: str, key: str, now: datetime
) -> tuple[int, datetime | None]:
    """One more failure for (kind, key), counted atomically; returns the count and the time
    the next attempt is allowed (``None``: at once)."""
    table = LoginThrottle.__table__
    stale_before = now - timedelta(seconds=rule.window)
    failures = await session.scalar(
        pg_insert(LoginThrottle)
        .values(kind=kind, key=key, failures=1, last_failure_at=now)
        .on_conflict_do_update(
            index_elements=[table.c.kind, table.c.key],
            set_={
                "failures": sa.case(
                    (
                        sa.or_(
                            table.c.last_failure_at.is_(None),
                            table.c.last_failure_at < stale_before,
                        ),
                        1,
                    ),
                    else_=table.c.failures + 1,
                ),
                "last_failure_at": now,
            },
        )
        .returning(table.c.failures)
    )
    assert failures is not None
    delay = rule.delay(failures)
    until = now + timedelta(seconds=delay) if delay > 0 else None
    await session.execute(
        sa.update(LoginThrottle)
        .where(LoginThrottle.kind == kind, LoginThrottle.key == key)
        .values(blocked_until=until)
        .execution_options(synchronize_session=False)
    )
    return failures, until


async def clear_phone(session: AsyncSession, phone: str, now: datetime) -> datetime | None:
    """Forget the phone's failures; returns the delay that was lifted (``None``: none)."""
    lifted = await session.scalar(
        sa.select(LoginThrottle.blocked_until)
        .where(LoginThrottle.kind == PHONE, LoginThrottle.key == phone)
        .with_for_update()
    )
    await session.execute(
        sa.update(LoginThrottle)
        .where(LoginThrottle.kind == PHONE, LoginThrottle.key == phone)
        .values(failures=0, blocked_until=None)
        .execution_options(synchronize_session=False)
    )
    return lifted if lifted is not None and lifted > now else None
