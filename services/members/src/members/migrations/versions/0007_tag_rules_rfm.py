"""Tag rules may name RFM segments a member must be in.

Revision ID: 0007_tag_rules_rfm
Revises: 0006_coupons_tags_levels
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0007_tag_rules_rfm"
down_revision: str | None = "0006_coupons_tags_levels"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tag_rules", sa.Column("rfm_segments", pg.ARRAY(sa.Text()), nullable=True))


def downgrade() -> None:
    op.drop_column("tag_rules", "rfm_segments")
