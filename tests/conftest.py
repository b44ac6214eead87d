"""Shared fixtures. Reference data are read from ../shared/data, never copied into the repo."""

from __future__ import annotations

import gzip
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
IMGT_DIR = Path(os.environ.get("GRAFTMATCH_IMGT_DIR", SHARED / "imgt-hla" / "3.58.0"))
WMDA = SHARED / "wmda-mvt"

sys.path.insert(0, str(REPO))  # for benchmarks.peers.pyard_offline


@pytest.fixture(scope="session", autouse=True)
def _private_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep every test away from the user's real cache."""
    os.environ["GRAFTMATCH_HOME"] = str(tmp_path_factory.mktemp("graftmatch-home"))
    os.environ["GRAFTMATCH_IMGT_DIR"] = str(IMGT_DIR)


@pytest.fixture(scope="session")
def index():
    from graftmatch.nomenclature.release import load_index

    return load_index()


@pytest.fixture
def reader(index):
    from graftmatch.typing.parser import TypingReader

    return TypingReader(index)


def read_wmda(name: str) -> list[tuple[str, str]]:
    with gzip.open(WMDA / name, "rt") as handle:
        return [tuple(line.rstrip("\n").split("%", 1)) for line in handle if line.strip()]


#: A PostgreSQL database the tests may use (each test gets a fresh schema in it); .ci/run and
#: 'make test-postgres' start a throwaway server and set it (.ci/with-postgres).
POSTGRES_URL = os.environ.get("GRAFTMATCH_TEST_POSTGRES_URL")
#: The PostgreSQL sessions of the tests are in a zone far from UTC: graftmatch must hand back
#: UTC whatever the server's or session's time zone.
ZONE = "Asia/Kathmandu"
POSTGRES_SKIPPED = ("PostgreSQL variant: GRAFTMATCH_TEST_POSTGRES_URL is not set; run 'make "
                    "test-postgres' (a throwaway server, as .ci/run does) or set it to "
                    "postgresql+psycopg://USER@HOST/DB of a database the tests may use")


def run_sql(url: str, *statements: str) -> list[tuple[object, ...]]:
    """Statements run in one transaction on the database at ``url`` (outside graftmatch);
    the rows of the last one, if it returns any."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            rows: list[tuple[object, ...]] = []
            for statement in statements:
                result = conn.execute(text(statement))
                rows = [tuple(r) for r in result] if result.returns_rows else []
            return rows
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty graftmatch database, not yet migrated: a SQLite file in tmp_path,
    or a fresh schema of the PostgreSQL database GRAFTMATCH_TEST_POSTGRES_URL (as its
    search_path, in time zone ZONE; dropped afterwards). Every test that opens the graftmatch
    database takes this fixture, so it runs on both backends."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gm.sqlite'}"
        return
    if not POSTGRES_URL:
        pytest.skip(POSTGRES_SKIPPED)
    from sqlalchemy.engine import make_url

    schema = f"test_{uuid.uuid4().hex[:16]}"
    run_sql(POSTGRES_URL, f"CREATE SCHEMA {schema}")
    options = f"-csearch_path={schema} -ctimezone={ZONE}"
    url = make_url(POSTGRES_URL).update_query_dict({"options": options})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        run_sql(POSTGRES_URL, f"DROP SCHEMA {schema} CASCADE")
