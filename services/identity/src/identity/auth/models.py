"""Refresh tokens, login throttling and signing keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.orm import Mapped, mapped_column

from contracts.envelope import utcnow
from identity.models import Base, IdMixin


class RefreshToken(IdMixin, Base):
    """One refresh token (only its SHA-256 is stored). Rotation chains tokens into a family;
    presenting a token already used revokes the whole family."""

    __tablename__ = "refresh_tokens"

    family_id: Mapped[uuid.UUID] = mapped_column(index=True)
    staff_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("staff.id"), index=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("merchants.id"))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), default=utcnow, server_default=sa.func.now()
    )
    expires_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class LoginThrottle(Base):
    """Failed sign-ins of one phone (``kind`` ``phone``, counted whether or not an account has
    it, so a delay looks the same for both) or of one client address (``kind`` ``address``).
    ``blocked_until`` is when the next attempt is allowed; the count is forgotten a while
    after the last failure."""

    __tablename__ = "login_throttles"

    kind: Mapped[str] = mapped_column(sa.String(8), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    blocked_until: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    last_failure_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class SigningKey(Base):
    """A token signing key. ``active``: signs new tokens (exactly one); ``retired``: still
    published in the JWKS until every token it signed has expired."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    algorithm: Mapped[str] = mapped_column(sa.String(16))
    private_key: Mapped[str] = mapped_column(sa.Text)
    encryption: Mapped[str] = mapped_column(sa.String(16))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(pg.JSONB)
    status: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), default=utcnow, server_default=sa.func.now()
    )
    retired_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
