"""The stored-value ledger takes ``import`` entries: an opening balance a member import
carried over from another system.

Revision ID: 0009_stored_value_import
Revises: 0008_rfm_rules_coupon_steps
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_stored_value_import"
down_revision: str | None = "0008_rfm_rules_coupon_steps"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = "('recharge', 'bonus', 'spend', 'refund', 'adjustment', 'import')"
EARLIER_KINDS = "('recharge', 'bonus', 'spend', 'refund', 'adjustment')"


def upgrade() -> None:
    op.drop_constraint("ck_stored_value_ledger_kind", "stored_value_ledger", type_="check")
    op.create_check_constraint(
        "ck_stored_value_ledger_kind", "stored_value_ledger", f"kind IN {KINDS}"
    )


def downgrade() -> None:
    # An imported opening balance cannot be expressed in the narrower ledger: the account
    # would no longer equal its ledger, so downgrading with imports booked is refused by the
    # constraint rather than silently rewriting history.
    op.drop_constraint("ck_stored_value_ledger_kind", "stored_value_ledger", type_="check")
    op.create_check_constraint(
        "ck_stored_value_ledger_kind", "stored_value_ledger", f"kind IN {EARLIER_KINDS}"
    )
