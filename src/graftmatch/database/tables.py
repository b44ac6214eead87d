"""The tables of the graftmatch database (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Centres, patients and their HLA typings; users, API tokens, login attempts and the
hash-chained audit trail (revision 0002, ADR 0009). The diagnosis (disease, IUIS category, gene,
variants, laboratory results with units and reference ranges) is one JSON column validated by
:class:`graftmatch.pathway.patients.Diagnosis` on the way in and out; the rest of the record
is plain columns. The current typing of a patient is a row of ``current_typings`` whose
foreign key names a typing of that same patient, so the database itself refuses a current
typing that is not the patient's. Constraints are named (``naming_convention``) so that
migrations can refer to them on every backend. A change here needs a migration in
``migrations/versions`` (tests compare the two).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

centres = Table(
    "centres", metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(32), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

patients = Table(
    "patients", metadata,
    Column("id", Integer, primary_key=True),
    Column("centre_id", Integer, ForeignKey("centres.id"), nullable=False, index=True),
    Column("pseudonym", String(64), nullable=False),
    Column("sex", String(1), nullable=False),
    Column("birth_date", Date, nullable=False),
    Column("weight_kg", Float),
    Column("abo", String(2)),
    Column("rh", String(1)),
    Column("cmv", String(16), nullable=False),
    Column("population", String(64)),
    Column("diagnosis", JSON, nullable=False),
    Column("synthetic", Boolean, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # Pseudonyms are a centre's own: two centres may use the same one.
    UniqueConstraint("centre_id", "pseudonym"),
)

typings = Table(
    "typings", metadata,
    Column("id", Integer, primary_key=True),
    Column("patient_id", Integer, ForeignKey("patients.id", ondelete="CASCADE"),
           nullable=False),
    Column("number", Integer, nullable=False),
    Column("gl", Text, nullable=False),
    Column("laboratory", String(200), nullable=False),
    Column("typing_date", Date, nullable=False),
    Column("method", String(32), nullable=False),
    Column("resolution", String(32), nullable=False),
    Column("release", String(32), nullable=False),
    Column("notices", JSON, nullable=False),
    Column("entered_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("patient_id", "number"),
    UniqueConstraint("patient_id", "id"),
)

current_typings = Table(
    "current_typings", metadata,
    Column("patient_id", Integer, ForeignKey("patients.id", ondelete="CASCADE"),
           primary_key=True),
    Column("typing_id", Integer, nullable=False),
    Column("chosen_at", DateTime(timezone=True), nullable=False),
    ForeignKeyConstraint(["patient_id", "typing_id"], ["typings.patient_id", "typings.id"],
                         name="fk_current_typings_typing_of_patient", ondelete="CASCADE"),
)

# --- accounts and the audit trail (revision 0002) --------------------------------------------

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(200), nullable=False),
    Column("role", String(32), nullable=False),
    # None: every centre (admin, registry manager, auditor, researcher).
    Column("centre_id", Integer, ForeignKey("centres.id")),
    # Argon2id in PHC string form ($argon2id$v=19$m=...,t=...,p=...$salt$hash).
    Column("password_hash", Text, nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("password_changed_at", DateTime(timezone=True), nullable=False),
)

api_tokens = Table(
    "api_tokens", metadata,
    Column("id", Integer, primary_key=True),
    # SHA-256 of the token (256 random bits: a fast hash suffices, no salt needed).
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False, index=True),
    Column("name", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)

login_attempts = Table(
    "login_attempts", metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("success", Boolean, nullable=False),
    Column("source", String(100), nullable=False),
)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", Integer, nullable=False, unique=True),
    # ISO 8601 UTC text, so the hashed content reads back identically on every backend.
    Column("at", String(32), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("role", String(32), nullable=False),
    Column("centre", String(32)),
    Column("action", String(64), nullable=False),
    Column("record", String(200)),
    Column("source", String(100), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("detail", String(200)),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
