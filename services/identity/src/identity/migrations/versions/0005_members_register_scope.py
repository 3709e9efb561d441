"""Staff who could register members keep that under its own scope, members:register.

Signing a member up at the till became a scope of its own so that cashiers need not hold
members:write, which also shows every member's full phone. Everyone who held members:write
could register members, so they get members:register beside it; without it a manager could not
grant the new scope to their cashiers. Nobody loses a scope.

Revision ID: 0005_members_register_scope
Revises: 0004_outbox_delivery_tracking
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005_members_register_scope"
down_revision: str | None = "0004_outbox_delivery_tracking"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "UPDATE staff SET scopes = array_append(scopes, 'members:register') "
        "WHERE 'members:write' = ANY(scopes) AND NOT ('members:register' = ANY(scopes))"
    )


def downgrade() -> None:
    op.execute("UPDATE staff SET scopes = array_remove(scopes, 'members:register')")
