"""Coupons and their templates, member levels and lifetime figures, tag sources and tag rules,
birthday benefits. Existing members' tags become their manual tags.

Revision ID: 0006_coupons_tags_levels
Revises: 0005_member_insight
Create Date: 2026-12-07
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0006_coupons_tags_levels"
down_revision: str | None = "0005_member_insight"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now() -> sa.Column[datetime]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def _updated() -> sa.Column[datetime]:
    return sa.Column(
        "updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def _uuids(name: str, nullable: bool) -> sa.Column[list[str]]:
    return sa.Column(name, pg.ARRAY(sa.UUID()), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "member_levels",
        sa.Column("id", sa.UUID(), primary_key=True),
        sa.Column("merchant_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("basis", sa.Text(), nullable=False),
        sa.Column("threshold", sa.BigInteger(), nullable=False),
        sa.Column("points_multiplier_bp", sa.Integer(), nullable=False),
        sa.Column("discount_bp", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _now(),
        _updated(),
        sa.UniqueConstraint("merchant_id", "name", name="uq_member_levels_name"),
        sa.UniqueConstraint("merchant_id", "rank", name="uq_member_levels_rank"),
        sa.CheckConstraint("basis IN ('spend', 'points')", name="ck_member_levels_basis"),
    )
    op.create_table(
        "member_stats",
        sa.Column("member_id", sa.UUID(), sa.ForeignKey("members.id"), primary_key=True),
        sa.Column("merchant_id", sa.UUID(), nullable=False),
        sa.Column("total_spend", sa.BigInteger(), nullable=False),
        sa.Column("lifetime_points", sa.BigInteger(), nullable=False),
        sa.Column("visit_count", sa.Integer(), nullable=False),
        sa.Column("last_paid_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "member_tags",
        sa.Column("member_id", sa.UUID(), sa.ForeignKey("members.id"), nullable=False),
        sa.Column("tag", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("merchant_id", sa.UUID(), nullable=False),
        _now(),
        sa.PrimaryKeyConstraint("member_id", "tag", "source"),
        sa.CheckConstraint("source IN ('manual', 'rule')", name="ck_member_tags_source"),
    )
    op.create_index("ix_member_tags_merchant_tag", "member_tags", ["merchant_id", "tag"])
    op.execute(
        "INSERT INTO member_tags (member_id, tag, source, merchant_id) "
        "SELECT DISTINCT m.id, t.tag, 'manual', m.merchant_id "
        "FROM members m CROSS JOIN LATERAL unnest(m.tags) AS t(tag) "
        "ON CONFLICT DO NOTHING"
    )
    op.create_table(
        "tag_rules",
        sa.Column("id", sa.UUID(), primary_key=True),
        sa.Column("merchant_id", sa.UUID(), nullable=False),
        sa.Column("tag", sa.Text(), nullable=False),
        sa.Column("levels", pg.ARRAY(sa.Text()), nullable=True),
        sa.Column("min_points_balance", sa.BigInteger(), nullable=True),
        sa.Column("min_total_spend", sa.BigInteger(), nullable=True),
        sa.Column("min_visit_count", sa.Integer(), nullable=True),
        sa.Column("birthday_month", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _now(),
        _updated(),
        sa.UniqueConstraint("merchant_id", "tag", name="uq_tag_rules_tag"),
    )
    op.create_table(
        "birthday_benefits",
        sa.Column("merchant_id", sa.UUID(), primary_key=True),
        sa.Column("points_multiplier_bp", sa.Integer(), nullable=False),
        sa.Column("timezone", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _updated(),
    )
    op.create_table(
        "coupon_templates",
        sa.Column("id", sa.UUID(), primary_key=True),
        sa.Column("merchant_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("threshold", sa.BigInteger(), nullable=True),
        sa.Column("amount_off", sa.BigInteger(), nullable=True),
        sa.Column("percent_off_bp", sa.Integer(), nullable=True),
        sa.Column("cap", sa.BigInteger(), nullable=True),
        _uuids("product_ids", False),
        _uuids("store_ids", True),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("valid_days", sa.Integer(), nullable=True),
        sa.Column("per_member_limit", sa.Integer(), nullable=True),
        sa.Column("issue_on_signup", sa.Boolean(), nullable=False),
        sa.Column("issue_on_birthday", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _now(),
        _updated(),
        sa.CheckConstraint(
            "kind IN ('full_reduction', 'percentage', 'no_threshold', 'product')",
            name="ck_coupon_templates_kind",
        ),
    )
    op.create_index(
        "ix_coupon_templates_merchant_created",
        "coupon_templates",
        ["merchant_id", "created_at", "id"],
    )
    op.create_table(
        "coupons",
        sa.Column("id", sa.UUID(), primary_key=True),
        sa.Column("merchant_id", sa.UUID(), nullable=False),
        sa.Column("template_id", sa.UUID(), sa.ForeignKey("coupon_templates.id"), nullable=False),
        sa.Column("member_id", sa.UUID(), sa.ForeignKey("members.id"), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("threshold", sa.BigInteger(), nullable=True),
        sa.Column("amount_off", sa.BigInteger(), nullable=True),
        sa.Column("percent_off_bp", sa.Integer(), nullable=True),
        sa.Column("cap", sa.BigInteger(), nullable=True),
        _uuids("product_ids", False),
        _uuids("store_ids", True),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_key", sa.Text(), nullable=True),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=True),
        sa.Column("discount", sa.BigInteger(), nullable=True),
        sa.Column("void_reason", sa.Text(), nullable=True),
        sa.Column(
            "issued_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        _updated(),
        sa.UniqueConstraint("merchant_id", "code", name="uq_coupons_code"),
        sa.CheckConstraint(
            "state IN ('issued', 'reserved', 'redeemed', 'voided')", name="ck_coupons_state"
        ),
    )
    op.create_index(
        "uq_coupons_source",
        "coupons",
        ["template_id", "member_id", "source", "source_key"],
        unique=True,
        postgresql_where=sa.text("source_key IS NOT NULL"),
    )
    op.create_index("ix_coupons_member_issued", "coupons", ["member_id", "issued_at", "id"])


def downgrade() -> None:
    op.drop_table("coupons")
    op.drop_table("coupon_templates")
    op.drop_table("birthday_benefits")
    op.drop_table("tag_rules")
    op.drop_table("member_tags")
    op.drop_table("member_stats")
    op.drop_table("member_levels")
