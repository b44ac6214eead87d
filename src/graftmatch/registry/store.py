"""The registry store: a folder with a SQLite database of records and a search index beside it.

The database (SQLAlchemy Core over SQLite, no server) holds every adult donor and cord unit as
imported, with typings stored once per distinct GL String (registries repeat typings), the
import journal and the registry's settings. An import is one transaction: a process killed at
any point leaves the records as they were, and the journal (keyed by the file's SHA-256) makes
importing the same file twice a no-op. The search index (:mod:`.index`) is derived data, built
into a new folder and switched in atomically; ``data_version`` / ``index_version`` tell when
it is stale (after an import that was killed before indexing, or a new release or set), and
``graftmatch registry refresh`` (or re-running the import) rebuilds it.

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
import sqlite3
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
    tuple_,
    update,
)
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import QueuePool

from graftmatch.atomic import atomic_file
from graftmatch.errors import GraftmatchError
from graftmatch.registry.files import Accepted, Rejected, read_records
from graftmatch.registry.records import Action, CordRecord, Deletion, DonorRecord
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


@dataclass
class ImportReport:
    path: str
    accepted: int = 0
    deleted: int = 0
    rejected: int = 0
    already_imported: bool = False
    data_version: int = 0
    #: CSV of the rejected records (line, field, value, reason), if any.
    error_report: str | None = None
    first_errors: list[str] = field(default_factory=list)


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
    def import_file(self, source: Path, reader: TypingReader,
                    progress: Callable[[int], None] | None = None) -> ImportReport:
        """Load a CSV/JSON file of records in one transaction; bad records are reported (and
        written to an error report in the registry folder) while good ones load."""
        digest = sha256_of(source)
        report = ImportReport(str(source))
        with self.engine.connect() as conn:
            done = conn.execute(select(imports_table.c.data_version)
                                .where(imports_table.c.sha256 == digest)).first()
        if done is not None:
            report.already_imported, report.data_version = True, int(done[0])
            return report
        rejected: list[tuple[int, str, str, str]] = []
        with self.engine.begin() as conn:
            upserts: list[tuple[str, DonorRecord | CordRecord]] = []
            deletes: list[tuple[str, str, str]] = []
            for n, result in enumerate(read_records(source, reader), 1):
                if isinstance(result, Rejected):
                    e = result.error
                    rejected.append((e.line, e.field, e.value, e.reason))
                    if len(report.first_errors) < 5:
                        report.first_errors.append(str(e))
                    continue
                assert isinstance(result, Accepted)
                if result.action is Action.DELETE:
                    deletes.append((result.kind.value, _source(result.record),
                                    result.record.id))
                else:
                    assert not isinstance(result.record, Deletion)
                    upserts.append((result.kind.value, result.record))
                if len(upserts) + len(deletes) >= BATCH:
                    report.accepted += _write(conn, upserts)
                    report.deleted += _delete(conn, deletes)
                    upserts, deletes = [], []
                if progress is not None and n % 1000 == 0:
                    progress(1000)
            report.accepted += _write(conn, upserts)
            report.deleted += _delete(conn, deletes)
            report.rejected = len(rejected)
            version = int(conn.execute(select(meta_table.c.value)
                                       .where(meta_table.c.key == "data_version")).scalar_one())
            report.data_version = version + 1
            conn.execute(meta_table.update().where(meta_table.c.key == "data_version")
                         .values(value=str(version + 1)))
            conn.execute(insert(imports_table).values(
                sha256=digest, path=str(source), finished=dt.datetime.now(dt.UTC).isoformat(),
                accepted=report.accepted, rejected=report.rejected,
                data_version=version + 1))
        if rejected:
            report.error_report = str(self._error_report(source, rejected))
        return report

    def _error_report(self, source: Path, rejected: list[tuple[int, str, str, str]]) -> Path:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        path = self.path / "reports" / f"{source.name}.{stamp}.errors.csv"
        path.parent.mkdir(mode=0o700, exist_ok=True)
        with atomic_file(path) as handle:
            writer = csv.writer(handle)
            writer.writerow(["line", "field", "value", "reason"])
            writer.writerows(rejected)
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


def _write(conn: Any, upserts: list[tuple[str, DonorRecord | CordRecord]]) -> int:
    if not upserts:
        return 0
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
    return len(rows)


def _delete(conn: Any, keys: list[tuple[str, str, str]]) -> int:
    """Delete by (kind, source, id); a deletion naming no source removes that id from every
    registry or bank of its kind."""
    c = records_table.c
    count = 0
    sourced = [k for k in keys if k[1]]
    if sourced:
        count += conn.execute(delete(records_table).where(
            tuple_(c.kind, c.source, c.ext_id).in_(sourced))).rowcount or 0
    for kind, _, ext_id in (k for k in keys if not k[1]):
        count += conn.execute(delete(records_table).where(
            (c.kind == kind) & (c.ext_id == ext_id))).rowcount or 0
    return int(count)


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
