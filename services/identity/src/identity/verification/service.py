"""Issuing and checking one-time codes: 6 digits, valid 5 minutes, burnt after 5 wrong tries,
at most one per minute and ten per day per phone. Only a salted hash is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import utcnow
from identity.config import Settings
from identity.deps import Actor
from identity.handover.models import Handover
from identity.staff.models import Staff
from identity.verification.models import VerificationCode
from identity.verification.schemas import CodeIssued, Purpose
from identity.verification.sender import CodeSender
from servicekit.errors import (
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    TooManyRequests,
    ValidationFailed,
)
from servicekit.uow import FailAfterCommit

#: Advisory-lock namespace serialising code requests per phone, so two concurrent requests
#: cannot both pass the rate limit.
_PHONE_LOCK = 0x1D_0002


def _digest(salt: str, phone: str, purpose: str, code: str) -> str:
    message = f"{phone}|{purpose}|{code}".encode()
    return hmac.new(salt.encode(), message, hashlib.sha256).hexdigest()


def invalid_code() -> ValidationFailed:
    return ValidationFailed(
        [FieldError("code", "invalid_verification_code", "The code is wrong or has expired.")],
        "The verification code is wrong or has expired.",
        code="invalid_verification_code",
    )


async def issue(
    session: AsyncSession,
    settings: Settings,
    sender: CodeSender,
    phone: str,
    purpose: Purpose,
    *,
    deliver: bool = True,
) -> CodeIssued:
    """Create a code for ``phone`` and send it. With ``deliver=False`` the code is recorded
    (it counts against the limits, so the answer and its timing do not reveal whether an
    account exists) but sent nowhere."""
    now = utcnow()
    await session.execute(
        sa.select(sa.func.pg_advisory_xact_lock(_PHONE_LOCK, sa.func.hashtext(phone)))
    )
    window_start = now - timedelta(days=1)
    recent = (
        await session.execute(
            sa.select(
                sa.func.count(),
                sa.func.min(VerificationCode.created_at),
                sa.func.max(VerificationCode.created_at),
            ).where(VerificationCode.phone == phone, VerificationCode.created_at > window_start)
        )
    ).one()
    count, oldest, newest = int(recent[0]), recent[1], recent[2]
    interval = timedelta(seconds=settings.code_min_interval_seconds)
    if newest is not None and now - newest < interval:
        wait = (newest + interval - now).total_seconds()
        raise TooManyRequests(
            wait, "A code was sent to this phone moments ago.", code="code_rate_limited"
        )
    if count >= settings.code_daily_limit and oldest is not None:
        wait = (oldest + timedelta(days=1) - now).total_seconds()
        raise TooManyRequests(
            wait, "Too many codes were sent to this phone today.", code="code_daily_limit"
        )
    # A new code replaces the previous one of the same purpose.
    await session.execute(
        sa.update(VerificationCode)
        .where(
            VerificationCode.phone == phone,
            VerificationCode.purpose == purpose.value,
            VerificationCode.consumed_at.is_(None),
            VerificationCode.burned_at.is_(None),
        )
        .values(burned_at=now)
    )
    code = f"{secrets.randbelow(1_000_000):06d}"
    salt = secrets.token_hex(16)
    session.add(
        VerificationCode(
            phone=phone,
            purpose=purpose.value,
            code_hash=_digest(salt, phone, purpose.value, code),
            salt=salt,
            created_at=now,
            expires_at=now + timedelta(seconds=settings.code_ttl_seconds),
        )
    )
    await session.flush()
    if deliver:
        await sender.send(phone, purpose.value, code)
    return CodeIssued(
        expires_in=settings.code_ttl_seconds, resend_after=settings.code_min_interval_seconds
    )


async def consume(
    session: AsyncSession, settings: Settings, phone: str, purpose: Purpose, code: str
) -> None:
    """Accept ``code`` once, or raise :class:`FailAfterCommit` so the wrong try is counted
    even though the request fails."""
    now = utcnow()
    row = await session.scalar(
        sa.select(VerificationCode)
        .where(
            VerificationCode.phone == phone,
            VerificationCode.purpose == purpose.value,
            VerificationCode.consumed_at.is_(None),
            VerificationCode.burned_at.is_(None),
            VerificationCode.expires_at > now,
        )
        .order_by(VerificationCode.created_at.desc())
        .limit(1)
        .with_for_update()
    )
    if row is None:
        raise FailAfterCommit(invalid_code())
    expected = row.code_hash
    if not hmac.compare_digest(expected, _digest(row.salt, phone, purpose.value, code)):
        row.attempts += 1
        if row.attempts >= settings.code_max_attempts:
            row.burned_at = now
        raise FailAfterCommit(invalid_code())
    row.consumed_at = now


async def request_code(
    session: AsyncSession,
    settings: Settings,
    sender: CodeSender,
    phone: str,
    purpose: Purpose,
    actor: Actor | None,
) -> CodeIssued:
    """``POST /v1/verification-codes``: check what the purpose needs, then issue."""
    deliver = True
    if purpose in (Purpose.LOGIN, Purpose.PASSWORD_RESET):
        # Always "sent", so the answer does not tell whether the phone has an account.
        deliver = await _has_account(session, phone)
    elif purpose is Purpose.PHONE_CHANGE:
        assert actor is not None
        if phone == actor.staff.phone:
            raise ValidationFailed(
                [FieldError("phone", "same_phone", "This is already your phone number.")]
            )
        taken = await session.scalar(
            sa.select(Staff.id).where(Staff.merchant_id == actor.merchant_id, Staff.phone == phone)
        )
        if taken is not None:
            raise Conflict("Another account of this merchant uses this phone.", code="phone_taken")
    elif purpose is Purpose.ACCOUNT_DEACTIVATION:
        assert actor is not None
        if phone != actor.staff.phone:
            raise ValidationFailed(
                [FieldError("phone", "not_your_phone", "Use the phone of your own account.")]
            )
    elif purpose is Purpose.ADMIN_HANDOVER:
        assert actor is not None
        if not actor.super_admin:
            raise Forbidden("Only a super admin hands over.", code="super_admin_required")
        pending = await session.scalar(
            sa.select(Handover.id).where(
                Handover.merchant_id == actor.merchant_id,
                Handover.phone == phone,
                Handover.status == "pending",
            )
        )
        if pending is None:
            raise NotFound("No pending handover to this phone.")
    return await issue(session, settings, sender, phone, purpose, deliver=deliver)


async def _has_account(session: AsyncSession, phone: str) -> bool:
    found = await session.scalar(
        sa.select(Staff.id).where(Staff.phone == phone, Staff.status != "deactivated").limit(1)
    )
    return found is not None
