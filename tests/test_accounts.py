"""Accounts, roles, centres and the audit trail (issue 13, step 2), as the transplant team
would say it: every role may do exactly what the permission table says; a coordinator never
sees another centre's patient; a guessed password locks the account; a revoked token is
refused; no password hash ever comes out; the audit trail carries no typing or clinical value
and names a changed, removed or inserted row; injection strings stay inert."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from alembic import command
from sqlalchemy import insert, select
from typer.testing import CliRunner

from graftmatch.access.chain import GENESIS, row_hash
from graftmatch.access.roles import (
    ACTIONS,
    CENTRE_ROLES,
    PERMISSIONS,
    AccessDenied,
    Identity,
    Role,
    allowed,
    require,
    shell,
)
from graftmatch.access.secrets import PasswordRefused, Throttle
from graftmatch.database import Database, _alembic_config, upgrade
from graftmatch.database.tables import audit as audit_table
from graftmatch.database.tables import centres, patients, users
from graftmatch.interfaces.cli import app
from graftmatch.pathway.patients import PatientError, PatientNotFound
from graftmatch.services import accounts, audit
from graftmatch.services import patients as service
from tests.conftest import run_sql
from tests.test_patients import CHILD, TYPING_1, _record

PASSWORD = "correct horse battery staple"
SQL = "Robert'); DROP TABLE users;--"
SCRIPT = "<script>alert('x')</script>"


@pytest.fixture
def db_url(database_url):
    """The database under test, by URL: SQLite and PostgreSQL (tests/conftest.py)."""
    return database_url


@pytest.fixture
def db(db_url):
    upgrade(db_url)
    database = Database(db_url)
    service.add_centre(database, "SYN-CENTRE", "SYNTHETIC centre")
    service.add_centre(database, "SYN-OTHER", "Another SYNTHETIC centre")
    yield database
    database.close()


def _who(role: Role, centre: str | None = "SYN-CENTRE") -> Identity:
    return Identity(f"u-{role.value}", role, centre if role in CENTRE_ROLES else None, "test")


def _audit_rows(db):
    with db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(select(audit_table)
                                                        .order_by(audit_table.c.seq))]


# --- roles and the permission table -----------------------------------------------------------


def _operations(db, reader):
    """Every action of the permission table, as a call of the service that does it (actions
    whose service comes in a later step are checked through ``require``)."""
    return {
        "patients.read": lambda who: service.get_patient(db, "SYN-C1Q-0001", caller=who),
        "patients.write": lambda who: service.update_patient(db, "SYN-C1Q-0001",
                                                             {"weight_kg": 25.0}, caller=who),
        "typings.write": lambda who: service.choose_current_typing(db, "SYN-C1Q-0001", 1,
                                                                   caller=who),
        "users.manage": lambda who: accounts.list_users(db, who),
        "centres.manage": lambda who: service.add_centre(db, f"C-{who.role_name}", "x",
                                                         caller=who),
        "audit.read": lambda who: audit.verify_chain(db, who),
    }


def test_every_role_may_do_exactly_what_the_permission_table_says(db, reader):
    service.create_patient(db, CHILD, reader)
    operations = _operations(db, reader)
    assert set(PERMISSIONS) == set(Role)
    assert all(actions <= set(ACTIONS) for actions in PERMISSIONS.values())
    for role in Role:
        who = _who(role)
        for action in ACTIONS:
            call = operations.get(action, lambda who, action=action: require(who, action))
            if action in PERMISSIONS[role]:
                call(who)
            else:
                with pytest.raises(AccessDenied, match=rf"^permission: role '{role.value}' "
                                                       rf"may not {action}$"):
                    call(who)
            assert allowed(who, action) == (action in PERMISSIONS[role])
    refused = [r for r in _audit_rows(db) if r["outcome"] == "refused"]
    expected = sum(len(set(operations) - PERMISSIONS[role]) for role in Role)
    assert len(refused) == expected  # every refused call is on record, with its action
    assert {r["detail"] for r in refused} <= set(ACTIONS)


def test_the_shell_may_do_everything_and_is_audited_as_shell(db, reader):
    assert all(allowed(shell(), action) for action in ACTIONS)
    service.create_patient(db, CHILD, reader)
    last = _audit_rows(db)[-1]
    assert (last["actor"], last["role"], last["source"], last["action"], last["record"],
            last["outcome"]) == ("shell", "shell", "cli", "patients.write",
                                 "patient SYN-CENTRE/SYN-C1Q-0001", "success")


# --- centres ----------------------------------------------------------------------------------


def test_a_coordinator_of_one_centre_does_not_see_a_patient_of_another(db, reader):
    service.create_patient(db, _record(centre="SYN-OTHER"), reader)
    coordinator = _who(Role.COORDINATOR, "SYN-CENTRE")
    with pytest.raises(PatientNotFound, match=r"^no patient 'SYN-C1Q-0001' in centre "
                                              r"'SYN-CENTRE'$"):
        service.get_patient(db, "SYN-C1Q-0001", caller=coordinator)
    with pytest.raises(PatientNotFound):  # asking for the other centre by name: not found
        service.get_patient(db, "SYN-C1Q-0001", centre="SYN-OTHER", caller=coordinator)
    with pytest.raises(PatientNotFound):
        service.update_patient(db, "SYN-C1Q-0001", {"weight_kg": 1.0}, caller=coordinator)
    assert service.list_patients(db, caller=coordinator) == []
    assert service.list_patients(db, centre="SYN-OTHER", caller=coordinator) == []
    # The coordinator's own centre works, and a new patient lands there.
    service.create_patient(db, {**_record(id="SYN-C1Q-0002"), "typings": [],
                                "current_typing": None}, reader, caller=coordinator)
    assert [p.id for p in service.list_patients(db, caller=coordinator)] == ["SYN-C1Q-0002"]
    with pytest.raises(AccessDenied, match=r"may not typings\.write"):  # typings: the lab's
        service.create_patient(db, _record(id="SYN-C1Q-0004"), reader, caller=coordinator)
    with pytest.raises(PatientError, match="is not your centre"):
        service.create_patient(db, {**_record(id="SYN-C1Q-0003", centre="SYN-OTHER"),
                                    "typings": [], "current_typing": None}, reader,
                               caller=coordinator)
    outcomes = [r["outcome"] for r in _audit_rows(db) if r["actor"] == coordinator.username]
    assert outcomes.count("not-found") == 3


def test_centre_roles_need_a_centre(db):
    with pytest.raises(accounts.AccountError, match=r"^centre: a user of role 'coordinator' "
                                                    r"belongs to a centre$"):
        accounts.create_user(db, shell(), "c1", "C One", "coordinator", PASSWORD)
    with pytest.raises(accounts.AccountError, match=r"^role: one of admin, "):
        accounts.create_user(db, shell(), "c1", "C One", "surgeon", PASSWORD)


# --- logins, passwords and tokens -------------------------------------------------------------


def test_a_guessed_password_locks_the_account_after_the_allowed_failures(db):
    accounts.create_user(db, shell(), "coord", "A coordinator", "coordinator", PASSWORD,
                         centre="SYN-CENTRE")
    rules = Throttle.from_settings()
    start = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    who = accounts.login(db, "coord", PASSWORD, source="10.0.0.1", now=start)
    assert (who.username, who.role, who.centre) == ("coord", Role.COORDINATOR, "SYN-CENTRE")
    for i in range(rules.max_failures):
        with pytest.raises(accounts.LoginRefused, match="wrong username or password"):
            accounts.login(db, "coord", f"guess {i}", source="10.0.0.9",
                           now=start + dt.timedelta(minutes=1, seconds=i))
    locked_at = start + dt.timedelta(minutes=2)
    with pytest.raises(accounts.LoginRefused, match="too many failed attempts"):
        accounts.login(db, "coord", PASSWORD, source="10.0.0.1", now=locked_at)
    later = start + dt.timedelta(minutes=1, seconds=rules.max_failures) + rules.lockout
    assert accounts.login(db, "coord", PASSWORD, source="10.0.0.1",
                          now=later + dt.timedelta(seconds=1)).username == "coord"
    logins = [(r["outcome"], r["detail"], r["source"]) for r in _audit_rows(db)
              if r["action"] == "login"]
    assert logins[0] == ("success", None, "10.0.0.1")
    assert logins[1:1 + rules.max_failures] == [("refused", "wrong-credentials",
                                                 "10.0.0.9")] * rules.max_failures
    assert logins[-2:] == [("refused", "locked", "10.0.0.1"), ("success", None, "10.0.0.1")]


def test_an_unknown_user_or_a_disabled_one_cannot_log_in(db):
    with pytest.raises(accounts.LoginRefused, match="wrong username or password"):
        accounts.login(db, "nobody", PASSWORD, source="cli")
    accounts.create_user(db, shell(), "aud", "An auditor", "auditor", PASSWORD)
    accounts.disable_user(db, shell(), "aud")
    with pytest.raises(accounts.LoginRefused):
        accounts.login(db, "aud", PASSWORD, source="cli")
    rows = [r for r in _audit_rows(db) if r["action"] == "login"]
    assert [(r["actor"], r["role"], r["detail"]) for r in rows] == [
        ("nobody", "unknown", "wrong-credentials"), ("aud", "auditor", "disabled")]


def test_weak_passwords_are_refused_by_the_rules(db):
    for weak, reason in (("short", "at least 15 characters"),
                         ("passwordpassword", "too common"), ("a" * 20, "too repetitive"),
                         ("lab-manager-jones", "must not be the username")):
        with pytest.raises(PasswordRefused, match=reason):
            accounts.create_user(db, shell(), "lab-manager-jones", "Jones", "admin", weak)


def test_a_revoked_token_is_refused(db):
    accounts.create_user(db, shell(), "lab-system", "The HLA lab's system", "hla-laboratory",
                         PASSWORD, centre="SYN-CENTRE")
    token, secret = accounts.create_token(db, shell(), "lab-system", "LIMS upload")
    assert secret.startswith("gmt_") and len(secret) > 40
    who = accounts.authenticate_token(db, secret, source="10.1.1.1")
    assert (who.username, who.role, who.centre) == ("lab-system", Role.HLA_LABORATORY,
                                                    "SYN-CENTRE")
    assert accounts.revoke_token(db, shell(), token.id).revoked_at is not None
    with pytest.raises(accounts.LoginRefused, match=r"^token: unknown, revoked"):
        accounts.authenticate_token(db, secret, source="10.1.1.1")
    with pytest.raises(accounts.LoginRefused):
        accounts.authenticate_token(db, "gmt_made-up", source="10.1.1.1")
    text = json.dumps([r for r in _audit_rows(db)], default=str)
    assert secret not in text  # the token never reaches the audit trail
    assert [t.to_dict()["id"] for t in accounts.list_tokens(db, shell())] == [token.id]


def test_password_hashes_never_come_out_of_a_service_or_the_cli(db, db_url):
    user = accounts.create_user(db, shell(), "admin1", "First admin", "admin", PASSWORD)
    with db.read() as conn:
        stored = conn.execute(select(users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    outputs = [json.dumps(user.to_dict()),
               json.dumps([u.to_dict() for u in accounts.list_users(db, shell())]),
               json.dumps(accounts.set_password(db, shell(), "admin1", PASSWORD + "!")
                          .to_dict()),
               json.dumps(accounts.disable_user(db, shell(), "admin1").to_dict())]
    runner = CliRunner()
    for args in (["users", "list", "--json"], ["users", "list"]):
        outputs.append(runner.invoke(app, [*args, "--database", db_url]).output)
    outputs.append(json.dumps(_audit_rows(db), default=str))
    for text in outputs:
        assert "$argon2" not in text and stored[-20:] not in text and PASSWORD not in text


# --- the audit trail --------------------------------------------------------------------------


def test_audit_rows_carry_no_typing_or_clinical_values(db, reader):
    coordinator = _who(Role.COORDINATOR)
    lab = _who(Role.HLA_LABORATORY)
    service.create_patient(db, CHILD, reader)
    service.get_patient(db, "SYN-C1Q-0001", caller=coordinator)
    service.add_typing(db, "SYN-C1Q-0001", {"gl": TYPING_1, "laboratory": "SYN HLA lab",
                                            "date": "2022-01-01", "method": "SSO",
                                            "resolution": "intermediate"}, reader,
                       caller=lab)
    service.update_patient(db, "SYN-C1Q-0001", {"weight_kg": 31.5, "cmv": "positive"},
                           caller=coordinator)
    with pytest.raises(PatientError):  # refused values are not recorded either
        service.update_patient(db, "SYN-C1Q-0001", {"weight_kg": -77.25}, caller=coordinator)
    rows = _audit_rows(db)
    assert len(rows) >= 5
    text = json.dumps(rows, default=str) + json.dumps(audit.export(db, shell()))
    for value in ("A*01:01", "DRB1", "HLA", "c1q", "C1QA", "c.622C>T", "2017-09-14",
                  "24.5", "31.5", "77.25", "positive", "mg/dL", "SYN HLA lab", "CAU"):
        assert value not in text, value
    assert "patient SYN-CENTRE/SYN-C1Q-0001" in text


def test_a_change_and_its_audit_row_commit_together(db, reader, monkeypatch):
    service.create_patient(db, CHILD, reader)
    before = len(_audit_rows(db))

    def no_separate_row(*_args, **_kwargs):
        raise AssertionError("a change's row must be written in the change's transaction")

    monkeypatch.setattr(audit, "record", no_separate_row)
    service.update_patient(db, "SYN-C1Q-0001", {"weight_kg": 25.0})
    accounts.create_user(db, shell(), "admin1", "First admin", "admin", PASSWORD)
    rows = _audit_rows(db)
    assert [r["action"] for r in rows[before:]] == ["patients.write", "users.create"]


def _chained(db):
    service.add_centre(db, "SYN-THIRD", "A third SYNTHETIC centre")
    for _ in range(4):
        service.list_centres(db)
        audit.record(db, shell(), "patients.read", "patient SYN-CENTRE/X")
    rows = _audit_rows(db)
    assert audit.verify_chain(db, shell()).intact
    return rows


def _sql(db_url, statement):
    run_sql(db_url, statement)


def test_a_changed_audit_row_is_detected_and_named(db, db_url):
    rows = _chained(db)
    _sql(db_url, "UPDATE audit SET actor = 'someone-else' WHERE seq = 3")
    result = audit.verify_chain(db, shell())
    assert result.problems[0] == "row 3: changed (its hash does not match its content)"
    done = CliRunner().invoke(app, ["audit", "verify", "--database", db_url])
    assert done.exit_code == 1 and "row 3: changed" in done.output
    assert len(rows) >= 5


def test_a_removed_audit_row_is_detected_and_named(db, db_url):
    _chained(db)
    _sql(db_url, "DELETE FROM audit WHERE seq = 4")
    assert audit.verify_chain(db, shell()).problems[0] == (
        "row 5: the row(s) before it were removed (it does not follow row 3)")


def test_an_inserted_audit_row_is_detected_and_named_even_with_a_valid_hash(db, db_url):
    rows = _chained(db)
    # Make room after row 2 and insert a forged row whose own hash is computed correctly.
    _sql(db_url, "UPDATE audit SET seq = seq + 1000 WHERE seq > 2")
    _sql(db_url, "UPDATE audit SET seq = seq - 999 WHERE seq > 1000")
    forged = {**{k: rows[1][k] for k in rows[1] if k not in ("id", "hash", "prev_hash")},
              "seq": 3, "actor": "intruder"}
    forged["prev_hash"] = rows[1]["hash"]
    forged["hash"] = row_hash(forged["prev_hash"], forged)
    with db.begin() as conn:
        conn.execute(insert(audit_table).values(**forged))
    assert audit.verify_chain(db, shell()).problems[0] == (
        "row 3: inserted (row 4 follows row 2)")


def test_the_export_is_json_lines_of_fhir_audit_events(db, db_url, tmp_path):
    _chained(db)
    target = tmp_path / "audit.jsonl"
    done = CliRunner().invoke(app, ["audit", "export", "--out", str(target),
                                    "--database", db_url])
    assert done.exit_code == 0, done.output
    events = [json.loads(line) for line in target.read_text().splitlines()]
    assert events[0]["resourceType"] == "AuditEvent" and events[0]["id"] == "1"
    assert events[0]["code"]["coding"][0]["code"] == "centres.manage"
    assert events[0]["agent"][0]["who"]["identifier"]["value"] == "shell"
    assert events[0]["outcome"]["code"]["code"] == "0"
    assert events[0]["extension"][2]["valueString"] == GENESIS
    assert all(e["recorded"].endswith("+00:00") for e in events)


def test_a_database_at_r0001_keeps_its_patients_when_migrated(db_url):
    if db_url.startswith("sqlite:///"):
        open(db_url.removeprefix("sqlite:///"), "w").close()  # Database opens existing files
    old = Database(db_url, check=False)
    with old.begin() as conn:
        command.upgrade(_alembic_config(conn), "0001")
        now = dt.datetime.now(dt.UTC)
        cid = conn.execute(insert(centres).values(code="SYN-CENTRE", name="x", created_at=now)
                           .returning(centres.c.id)).scalar_one()
        conn.execute(insert(patients).values(
            centre_id=cid, pseudonym="SYN-OLD-1", sex="F", birth_date=dt.date(2018, 1, 2),
            cmv="negative", diagnosis=CHILD["diagnosis"], synthetic=True, version=1,
            created_at=now, updated_at=now))
    old.close()
    assert upgrade(db_url) == ("0001", "0002")
    with Database(db_url) as db:
        assert [p.id for p in service.list_patients(db)] == ["SYN-OLD-1"]
        assert service.get_patient(db, "SYN-OLD-1").birth_date == dt.date(2018, 1, 2)


# --- injection strings ------------------------------------------------------------------------


def test_injection_strings_are_stored_and_returned_inert_or_refused_by_field(db, db_url,
                                                                            reader):
    user = accounts.create_user(db, shell(), "lab.1", SQL + SCRIPT, "admin", PASSWORD)
    assert user.display_name == SQL + SCRIPT
    assert [u.display_name for u in accounts.list_users(db, shell())] == [SQL + SCRIPT]
    for bad in (SQL, SCRIPT):
        with pytest.raises(accounts.AccountError, match=r"^username: "):
            accounts.create_user(db, shell(), bad, "x", "admin", PASSWORD)
        with pytest.raises(PatientError) as caught:
            service.create_patient(db, _record(id=bad), reader)
        assert caught.value.problems[0][0] == "id"
        with pytest.raises(accounts.LoginRefused):
            accounts.login(db, bad, PASSWORD, source=SCRIPT)
        with pytest.raises(PatientNotFound):
            service.get_patient(db, bad)
    typed = service.create_patient(db, {**CHILD, "typings": [
        {**CHILD["typings"][0], "laboratory": SQL + SCRIPT}]}, reader)
    assert service.get_patient(db, typed.id).typings[0].laboratory == SQL + SCRIPT
    assert audit.verify_chain(db, shell()).intact
    with db.read() as conn:  # the tables are all still there
        assert conn.execute(select(users.c.username)).scalars().all() == ["lab.1"]
    shown = CliRunner().invoke(app, ["users", "list", "--json", "--database", db_url])
    assert json.loads(shown.output)[0]["display_name"] == SQL + SCRIPT


# --- the CLI ----------------------------------------------------------------------------------


def test_the_first_admin_and_tokens_are_made_from_the_shell(db, db_url):
    runner = CliRunner()

    def run(*args, stdin=None):
        return runner.invoke(app, [*args, "--database", db_url], input=stdin)

    added = run("users", "add", "admin1", "--role", "admin", "--password-stdin",
                stdin=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    assert "user admin1 added (admin)" in added.output
    prompted = run("users", "add", "coord", "--role", "coordinator", "--centre", "SYN-CENTRE",
                   stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert prompted.exit_code == 0, prompted.output
    assert PASSWORD not in prompted.output  # the prompt hides it
    assert "No such option" in run("users", "add", "x", "--role", "admin",
                                   "--password", PASSWORD).output
    assert accounts.login(db, "admin1", PASSWORD, source="cli").role == Role.ADMIN
    created = run("users", "token-create", "coord", "--name", "ward PC", "--json")
    token = json.loads(created.output)
    assert accounts.authenticate_token(db, token["token"], source="x").username == "coord"
    listed = run("users", "token-list", "--json")
    assert token["token"] not in listed.output
    assert json.loads(listed.output)[0]["name"] == "ward PC"
    assert run("users", "token-revoke", str(token["id"])).exit_code == 0
    with pytest.raises(accounts.LoginRefused):
        accounts.authenticate_token(db, token["token"], source="x")
    assert run("users", "disable", "coord").exit_code == 0
    assert run("users", "password", "admin1", "--password-stdin",
               stdin="short\n").exit_code == 1
    verified = run("audit", "verify")
    assert verified.exit_code == 0 and "audit trail intact" in verified.output
