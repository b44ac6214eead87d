"""The registry store: a folder with a SQLite database of records and a search index beside it.

The database (SQLAlchemy Core over SQLite, no server) holds every adult donor and cord unit as
imported, with typings stored once per distinct GL String (registries repeat typings), the
import journal and the registry's settings. An import is one transaction, applied in file
order: a process killed at any point leaves the records as they were, and the journal (keyed by
the file's SHA-256) makes importing the same file twice a no-op unless asked to apply it again.
What a file holds but does not store (rejected records, repeated ids, deletions that delete
nothing) is counted and listed in a report written before the commit. The search index
(:mod:`.index`) is derived data, built into a new folder and switched in atomically;
``data_version`` / ``index_version`` tell when it is stale (after an import that was killed
before indexing, or a new release or set), and ``graftmatch registry refresh`` (or re-running
the import) rebuilds it.

The database records its schema version (SQLite's ``user_version``) and every index folder
graftmatch made, so a database of another version is refused rather than misread, and index
clean-up never touches a folder it did not make. Reading commands open it read-only, so a
registry on a read-only mount can be searched. Files are private to their owner (0600, folders
0700): they hold typings and birth dates.
"""

from __future__ import annotations

import csv
import datetime as dt
import fcntl
import hashlib
import os
import shutil
import sqlite3
import stat
import tempfile
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    case,
    cast,
    create_engine,
    delete,
    event,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import QueuePool

from graftmatch.atomic import atomic_file
from graftmatch.errors import GraftmatchError
from graftmatch.registry.files import Accepted, Rejected, read_records
from graftmatch.registry.limits import Limits
from graftmatch.registry.records import Action, CordRecord, Deletion, DonorRecord, cut
from graftmatch.typing.parser import TypingReader

DATABASE = "registry.sqlite"
#: The tables' layout, kept in the database's ``user_version``; bump it when a table changes.
#: A registry made before it (0, with graftmatch's tables) is upgraded when opened for writing.
SCHEMA_VERSION = 1
#: Held (flock, exclusive) while an index is built and switched in: builds run one at a time.
BUILD_LOCK = ".index-build.lock"
#: Records written per statement batch during an import.
BATCH = 5000
#: SQLite page cache per connection, KiB.
CACHE_KIB = 256 * 1024

schema = MetaData()
meta_table = Table("meta", schema, Column("key", String, primary_key=True),
                   Column("value", String, nullable=False))
typings_table = Table("typings", schema, Column("id", Integer, primary_key=True),
                      Column("gl", String, nullable=False, unique=True))
records_table = Table(
    "records", schema,
    Column("row", Integer, primary_key=True),
    Column("kind", String, nullable=False),  # donor | cord
    Column("source", String, nullable=False),  # registry (donor) or bank (cord)
    Column("ext_id", String, nullable=False),
    Column("typing_id", Integer, ForeignKey("typings.id"), nullable=False),
    Column("birth_date", String), Column("age", Integer), Column("sex", String),
    Column("abo", String), Column("rh", String), Column("cmv", String),
    Column("population", String), Column("status", String), Column("updated", String),
    Column("tnc_1e7", Float), Column("cd34_1e5", Float), Column("volume_ml", Float),
    UniqueConstraint("kind", "source", "ext_id"),
)
imports_table = Table(
    "imports", schema,
    Column("sha256", String, primary_key=True), Column("path", String, nullable=False),
    Column("finished", String, nullable=False), Column("accepted", Integer, nullable=False),
    Column("rejected", Integer, nullable=False), Column("data_version", Integer, nullable=False),
)

#: The index folders graftmatch made: ``building`` (a build that may have been killed),
#: ``current``, or ``retired`` (removed once no search holds it).
indexes_table = Table("indexes", schema, Column("folder", String, primary_key=True),
                      Column("state", String, nullable=False))

ATTRIBUTES = ("birth_date", "age", "sex", "abo", "rh", "cmv", "population", "status",
              "updated", "tnc_1e7", "cd34_1e5", "volume_ml")


class RegistryError(GraftmatchError):
    """A registry folder that cannot be used as asked."""


@dataclass(frozen=True)
class PastImport:
    """A row of the import journal."""

    path: str
    finished: dt.datetime
    accepted: int
    rejected: int
    data_version: int


@dataclass
class ImportReport:
    path: str
    #: Records stored (added or replaced), each counted once.
    accepted: int = 0
    deleted: int = 0
    rejected: int = 0
    #: Records whose id an earlier line of the same file gave (the later line is stored).
    duplicates: int = 0
    #: Deletions naming no stored record (an unknown id, or the wrong registry or bank).
    not_deleted: int = 0
    already_imported: bool = False
    #: When already imported: that import, and how many imports changed records since.
    previous: PastImport | None = None
    later_imports: int = 0
    data_version: int = 0
    #: CSV of the records not stored as written (line, field, value, reason), if any.
    error_report: str | None = None
    first_errors: list[str] = field(default_factory=list)
    #: The first duplicates and deletions that deleted nothing, as messages.
    first_notices: list[str] = field(default_factory=list)


class Registry:
    """One registry folder. ``Registry.create(path)`` makes one; ``Registry(path)`` opens it,
    read-only with ``readonly=True`` (for commands that only read)."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path, self.readonly = path, readonly
        db = path / DATABASE
        if not db.is_file():
            raise RegistryError(f"{path} is not a graftmatch registry (no {DATABASE}); create "
                                "one with 'graftmatch registry import --registry DIR FILE'")
        self.engine = _engine(db, readonly)
        try:
            self._check_schema(db)
        except (DBAPIError, RegistryError) as exc:
            self.engine.dispose()
            if isinstance(exc, DBAPIError):
                raise unusable(db, str(exc.orig)) from None
            raise

    @classmethod
    def create(cls, path: Path, *, release: str, frequency_set: str, population: str
               ) -> Registry:
        """Create a registry folder (or open the registry in it), recording the release and
        the frequency set its index is computed with. The database is made under a temporary
        name and linked into place, so a killed create leaves no half-made registry and two
        creates at once make one."""
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        db = path / DATABASE
        if not db.exists():
            fd, tmp = tempfile.mkstemp(dir=path, prefix=f".{DATABASE}.", suffix=".creating")
            os.close(fd)  # mkstemp made it 0600; SQLite gives its -wal and -shm the same mode
            try:
                engine = _engine(Path(tmp), readonly=False)
                with engine.begin() as conn:
                    schema.create_all(conn)
                    conn.exec_driver_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    conn.execute(insert(meta_table), [
                        {"key": key, "value": value} for key, value in (
                            ("release", release), ("frequency_set", frequency_set),
                            ("population", population), ("data_version", "0"),
                            ("index_version", "-1"),
                            ("created", dt.datetime.now(dt.UTC).isoformat()))])
                engine.dispose()
                with suppress(FileExistsError):  # another process made it meanwhile: theirs
                    os.link(tmp, db)
            finally:
                Path(tmp).unlink()
        return cls(path)

    def _check_schema(self, db: Path) -> None:
        with self.engine.begin() as conn:
            version = conn.exec_driver_sql("PRAGMA user_version").scalar_one()
            columns = {name: set(conn.exec_driver_sql(
                "SELECT name FROM pragma_table_info(?)", (name,)).scalars())
                for name in conn.exec_driver_sql(
                    "SELECT name FROM sqlite_master WHERE type = 'table'").scalars()}
            if version == 0 and not columns:
                raise unusable(db, "it holds no graftmatch tables")
            if version == 0 and {"meta", "records"} <= set(columns):
                if self.readonly:
                    raise RegistryError(f"{db} was made by an older graftmatch version; run "
                                        f"'graftmatch registry refresh --registry {self.path}' "
                                        "once where it can be written")
                _upgrade(conn)
                return
            if version != SCHEMA_VERSION:
                raise unusable(db, "it was made by another graftmatch version (database "
                               f"schema {version}, this one reads {SCHEMA_VERSION})")
            if any(columns.get(t.name) != set(t.c.keys()) for t in schema.tables.values()):
                raise unusable(db, "its tables are not those of this graftmatch version")

    # -- settings --------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return {k: v for k, v in conn.execute(select(meta_table.c.key, meta_table.c.value))}

    def set_meta(self, **values: str) -> None:
        with self.engine.begin() as conn:
            _set_meta(conn, values)

    # -- the search index's folders -------------------------------------------------------
    @contextmanager
    def build_lock(self, waiting: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the index-build lock (released when the process ends, however it ends);
        ``waiting`` is called first if another process holds it."""
        fd = os.open(self.path / BUILD_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if waiting is not None:
                    waiting()
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def index_folders(self) -> dict[str, str]:
        """The index folders graftmatch made, by name: their state."""
        with self.engine.connect() as conn:
            return {folder: state for folder, state in conn.execute(
                select(indexes_table.c.folder, indexes_table.c.state))}

    def record_index_folder(self, folder: str) -> None:
        """Record a folder about to be built (before it exists, so a killed build's
        leftovers are known)."""
        with self.engine.begin() as conn:
            conn.execute(insert(indexes_table).values(folder=folder, state="building"))

    def forget_index_folder(self, folder: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(indexes_table).where(indexes_table.c.folder == folder))

    def switch_index(self, folder: str, **values: str) -> None:
        """Make ``folder`` the current index and retire the previous one, setting ``values``
        in the settings, in one transaction: a search sees the old index or the new one."""
        c = indexes_table.c
        with self.engine.begin() as conn:
            conn.execute(update(indexes_table).where(c.state == "current")
                         .values(state="retired"))
            conn.execute(update(indexes_table).where(c.folder == folder)
                         .values(state="current"))
            _set_meta(conn, {**values, "index_folder": folder})

    @property
    def stale(self) -> bool:
        """True when records changed since the search index was built."""
        meta = self.meta()
        return meta["data_version"] != meta["index_version"]

    # -- importing -------------------------------------------------------------------------
    def journal(self) -> list[PastImport]:
        """Every import, oldest first."""
        c = imports_table.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(c.path, c.finished, c.accepted, c.rejected,
                                       c.data_version).order_by(c.data_version)).all()
        return [PastImport(path, dt.datetime.fromisoformat(finished), accepted, rejected,
                           version) for path, finished, accepted, rejected, version in rows]

    def import_file(self, source: Path, reader: TypingReader,
                    progress: Callable[[int], None] | None = None, *, again: bool = False,
                    limits: Limits | None = None) -> ImportReport:
        """Load a CSV/JSON file of records in one transaction, in file order; bad records are
        reported (and written to an error report in the registry folder) while good ones load.

        A file imported before is not applied again unless ``again``: the report says which
        import it was. Standard input or another stream is read into a file first, since it
        is read twice (its SHA-256, then its records).
        """
        with _regular(source, self.path) as path:
            digest = sha256_of(path)
            report = ImportReport(str(source))
            with self.engine.connect() as conn:
                done = conn.execute(select(imports_table).where(
                    imports_table.c.sha256 == digest)).first()
                if done is not None and not again:
                    report.already_imported, report.data_version = True, int(done.data_version)
                    report.previous = PastImport(done.path,
                                                 dt.datetime.fromisoformat(done.finished),
                                                 done.accepted, done.rejected,
                                                 done.data_version)
                    report.later_imports = int(conn.execute(
                        select(func.count()).select_from(imports_table)
                        .where(imports_table.c.data_version > done.data_version)).scalar_one())
                    return report
            # Under the build lock: an index build reads typings the import may drop, and an
            # import waits for a build in progress rather than change its records under it.
            with self.build_lock():
                self._import(path, source, digest, reader, progress, limits, report)
        return report

    def _import(self, path: Path, source: Path, digest: str, reader: TypingReader,
                progress: Callable[[int], None] | None, limits: Limits | None,
                report: ImportReport) -> None:
        notes: list[tuple[int, str, str, str]] = []
        with self.engine.connect() as conn:
            transaction = conn.begin()
            writer = None
            try:
                writer = _Writer(conn, report, notes)
                for n, result in enumerate(read_records(path, reader, limits, name=source), 1):
                    if isinstance(result, Rejected):
                        e = result.error
                        notes.append((e.line, e.field, e.value, e.reason))
                        report.rejected += 1
                        if len(report.first_errors) < 5:
                            report.first_errors.append(str(e))
                    else:
                        writer.add(result)
                    if progress is not None and n % 1000 == 0:
                        progress(1000)
                writer.finish()
                version = int(conn.execute(select(meta_table.c.value).where(
                    meta_table.c.key == "data_version")).scalar_one()) + 1
                report.data_version = version
                conn.execute(meta_table.update().where(meta_table.c.key == "data_version")
                             .values(value=str(version)))
                journal = {"path": str(source), "finished": dt.datetime.now(dt.UTC).isoformat(),
                           "accepted": report.accepted, "rejected": report.rejected,
                           "data_version": version}
                conn.execute(insert(imports_table).values(sha256=digest, **journal)
                             .on_conflict_do_update(index_elements=["sha256"], set_=journal))
                if notes:
                    report.error_report = str(self._error_report(source, notes, transaction))
                else:
                    transaction.commit()
            finally:
                if transaction.is_active:
                    transaction.rollback()
                if writer is not None:
                    writer.close()

    def _error_report(self, source: Path, rows: list[tuple[int, str, str, str]],
                      transaction: Any) -> Path:
        """Write the report beside its final name, commit ``transaction``, then put the report
        in place: a report that cannot be written stops the import before the commit, so no
        re-run can say "already imported" with the list lost."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        folder = self.path / "reports"
        path = folder / f"{source.name}.{stamp}.errors.csv"
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            with atomic_file(path) as handle:
                writer = csv.writer(handle)
                writer.writerow(["line", "field", "value", "reason"])
                writer.writerows([_cell(str(c)) for c in row] for row in sorted(rows))
                handle.flush()
                transaction.commit()
        except OSError as exc:
            if transaction.is_active:
                raise RegistryError(f"cannot write the list of rejected records in {folder}: "
                                    f"{exc}; nothing was imported: make {folder} a writable "
                                    "folder and import again") from exc
            raise RegistryError(f"imported, but the list of rejected records could not be "
                                f"put in {path}: {exc}") from exc
        return path

    # -- reading -----------------------------------------------------------------------------
    def count(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(records_table.c.kind, func.count())
                                .group_by(records_table.c.kind)).all()
        return {kind: int(n) for kind, n in rows}

    def sources(self) -> list[str]:
        """Registries and banks, sorted (their index in this list is their code)."""
        with self.engine.connect() as conn:
            return sorted(conn.execute(select(records_table.c.source).distinct()).scalars())

    def populations(self) -> list[str]:
        """The populations records state, sorted (empty ones left out)."""
        with self.engine.connect() as conn:
            return sorted(p for p in conn.execute(
                select(records_table.c.population).distinct()).scalars() if p)

    def iter_records(self) -> Iterator[dict[str, Any]]:
        """Every record in row order, as stored, streamed (the index reads coded columns
        through :meth:`coded_records` instead)."""
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=50_000).execute(
                select(records_table).order_by(records_table.c.row))
            for rec in result.mappings():
                yield dict(rec)

    def coded_records(self, codes: Mapping[str, Sequence[str]], today: dt.date,
                      size: int = 200_000) -> Iterator[list[tuple[Any, ...]]]:
        """Every record in row order as numbers, in lists of ``size`` rows, for the index.

        Columns: row, kind, source, typing_id, age (from the birth date when given, on
        ``today``), sex, abo, rh, cmv, status, tnc_1e7, cd34_1e5, population. A text column
        named in ``codes`` comes as its position in ``codes[name]``, whose first entry stands
        for an empty value; ``source`` is coded by :meth:`sources`. Coding happens in SQLite,
        so 40 million records stream without a Python object per field.
        """
        c = records_table.c
        coded = {**codes, "source": self.sources()}

        def code(name: str) -> Any:
            values = coded[name]
            return case({v: i for i, v in enumerate(values)},
                        value=func.coalesce(c[name], values[0]), else_=-1)

        born = c.birth_date
        age = case((born.is_not(None),
                    literal(today.year) - cast(func.substr(born, 1, 4), Integer)
                    - cast(func.substr(born, 6, 5) > today.strftime("%m-%d"), Integer)),
                   else_=c.age)
        query = select(c.row, code("kind"), code("source"), c.typing_id, age, code("sex"),
                       code("abo"), code("rh"), code("cmv"), code("status"), c.tnc_1e7,
                       c.cd34_1e5, code("population")).order_by(c.row)
        sql = str(query.compile(self.engine, compile_kwargs={"literal_binds": True}))
        with self.engine.connect() as conn:
            cursor = conn.connection.driver_connection.execute(sql)  # type: ignore[union-attr]
            while rows := cursor.fetchmany(size):
                yield rows

    def typings(self, ids: Iterable[int]) -> dict[int, str]:
        ids = list(ids)
        out: dict[int, str] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 10_000):
                chunk = ids[start:start + 10_000]
                out.update(conn.execute(select(typings_table.c.id, typings_table.c.gl)
                                        .where(typings_table.c.id.in_(chunk))).all())
        return out

    def rows(self, rows: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Full records (with their GL String) by row number."""
        rows = list(rows)
        out: dict[int, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(rows), 10_000):
                chunk = rows[start:start + 10_000]
                query = (select(records_table, typings_table.c.gl)
                         .join(typings_table, typings_table.c.id == records_table.c.typing_id)
                         .where(records_table.c.row.in_(chunk)))
                for rec in conn.execute(query).mappings():
                    out[rec["row"]] = dict(rec)
        return out


def unusable(db: Path, reason: str) -> RegistryError:
    """A database that cannot be read as a registry; ``reason`` never holds record values."""
    return RegistryError(f"{db} is not a usable graftmatch registry ({reason}): restore it "
                         "from a backup, or move it away and import the records again")


def database_error(registry: Path, exc: DBAPIError) -> RegistryError:
    """A database error met while working: SQLite's reason, without the statement and its
    parameters (which hold record values)."""
    return RegistryError(f"{registry / DATABASE} failed ({exc.orig}); if it persists, restore "
                         "it from a backup, or move it away and import the records again")


def _set_meta(conn: Any, values: Mapping[str, str]) -> None:
    for key, value in values.items():
        conn.execute(insert(meta_table).values(key=key, value=value)
                     .on_conflict_do_update(index_elements=["key"], set_={"value": value}))


def _upgrade(conn: Any) -> None:
    """Give a registry made before schema versions the tables it lacks, with its current
    index folder recorded (graftmatch made it: the registry names it)."""
    schema.create_all(conn)
    current = conn.execute(select(meta_table.c.value)
                           .where(meta_table.c.key == "index_folder")).scalar()
    if current is not None:
        conn.execute(insert(indexes_table).values(folder=current, state="current")
                     .on_conflict_do_nothing())
    conn.exec_driver_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _engine(db: Path, readonly: bool) -> Engine:
    if readonly:
        # Read-only, and on a folder no one can write (a read-only mount) with no WAL in use,
        # immutable: SQLite then needs no -shm file, which it could not create there.
        uri = f"file:{urllib.parse.quote(str(db))}?mode=ro"
        if not os.access(db.parent, os.W_OK) and not any(
                Path(f"{db}{end}").exists() for end in ("-wal", "-shm")):
            uri += "&immutable=1"
        engine = create_engine("sqlite://", poolclass=QueuePool, creator=lambda: sqlite3.connect(
            uri, uri=True, check_same_thread=False))
    else:
        engine = create_engine(f"sqlite:///{db}")

    @event.listens_for(engine, "connect")
    def _pragmas(connection: Any, _: Any) -> None:  # durable, and fast enough for bulk loads
        cursor = connection.cursor()
        if not readonly:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # A 256 MiB page cache (the default is 2 MiB): an import of millions of records
        # updates B-tree pages all over the unique indexes, and spilling them is the cost.
        cursor.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        cursor.close()

    return engine


def _source(record: DonorRecord | CordRecord | Deletion) -> str:
    """The registry (donor) or bank (cord); empty for a deletion that names neither."""
    if isinstance(record, Deletion):
        return record.registry or record.bank or ""
    return record.registry if isinstance(record, DonorRecord) else record.bank


_COLUMNS = ("kind", "source", "ext_id", "typing_id", *ATTRIBUTES)
#: The upsert, written out once: executed through the driver, the bulk path of an import
#: skips building a statement per batch.
_UPSERT = (f"INSERT INTO records ({', '.join(_COLUMNS)}) VALUES "
           f"({', '.join('?' for _ in _COLUMNS)}) ON CONFLICT (kind, source, ext_id) DO UPDATE "
           f"SET {', '.join(f'{c} = excluded.{c}' for c in ('typing_id', *ATTRIBUTES))}")


def _write(conn: Any, upserts: list[tuple[str, DonorRecord | CordRecord]]) -> None:
    gls = list({record.hla for _, record in upserts})
    conn.exec_driver_sql("INSERT INTO typings (gl) VALUES (?) ON CONFLICT (gl) DO NOTHING",
                         [(gl,) for gl in gls])
    ids = dict(conn.execute(select(typings_table.c.gl, typings_table.c.id)
                            .where(typings_table.c.gl.in_(gls))).all())
    rows = []
    for kind, record in upserts:
        fields = record.__dict__  # the validated values; a field the kind lacks is None
        values = [fields.get(name) for name in ATTRIBUTES]
        for k, value in enumerate(values):
            if isinstance(value, dt.date):
                values[k] = value.isoformat()
            elif isinstance(value, StrEnum):
                values[k] = value.value
        rows.append((kind, _source(record), record.id, ids[record.hla], *values))
    conn.exec_driver_sql(_UPSERT, rows)


#: The import's own scratch tables, on its connection only: the keys it stored (to find an id
#: an earlier line gave) and the typings records stopped using (filled by triggers, so the
#: bulk upsert stays one statement).
_SCRATCH = (
    "CREATE TEMP TABLE IF NOT EXISTS import_seen (kind TEXT, source TEXT, ext_id TEXT, "
    "line INTEGER, PRIMARY KEY (kind, source, ext_id)) WITHOUT ROWID",
    "CREATE TEMP TABLE IF NOT EXISTS import_unused (typing_id INTEGER PRIMARY KEY)",
    "CREATE TEMP TRIGGER IF NOT EXISTS import_deleted AFTER DELETE ON main.records BEGIN "
    "INSERT OR IGNORE INTO import_unused VALUES (old.typing_id); END",
    "CREATE TEMP TRIGGER IF NOT EXISTS import_retyped AFTER UPDATE OF typing_id ON "
    "main.records WHEN old.typing_id <> new.typing_id BEGIN "
    "INSERT OR IGNORE INTO import_unused VALUES (old.typing_id); END",
    "DELETE FROM temp.import_seen",
    "DELETE FROM temp.import_unused",
)
_DROP_SCRATCH = ("DROP TRIGGER IF EXISTS temp.import_deleted",
                 "DROP TRIGGER IF EXISTS temp.import_retyped",
                 "DROP TABLE IF EXISTS temp.import_seen",
                 "DROP TABLE IF EXISTS temp.import_unused")
_NOUN = {"donor": ("donor", "registry"), "cord": ("cord unit", "bank")}


class _Writer:
    """Applies accepted records to an open transaction in file order. Runs of one action are
    batched, and a run ends where the action changes, so deleting an id and adding it again
    leaves it present. Counts what was stored, notes each id an earlier line of the file gave
    and each deletion that deleted nothing, and drops typings no record uses any more."""

    def __init__(self, conn: Any, report: ImportReport,
                 notes: list[tuple[int, str, str, str]]) -> None:
        self.conn, self.report, self.notes = conn, report, notes
        self.pending: list[Accepted] = []
        for statement in _SCRATCH:
            conn.exec_driver_sql(statement)

    def add(self, result: Accepted) -> None:
        if self.pending and self.pending[0].action is not result.action:
            self._flush()
        self.pending.append(result)
        if len(self.pending) >= BATCH:
            self._flush()

    def finish(self) -> None:
        self._flush()
        self.conn.exec_driver_sql(
            "DELETE FROM typings WHERE id IN (SELECT typing_id FROM temp.import_unused) "
            "AND id NOT IN (SELECT typing_id FROM records)")

    def close(self) -> None:
        for statement in _DROP_SCRATCH:
            self.conn.exec_driver_sql(statement)

    def _flush(self) -> None:
        batch, self.pending = self.pending, []
        if not batch:
            return
        if batch[0].action is Action.DELETE:
            self._delete(batch)
        else:
            self._upsert(batch)

    def _note(self, line: int, ext_id: str, reason: str) -> None:
        self.notes.append((line, "id", ext_id, reason))
        if len(self.report.first_notices) < 5:
            self.report.first_notices.append(f"{self.report.path} line {line}, field 'id': "
                                             f"{cut(ext_id)!r} {reason}")

    def _upsert(self, batch: list[Accepted]) -> None:
        first: dict[tuple[str, str, str], int] = {}
        repeats: list[tuple[int, tuple[str, str, str], int]] = []
        for r in batch:
            key = (r.kind.value, _source(r.record), r.record.id)
            if key in first:
                repeats.append((r.line, key, first[key]))
            else:
                first[key] = r.line
        driver = self.conn.connection.driver_connection
        before = driver.total_changes
        self.conn.exec_driver_sql("INSERT OR IGNORE INTO temp.import_seen VALUES (?, ?, ?, ?)",
                                  [(*key, line) for key, line in first.items()])
        if driver.total_changes - before < len(first):  # some were stored by earlier batches
            earliest = min(first.values())
            for key, line in first.items():
                seen = self.conn.exec_driver_sql(
                    "SELECT line FROM temp.import_seen WHERE kind = ? AND source = ? AND "
                    "ext_id = ? AND line < ?", (*key, earliest)).scalar()
                if seen is not None:
                    repeats.append((line, key, seen))
        for line, (kind, source, ext_id), seen in sorted(repeats):
            self._note(line, ext_id, f"repeats the {_NOUN[kind][0]} of line {seen} ({ext_id} "
                                     f"of {source}): this later line is what is stored")
        _write(self.conn, [(r.kind.value, r.record) for r in batch
                           if not isinstance(r.record, Deletion)])
        self.report.accepted += len(batch) - len(repeats)
        self.report.duplicates += len(repeats)

    def _delete(self, batch: list[Accepted]) -> None:
        missed: list[tuple[int, str, str, str]] = []
        for r in batch:
            kind, source, ext_id = r.kind.value, _source(r.record), r.record.id
            where = "kind = ? AND ext_id = ?" + (" AND source = ?" if source else "")
            params = (kind, ext_id, source) if source else (kind, ext_id)
            count = self.conn.exec_driver_sql(f"DELETE FROM records WHERE {where}",
                                              params).rowcount
            self.conn.exec_driver_sql(f"DELETE FROM temp.import_seen WHERE {where}", params)
            if count:
                self.report.deleted += count
            else:
                missed.append((r.line, kind, source, ext_id))
        if not missed:
            return
        c = records_table.c
        elsewhere: dict[tuple[str, str], set[str]] = {}
        ids = sorted({ext_id for _, _, source, ext_id in missed if source})
        for start in range(0, len(ids), 900):
            for kind, ext_id, source in self.conn.execute(
                    select(c.kind, c.ext_id, c.source).where(c.ext_id.in_(ids[start:start + 900]))):
                elsewhere.setdefault((kind, ext_id), set()).add(source)
        for line, kind, source, ext_id in missed:
            noun, owner = _NOUN[kind]
            others = sorted(elsewhere.get((kind, ext_id), ()))
            hint = f" ({ext_id} is in {', '.join(others)})" if others else ""
            named = f"of {owner} {source}" if source else f"in any {owner}"
            self._note(line, ext_id, f"names no {noun} {ext_id} {named}{hint}: nothing deleted")
        self.report.not_deleted += len(missed)


def _cell(text: str) -> str:
    """A report cell a spreadsheet shows as text: one starting ``= + - @`` (or a tab or
    carriage return) would be read as a formula (OWASP, CSV injection), so it gets a ``'``."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@contextmanager
def _regular(source: Path, folder: Path) -> Iterator[Path]:
    """``source`` when it is a regular file. Standard input or another stream is copied into
    the registry folder first (and removed after), since an import reads its file twice."""
    try:
        mode = source.stat().st_mode
    except OSError as exc:
        raise RegistryError(f"cannot read {source}: {exc}") from exc
    if stat.S_ISDIR(mode):
        raise RegistryError(f"{source} is a folder, not a file of records")
    if stat.S_ISREG(mode):
        yield source
        return
    fd, copy = tempfile.mkstemp(dir=folder, prefix=".import-", suffix=".partial")
    try:
        try:
            with open(fd, "wb") as out, source.open("rb") as stream:
                shutil.copyfileobj(stream, out, 1 << 20)
        except OSError as exc:
            raise RegistryError(f"cannot read {source}: {exc}") from exc
        yield Path(copy)
    finally:
        Path(copy).unlink(missing_ok=True)


def sha256_of(path: Path) -> str:
    """A file's SHA-256, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise RegistryError(f"cannot read {path}: {exc}") from exc
    return digest.hexdigest()
