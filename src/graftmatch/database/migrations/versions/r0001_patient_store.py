"""The patient store: centres, patients, HLA typings and each patient's current typing.

Revision ID: 0001
Revises:
Create Date: 2026-05-01
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
        "centres",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_centres"),
        sa.UniqueConstraint("code", name="uq_centres_code"),
    )
    op.create_table(
        "patients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("centre_id", sa.Integer(), nullable=False),
        sa.Column("pseudonym", sa.String(64), nullable=False),
        sa.Column("sex", sa.String(1), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("weight_kg", sa.Float(), nullable=True),
        sa.Column("abo", sa.String(2), nullable=True),
        sa.Column("rh", sa.String(1), nullable=True),
        sa.Column("cmv", sa.String(16), nullable=False),
        sa.Column("population", sa.String(64), nullable=True),
        sa.Column("diagnosis", sa.JSON(), nullable=False),
        sa.Column("synthetic", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["centre_id"], ["centres.id"],
                                name="fk_patients_centre_id_centres"),
        sa.PrimaryKeyConstraint("id", name="pk_patients"),
        sa.UniqueConstraint("centre_id", "pseudonym", name="uq_patients_centre_id_pseudonym"),
    )
    op.create_index("ix_patients_centre_id", "patients", ["centre_id"])
    op.create_table(
        "typings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("gl", sa.Text(), nullable=False),
        sa.Column("laboratory", sa.String(200), nullable=False),
        sa.Column("typing_date", sa.Date(), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("resolution", sa.String(32), nullable=False),
        sa.Column("release", sa.String(32), nullable=False),
        sa.Column("notices", sa.JSON(), nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"],
                                name="fk_typings_patient_id_patients", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_typings"),
        sa.UniqueConstraint("patient_id", "number", name="uq_typings_patient_id_number"),
        sa.UniqueConstraint("patient_id", "id", name="uq_typings_patient_id_id"),
    )
    op.create_table(
        "current_typings",
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("typing_id", sa.Integer(), nullable=False),
        sa.Column("chosen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"],
                                name="fk_current_typings_patient_id_patients",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["patient_id", "typing_id"], ["typings.patient_id", "typings.id"],
                                name="fk_current_typings_typing_of_patient", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("patient_id", name="pk_current_typings"),
    )


def downgrade() -> None:
    op.drop_table("current_typings")
    op.drop_table("typings")
    op.drop_index("ix_patients_centre_id", table_name="patients")
    op.drop_table("patients")
    op.drop_table("centres")
