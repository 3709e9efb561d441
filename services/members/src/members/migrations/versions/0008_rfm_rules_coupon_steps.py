"""Tag rules may name RFM segments a member must be in; a coupon remembers the kind of the
last redemption step orders announced, so the batch verification can compare its state with
it.

Revision ID: 0008_rfm_rules_coupon_steps
Revises: 0007_members_stored_value
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0008_rfm_rules_coupon_steps"
down_revision: str | None = "0007_members_stored_value"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tag_rules", sa.Column("rfm_segments", pg.ARRAY(sa.Text()), nullable=True))
    # Coupons stepped before this revision keep NULL: their last step is not known.
    op.add_column("coupons", sa.Column("last_step", sa.Text(), nullable=True))
    op.create_check_constraint(
        "ck_coupons_last_step",
        "coupons",
        "last_step IN ('reserved', 'redeemed', 'released')",
    )


def downgrade() -> None:
    op.drop_constraint("ck_coupons_last_step", "coupons", type_="check")
    op.drop_column("coupons", "last_step")
    op.drop_column("tag_rules", "rfm_segments")
