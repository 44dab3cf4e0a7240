"""Vehicle ids are 64-bit integers, as the API documents them.

On PostgreSQL the columns (and the id sequence) were 32-bit ``integer``: an id past
2,147,483,647 in a request failed in the database instead of being "not found".
SQLite's ``INTEGER`` already holds 64 bits, and its rowid primary key must stay
declared ``INTEGER``, so there is nothing to do there.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS = (("vehicles", "vehicle_id"), ("reservations", "vehicle_id"))


def _alter(to: sa.types.TypeEngine[int], sequence_type: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in _COLUMNS:
        op.alter_column(table, column, type_=to)
    op.execute(f"ALTER SEQUENCE vehicles_vehicle_id_seq AS {sequence_type}")


def upgrade() -> None:
    _alter(sa.BigInteger(), "bigint")


def downgrade() -> None:
    _alter(sa.Integer(), "integer")
