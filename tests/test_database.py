"""The graftmatch database: created and migrated by 'graftmatch db upgrade' (Alembic, run
programmatically), an unmigrated or newer database refused with the fix, migrations in step
with the tables, and a patient write killed half-way (a real SIGKILL) leaving nothing."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from graftmatch.database import Database, DatabaseError, parse_url, upgrade
from graftmatch.database.tables import centres, current_typings, metadata, patients, typings
from graftmatch.interfaces.cli import app
from graftmatch.pathway.patients import PatientNotFound
from graftmatch.services import patients as service
from tests.conftest import REPO, run_sql
from tests.test_patients import CHILD


@pytest.fixture
def url(database_url):
    return database_url


def _sqlite(url):
    return url.startswith("sqlite")


def test_upgrade_creates_a_private_database_at_the_head_revision(tmp_path, url):
    assert upgrade(url) == (None, "0002")
    assert upgrade(url) == ("0002", "0002")  # twice changes nothing
    if _sqlite(url):
        path = tmp_path / "gm.sqlite"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with Database(url) as db:
        assert db.revision() == "0002"


def test_the_migrations_build_exactly_the_tables(url):
    upgrade(url)
    with Database(url) as db, db.read() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_a_missing_or_unmigrated_database_is_refused_with_the_fix(tmp_path, url):
    if _sqlite(url):
        with pytest.raises(DatabaseError, match=r"^no graftmatch database at .*gm\.sqlite: "
                                                r"run 'graftmatch db upgrade' to create it$"):
            Database(url)
        (tmp_path / "gm.sqlite").touch()
    else:
        missing = make_url(url).set(database="graftmatch_no_such_database")
        with pytest.raises(DatabaseError, match=r"failed: .*graftmatch_no_such_database"):
            Database(missing.render_as_string(hide_password=False))
    with pytest.raises(DatabaseError, match=r" is not set up: run 'graftmatch db upgrade'$"):
        Database(url)
    run_sql(url, "CREATE TABLE someone_elses (x INTEGER)")
    with pytest.raises(DatabaseError, match=r"holds tables but no graftmatch schema revision: "
                                            r"run 'graftmatch db upgrade'"):
        Database(url)


def test_a_newer_database_is_refused_and_never_downgraded(url):
    upgrade(url)
    run_sql(url, "UPDATE alembic_version SET version_num = '0099'")
    message = (r"is at schema revision '0099', newer than this graftmatch knows \(up to "
               r"'0002'\): upgrade graftmatch, or use another database$")
    with pytest.raises(DatabaseError, match=message):
        Database(url)
    with pytest.raises(DatabaseError, match=message):
        upgrade(url)
    assert run_sql(url, "SELECT version_num FROM alembic_version") == [("0099",)]


def test_database_urls():
    assert parse_url("postgresql+psycopg://gm:secret@db.example/gm").drivername == (
        "postgresql+psycopg")
    for bad, reason in (("mysql://x/y", "driver 'mysql' is not supported"),
                        ("postgresql://x/y", r"\(write postgresql\+psycopg://...\)"),
                        ("sqlite://", "in-memory SQLite database keeps nothing"),
                        ("not a url", "not a URL")):
        with pytest.raises(DatabaseError, match=reason):
            parse_url(bad)


def test_the_password_of_a_url_is_never_shown():
    with pytest.raises(DatabaseError) as caught:
        parse_url("mysql://gm:secret@db/gm")
    assert "secret" not in str(caught.value)
    from graftmatch.database import shown

    assert "secret" not in shown(parse_url("postgresql+psycopg://gm:secret@db/gm"))


WRITE_SCRIPT = """
import json, sys, time
from sqlalchemy import event
from graftmatch.database import Database
from graftmatch.nomenclature.release import load_index
from graftmatch.services import patients as service
from graftmatch.typing.parser import TypingReader
url, what, record = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
db = Database(url)
pause = "INSERT INTO current_typings" if what == "create" else "UPDATE patients SET version"
@event.listens_for(db.engine, "after_cursor_execute")
def _stop(conn, cursor, statement, *_):
    if statement.startswith(pause):  # the rest of the write is in the open transaction
        print("writing", flush=True)
        time.sleep(60)
if what == "create":
    service.create_patient(db, record, TypingReader(load_index()))
else:
    service.update_patient(db, record["id"], {"weight_kg": 99.0})
print("finished", flush=True)
"""


def _killed_during(url, what, record):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", WRITE_SCRIPT, url, what, json.dumps(record)],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _counts(db):
    with db.read() as conn:
        return tuple(conn.execute(select(func.count()).select_from(t)).scalar_one()
                     for t in (patients, typings, current_typings))


def test_a_killed_patient_write_leaves_nothing_half_written(url, reader):
    upgrade(url)
    with Database(url) as db:
        service.add_centre(db, "SYN-CENTRE", "SYNTHETIC centre")
        # Killed after the patient and its typing were inserted, choosing the current one.
        _killed_during(url, "create", CHILD)
        assert _counts(db) == (0, 0, 0)
        with pytest.raises(PatientNotFound):
            service.get_patient(db, CHILD["id"])
        before = service.create_patient(db, CHILD, reader)  # running it again does the job
        assert _counts(db) == (1, 1, 1)
        # Killed after the new weight and version were written, before the commit.
        _killed_during(url, "update", CHILD)
        assert service.get_patient(db, CHILD["id"]) == before
        assert service.update_patient(db, CHILD["id"], {"weight_kg": 99.0}).version == 2


def test_the_commands(tmp_path, monkeypatch, url):
    monkeypatch.setenv("GRAFTMATCH_HOME", str(tmp_path / "home"))
    if _sqlite(url):  # the default: a file in GRAFTMATCH_HOME
        monkeypatch.delenv("GRAFTMATCH_DATABASE", raising=False)
    else:
        monkeypatch.setenv("GRAFTMATCH_DATABASE", url)
    runner = CliRunner()

    def run(*args):
        return runner.invoke(app, list(args))

    refused = run("patients", "list")
    assert refused.exit_code == 2 and "run 'graftmatch db upgrade'" in refused.output
    done = run("db", "upgrade")
    assert done.exit_code == 0 and "migrated from nothing to schema revision 0002" in (
        " ".join(done.output.split()))  # a long URL wraps the line
    assert (tmp_path / "home" / "graftmatch.sqlite").is_file() == _sqlite(url)
    assert run("centres", "add", "SYN-CENTRE", "SYNTHETIC centre").exit_code == 0
    record = {k: v for k, v in CHILD.items() if k not in ("typings", "current_typing")}
    (tmp_path / "child.json").write_text(json.dumps(record))
    added = run("patients", "add", "--file", str(tmp_path / "child.json"), "--weight", "25")
    assert added.exit_code == 0, added.output
    assert "SYN-C1Q-0001" in added.output and "(SYNTHETIC)" in added.output
    typed = run("patients", "typing", "SYN-C1Q-0001", "--gl", CHILD["typings"][0]["gl"],
                "--laboratory", "SYN HLA lab", "--date", "2021-03-01", "--method", "SSO",
                "--resolution", "intermediate", "--current", "--json")
    assert typed.exit_code == 0, typed.output
    doc = json.loads(typed.output)
    assert (doc["current_typing"], doc["weight_kg"], doc["typings"][0]["release"]) == (
        1, 25.0, "3.58.0")
    listed = json.loads(run("patients", "list", "--centre", "SYN-CENTRE", "--json").output)
    assert [(p["id"], p["typings"], p["current_typing"]) for p in listed] == [
        ("SYN-C1Q-0001", 1, 1)]
    shown = run("patients", "show", "SYN-C1Q-0001")
    assert shown.exit_code == 0 and "C1q deficiency" in shown.output and "<1 mg/dL" in (
        shown.output)
    bad = run("patients", "add", "--file", str(tmp_path / "child.json"), "--id", "SYN-2",
              "--sex", "Q", "--weight", "0")
    assert bad.exit_code == 1
    assert "sex: 'Q' is not one of 'F', 'M' or 'U'" in bad.output
    assert "weight_kg: 0 kg is outside the plausible 0.3 to 300 kg" in bad.output
    bad_json = json.loads(run("patients", "add", "--file", str(tmp_path / "child.json"),
                              "--sex", "Q", "--json").output)
    assert bad_json["problems"] == [{"field": "sex", "reason": "'Q' is not one of 'F', 'M' "
                                                              "or 'U'"}]
    other = run("patients", "show", "SYN-C1Q-0001", "--centre", "SYN-OTHER")
    assert other.exit_code == 1 and "no patient 'SYN-C1Q-0001' in centre 'SYN-OTHER'" in (
        other.output)


def test_upgrades_at_once_queue(url):
    """Several 'graftmatch db upgrade' at the same time: one migrates, the others wait and
    find the schema at head (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock)."""
    with ThreadPoolExecutor(3) as pool:
        done = list(pool.map(lambda _: upgrade(url), range(3)))
    assert sorted(done, key=lambda d: d[0] or "") == [(None, "0002"), ("0002", "0002"),
                                                       ("0002", "0002")]
    with Database(url) as db:
        assert db.revision() == "0002"


def test_a_database_error_names_no_values(url):
    """The driver's reason only: neither SQLAlchemy's parameters nor PostgreSQL's DETAIL line
    (which repeats the key's values)."""
    upgrade(url)
    with Database(url) as db:
        service.add_centre(db, "SYN-CENTRE", "SYNTHETIC centre")
        with pytest.raises(DatabaseError) as caught, db.begin() as conn:
            conn.execute(centres.insert().values(code="SYN-CENTRE", name="SYN-SECRET-NAME",
                                                 created_at=dt.datetime.now(dt.UTC)))
    message = str(caught.value)
    assert "unique" in message.lower().replace("duplicate key", "unique")
    assert "SYN-CENTRE" not in message and "SYN-SECRET-NAME" not in message
