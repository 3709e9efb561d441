"""Tables of the identity service: the declarative base, the platform tables, and column
helpers the domain models share. Each domain keeps its own tables in ``<domain>/models.py``;
:mod:`identity.tables` imports them all."""

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from contracts.envelope import utcnow
from contracts.ids import new_id
from servicekit.schema import define_platform_tables


class Base(DeclarativeBase):
    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            # PostgreSQL's own naming, which the platform tables (created unnamed) also carry.
            "uq": "%(table_name)s_%(column_0_N_name)s_key",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


platform_tables = define_platform_tables(Base.metadata)


class IdMixin:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)


class TimestampsMixin:
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), default=utcnow, server_default=sa.func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), default=utcnow, server_default=sa.func.now(), onupdate=utcnow
    )


class VersionedMixin:
    """An integer ``version`` bumped by every update (optimistic concurrency)."""

    version: Mapped[int] = mapped_column(default=1)
