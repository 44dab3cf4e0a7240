"""Vehicles (fleet and new arrivals) and their reservations.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vehicles",
        sa.Column("vehicle_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("technology", sa.Integer(), nullable=False),
        sa.Column("actual_price", sa.Float(), nullable=False),
        sa.Column("recommended_price", sa.Float(), nullable=False),
        sa.Column("num_images", sa.Integer(), nullable=False),
        sa.Column("street_parked", sa.Integer(), nullable=False),
        sa.Column("description", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("technology IN (0, 1)", name="ck_vehicles_technology"),
        sa.CheckConstraint("street_parked IN (0, 1)", name="ck_vehicles_street_parked"),
        sa.CheckConstraint("actual_price > 0", name="ck_vehicles_actual_price"),
        sa.CheckConstraint("recommended_price > 0", name="ck_vehicles_recommended_price"),
        sa.CheckConstraint("num_images >= 0", name="ck_vehicles_num_images"),
        sa.CheckConstraint("description >= 0", name="ck_vehicles_description"),
        sa.CheckConstraint("source IN ('csv', 'ui')", name="ck_vehicles_source"),
        sa.PrimaryKeyConstraint("vehicle_id"),
    )
    op.create_table(
        "reservations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("vehicle_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.ForeignKeyConstraint(["vehicle_id"], ["vehicles.vehicle_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_reservations_vehicle_id", "reservations", ["vehicle_id"])


def downgrade() -> None:
    op.drop_index("ix_reservations_vehicle_id", table_name="reservations")
    op.drop_table("reservations")
    op.drop_table("vehicles")
