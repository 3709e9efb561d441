"""Signing in, rotating refresh tokens, signing out and resetting passwords.

Failures are answered identically whether or not the phone has an account: same status, same
body, and one argon2 verification either way (against a dummy hash when nobody matched).
Failed attempts are counted per phone, existing or not, and per client address; past a few
free failures each one doubles the wait before the next attempt (:mod:`identity.auth.throttle`).
The counts are committed even though the request fails.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import utcnow
from contracts.ids import new_id
from identity.audit.service import record
from identity.auth import throttle
from identity.auth.models import RefreshToken
from identity.auth.schemas import LoginRequest, PasswordResetRequest, TokenPair
from identity.context import Identity
from identity.deps import store_scope
from identity.merchants.models import Merchant
from identity.staff.models import Staff
from identity.stores.models import Store
from identity.verification import service as codes
from identity.verification.schemas import Purpose
from servicekit.app import TOKEN_AUDIENCE, TOKEN_ISSUER
from servicekit.auth import Principal, Role, principal_claims, sign_token
from servicekit.errors import Problem, TooManyRequests
from servicekit.uow import FailAfterCommit


def invalid_credentials() -> Problem:
    return Problem(
        401, "invalid_credentials", "The phone number, password or merchant code is wrong."
    )


def invalid_refresh_token() -> Problem:
    return Problem(401, "invalid_refresh_token", "The refresh token is invalid or expired.")


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_tokens(
    session: AsyncSession,
    identity: Identity,
    staff: Staff,
    *,
    family_id: uuid.UUID | None = None,
) -> TokenPair:
    """A new access token and a new refresh token (in ``family_id``, or a new family)."""
    now = utcnow()
    settings = identity.settings
    store_ids = await store_scope(session, staff)
    expires_at = now + identity.access_ttl
    principal = Principal(
        subject=staff.id,
        merchant_id=staff.merchant_id,
        role=Role(staff.role),
        scopes=frozenset(staff.scopes),
        store_ids=store_ids,
        region_ids=frozenset(staff.region_ids),
        token_id=str(new_id()),
        expires_at=expires_at,
    )
    claims = principal_claims(
        principal, issuer=TOKEN_ISSUER, audience=TOKEN_AUDIENCE, issued_at=now
    )
    access = sign_token(await identity.keys.signing_key(), claims)
    refresh = secrets.token_urlsafe(32)
    session.add(
        RefreshToken(
            family_id=family_id or new_id(),
            staff_id=staff.id,
            merchant_id=staff.merchant_id,
            token_hash=hash_refresh_token(refresh),
            created_at=now,
            expires_at=now + timedelta(seconds=settings.refresh_token_ttl_seconds),
        )
    )
    return TokenPair(
        access_token=access,
        expires_in=settings.access_token_ttl_seconds,
        refresh_token=refresh,
        refresh_expires_in=settings.refresh_token_ttl_seconds,
    )


async def _find_account(session: AsyncSession, body: LoginRequest) -> Staff | None:
    stmt = sa.select(Staff).join(Merchant, Merchant.id == Staff.merchant_id)
    stmt = stmt.where(Staff.phone == body.phone, Merchant.status == "active")
    if body.merchant_code is not None:
        stmt = stmt.where(Merchant.code == body.merchant_code.strip().upper())
    if body.store_code is not None:
        stmt = stmt.where(
            sa.exists().where(Store.merchant_id == Merchant.id, Store.code == body.store_code)
        )
    found = (await session.scalars(stmt.limit(2))).all()
    # A store code alone may be shared by two merchants; refuse rather than guess.
    return found[0] if len(found) == 1 else None


def throttled(until: datetime, now: datetime) -> TooManyRequests:
    return TooManyRequests(
        (until - now).total_seconds(),
        "Too many failed sign-ins; wait before trying again, sign in with a code sent to the "
        "phone, or ask a manager to unlock the account.",
        code="login_throttled",
    )


async def login(
    session: AsyncSession, identity: Identity, body: LoginRequest, ip: str | None
) -> TokenPair:
    settings = identity.settings
    rule = throttle.rules(settings)
    now = utcnow()
    phone_row = await throttle.lock_phone(session, body.phone)
    if phone_row.last_failure_at is not None and phone_row.last_failure_at < now - timedelta(
        seconds=settings.login_failure_window_seconds
    ):
        phone_row.failures = 0
        phone_row.blocked_until = None
    waits = []
    if ip is not None:
        address_until = await throttle.address_blocked_until(session, ip)
        if address_until is not None and address_until > now:
            waits.append(address_until)
    # A code proves the phone: the phone's delay (which a stranger can cause) does not apply.
    phone_until = phone_row.blocked_until
    if body.password is not None and phone_until is not None and phone_until > now:
        waits.append(phone_until)
    if waits:
        raise throttled(max(waits), now)
    staff = await _find_account(session, body)
    if body.code is not None:
        await codes.consume(session, settings, body.phone, Purpose.LOGIN, body.code)
        verified = staff is not None
    else:
        assert body.password is not None
        verified = await identity.passwords.verify(
            staff.password_hash if staff is not None else None, body.password
        )
    if verified and staff is not None and staff.status == "active":
        phone_row.failures = 0
        phone_row.blocked_until = None
        if body.password is not None and identity.passwords.needs_rehash(staff.password_hash):
            staff.password_hash = await identity.passwords.hash(body.password)
        await record(
            session,
            merchant_id=staff.merchant_id,
            action="login_succeeded",
            staff_id=staff.id,
            ip=ip,
        )
        return await issue_tokens(session, identity, staff)

    # Flush the ORM's view of the phone row before counting on it in SQL.
    await session.flush()
    failures, blocked_until = await throttle.count_failure(
        session, rule[throttle.PHONE], throttle.PHONE, body.phone, now
    )
    if ip is not None:
        await throttle.count_failure(session, rule[throttle.ADDRESS], throttle.ADDRESS, ip, now)
    if staff is not None:
        reason = "wrong_password" if not verified else f"account_{staff.status}"
        await record(
            session,
            merchant_id=staff.merchant_id,
            action="login_failed",
            staff_id=staff.id,
            detail={"reason": reason, "failures": failures},
            ip=ip,
        )
        if blocked_until is not None:
            await record(
                session,
                merchant_id=staff.merchant_id,
                action="login_throttled",
                staff_id=staff.id,
                detail={"until": blocked_until.isoformat(), "failures": failures},
                ip=ip,
            )
    raise FailAfterCommit(invalid_credentials())


async def revoke_family(session: AsyncSession, family_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        sa.update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def revoke_sessions(session: AsyncSession, staff: Staff) -> None:
    """Sign a staff member out everywhere: refresh tokens revoked, access tokens refused by
    identity at once and expiring elsewhere within their lifetime."""
    now = utcnow()
    staff.sessions_valid_after = now
    await session.execute(
        sa.update(RefreshToken)
        .where(RefreshToken.staff_id == staff.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def refresh(
    session: AsyncSession, identity: Identity, token: str, ip: str | None
) -> TokenPair:
    now = utcnow()
    row = await session.scalar(
        sa.select(RefreshToken)
        .where(RefreshToken.token_hash == hash_refresh_token(token))
        .with_for_update()
    )
    if row is None or row.expires_at <= now:
        raise invalid_refresh_token()
    if row.used_at is not None or row.revoked_at is not None:
        if row.used_at is not None and row.revoked_at is None:
            # A rotated-away token came back: it was copied. Nobody can tell the thief from
            # the owner, so the whole family goes.
            await revoke_family(session, row.family_id, now)
            await record(
                session,
                merchant_id=row.merchant_id,
                action="refresh_token_reused",
                staff_id=row.staff_id,
                detail={"family_id": str(row.family_id)},
                ip=ip,
            )
        raise FailAfterCommit(invalid_refresh_token())
    staff = await session.get(Staff, row.staff_id)
    merchant = await session.get(Merchant, row.merchant_id)
    if staff is None or staff.status != "active" or merchant is None or merchant.status != "active":
        await revoke_family(session, row.family_id, now)
        raise FailAfterCommit(invalid_refresh_token())
    row.used_at = now
    return await issue_tokens(session, identity, staff, family_id=row.family_id)


async def logout(session: AsyncSession, token: str, ip: str | None) -> None:
    """Revoke the refresh token's family; an unknown token is already signed out."""
    row = await session.scalar(
        sa.select(RefreshToken).where(RefreshToken.token_hash == hash_refresh_token(token))
    )
    if row is None:
        return
    await revoke_family(session, row.family_id, utcnow())
    await record(
        session, merchant_id=row.merchant_id, action="logout", staff_id=row.staff_id, ip=ip
    )


async def reset_password(
    session: AsyncSession, identity: Identity, body: PasswordResetRequest, ip: str | None
) -> None:
    await codes.consume(session, identity.settings, body.phone, Purpose.PASSWORD_RESET, body.code)
    stmt = sa.select(Staff).where(Staff.phone == body.phone, Staff.status != "deactivated")
    if body.merchant_code is not None:
        stmt = stmt.join(Merchant, Merchant.id == Staff.merchant_id).where(
            Merchant.code == body.merchant_code.strip().upper()
        )
    accounts = (await session.scalars(stmt.with_for_update(of=Staff))).all()
    if not accounts:
        raise FailAfterCommit(codes.invalid_code())
    password_hash = await identity.passwords.hash(body.new_password)
    for staff in accounts:
        staff.password_hash = password_hash
        staff.version += 1
        await revoke_sessions(session, staff)
        await record(
            session,
            merchant_id=staff.merchant_id,
            action="password_reset",
            staff_id=staff.id,
            ip=ip,
        )
    # The owner proved the phone: lift its sign-in delay.
    await throttle.clear_phone(session, body.phone, utcnow())
