"""Alembic migrations of the graftmatch database, run by graftmatch.database.upgrade."""
