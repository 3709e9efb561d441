"""Tables of the orders service."""

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase

from servicekit.schema import define_platform_tables


class Base(DeclarativeBase):
    metadata = sa.MetaData()


platform_tables = define_platform_tables(Base.metadata)
