"""The graftmatch database: patients and, in later steps, searches, users and the audit trail.

One URL names it: by default a SQLite file in ``GRAFTMATCH_HOME`` (no server), or
``GRAFTMATCH_DATABASE``, or ``--database``; ``postgresql+psycopg://user@host/db`` runs the same
schema on PostgreSQL. The schema is managed by Alembic migrations shipped inside this package
and run programmatically by :func:`upgrade` (``graftmatch db upgrade``): no ``alembic.ini``.
:class:`Database` refuses a database that is not migrated, or was migrated by a newer
graftmatch, naming the fix, before any command reads or writes it.

Every write is one transaction (:meth:`Database.begin`): a killed process leaves nothing
half-written. On SQLite a transaction is opened with ``BEGIN`` explicitly (``BEGIN
IMMEDIATE`` for writes, so two writers queue instead of failing), so DDL in a migration is
inside it too; the database file is created 0600 in a 0700 folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from graftmatch.errors import GraftmatchError
from graftmatch.nomenclature.release import home_dir

#: The SQLite file made in GRAFTMATCH_HOME when no URL is given.
DEFAULT_FILE = "graftmatch.sqlite"
#: The drivers graftmatch runs on.
DRIVERS = ("sqlite", "sqlite+pysqlite", "postgresql+psycopg")
#: Seconds a SQLite writer waits for another one to finish.
BUSY_TIMEOUT_S = 30
FIX = "run 'graftmatch db upgrade'"
#: The PostgreSQL advisory lock that 'graftmatch db upgrade' holds while it migrates.
UPGRADE_LOCK = 0x6766_7462_0001


class DatabaseError(GraftmatchError):
    """The database cannot be used as asked (missing, unmigrated, newer, failing)."""


def default_url() -> str:
    """``GRAFTMATCH_DATABASE``, else the SQLite file in ``GRAFTMATCH_HOME``."""
    return os.environ.get("GRAFTMATCH_DATABASE") or f"sqlite:///{home_dir() / DEFAULT_FILE}"


def parse_url(text: str | None) -> URL:
    """A database URL graftmatch can use; refused by name otherwise."""
    raw = text if text is not None else default_url()
    try:
        url = make_url(raw)
    except ArgumentError:
        raise DatabaseError("the database URL is not a URL: write sqlite:///PATH or "
                            "postgresql+psycopg://USER@HOST/DB") from None
    if url.drivername not in DRIVERS:
        hint = (" (write postgresql+psycopg://...)" if url.drivername.startswith("postgresql")
                else "")
        raise DatabaseError(f"database driver {url.drivername!r} is not supported{hint}; "
                            f"graftmatch runs on {', '.join(DRIVERS)}")
    if url.drivername.startswith("sqlite") and not url.database:
        raise DatabaseError("an in-memory SQLite database keeps nothing: give a file, "
                            "sqlite:///PATH")
    return url


def shown(url: URL) -> str:
    """The URL as it may be printed: never its password."""
    return url.render_as_string(hide_password=True)


def _migrations() -> Path:
    return Path(str(resources.files("graftmatch.database").joinpath("migrations")))


def _alembic_config(connection: Connection | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_migrations()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def revisions() -> tuple[list[str], str]:
    """Every revision the shipped migrations know (oldest first), and the head."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config())
    known = [s.revision for s in script.walk_revisions()][::-1]
    head = script.get_current_head()
    assert head is not None
    return known, head


def _engine(url: URL) -> Engine:
    if not url.drivername.startswith("sqlite"):
        try:
            return create_engine(url, pool_pre_ping=True)
        except ModuleNotFoundError as exc:
            raise DatabaseError(f"{url.drivername} needs the {exc.name} package: "
                                "pip install psycopg") from None
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _connect(connection: Any, _: Any) -> None:
        connection.isolation_level = None  # graftmatch opens transactions itself (below)
        cursor = connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("graftmatch_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _sqlite_path(url: URL) -> Path | None:
    return Path(url.database) if url.drivername.startswith("sqlite") and url.database else None


class Database:
    """An open graftmatch database, checked to be at the schema this graftmatch expects
    (``check=False`` only for :func:`upgrade` and diagnostics)."""

    def __init__(self, url: str | None = None, *, check: bool = True) -> None:
        self.url = parse_url(url)
        path = _sqlite_path(self.url)
        if check and path is not None and not path.is_file():
            raise DatabaseError(f"no graftmatch database at {path}: {FIX} to create it")
        self.engine = _engine(self.url)
        if check:
            try:
                self.check()
            except BaseException:
                self.engine.dispose()
                raise

    def __repr__(self) -> str:
        return f"Database({shown(self.url)!r})"

    @property
    def name(self) -> str:
        return shown(self.url)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def revision(self) -> str | None:
        """The schema revision recorded in the database (None: never migrated)."""
        from alembic.runtime.migration import MigrationContext

        with self.read() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def check(self) -> None:
        """Refuse a database that is not at this graftmatch's schema, naming the fix."""
        current = self.revision()
        known, head = revisions()
        if current == head:
            return
        if current is None:
            with self.read() as conn:
                tables = inspect(conn).get_table_names()
            what = ("holds tables but no graftmatch schema revision" if tables
                    else "is not set up")
            raise DatabaseError(f"database {self.name} {what}: {FIX}" + (
                " (on an empty database), or give graftmatch its own database" if tables
                else ""))
        if current not in known:
            raise DatabaseError(f"database {self.name} is at schema revision {current!r}, "
                                f"newer than this graftmatch knows (up to {head!r}): upgrade "
                                "graftmatch, or use another database")
        raise DatabaseError(f"database {self.name} is at schema revision {current!r} and "
                            f"needs migrating to {head!r}: {FIX}")

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reading (one transaction, rolled back at the end)."""
        with _translated(self), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One write transaction: committed when the block ends, rolled back on an error
        (and, when the process is killed, by the database)."""
        with _translated(self), self.engine.connect() as conn:
            conn = conn.execution_options(graftmatch_write=True)
            with conn.begin():
                yield conn


@contextmanager
def _translated(db: Database) -> Iterator[None]:
    """A driver error told with the driver's reason only: SQLAlchemy's message carries the
    statement's parameters, i.e. patient data, and so do PostgreSQL's DETAIL lines (``Key
    (centre_id, pseudonym)=(1, SYN-...) already exists``): only its primary message is kept."""
    try:
        yield
    except DBAPIError as exc:
        primary = getattr(getattr(exc.orig, "diag", None), "message_primary", None)
        raise DatabaseError(f"database {db.name} failed: {primary or exc.orig}") from None


def upgrade(url: str | None = None) -> tuple[str | None, str]:
    """Create or migrate the database to this graftmatch's schema, in one transaction;
    returns the revisions before and after. A database newer than this graftmatch is
    refused, never downgraded."""
    from alembic import command

    parsed = parse_url(url)
    path = _sqlite_path(parsed)
    if path is not None and not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # empty = a new database
    from alembic.runtime.migration import MigrationContext

    db = Database(url, check=False)
    try:
        known, head = revisions()
        with db.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Two upgrades at once queue here (SQLite's BEGIN IMMEDIATE does the same);
                # the second then finds the schema at head.
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({UPGRADE_LOCK})")
            before = MigrationContext.configure(conn).get_current_revision()
            if before is not None and before not in known:
                db.check()  # raises: newer than this graftmatch
            command.upgrade(_alembic_config(conn), "head")
        return before, head
    finally:
        db.close()
