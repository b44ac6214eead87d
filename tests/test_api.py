"""The REST API (issue 13, first slice): every route called as every role answers as the
route table says (2xx permitted, 403 not, 401 without a token), another centre's patient is
not found, errors are RFC 9457 problem details naming the field, every request is audited
with the client address, and `graftmatch serve` answers over a real socket."""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from graftmatch.access.roles import CENTRE_ROLES, PERMISSIONS, Role, shell
from graftmatch.database import Database, upgrade
from graftmatch.database.tables import audit as audit_table
from graftmatch.interfaces.api import ROUTES, create_app
from graftmatch.services import accounts
from graftmatch.services import patients as service
from tests.conftest import REPO
from tests.test_patients import CHILD, TYPING_1

PASSWORD = "correct horse battery staple"
DONOR = "A*01:01+A*02:01^B*08:01+B*44:02^C*07:01+C*05:01^DRB1*03:01+DRB1*04:01"


def _new_record(n: int) -> dict:
    record = copy.deepcopy(CHILD)
    record.pop("typings")
    record.pop("current_typing")
    record["id"] = f"SYN-API-{n:04d}"
    return record


@pytest.fixture
def site(database_url, reader):
    """A migrated database with two centres, the child in SYN-CENTRE, one in SYN-OTHER, and a
    token for one user of each role (centre roles in SYN-CENTRE)."""
    upgrade(database_url)
    db = Database(database_url)
    service.add_centre(db, "SYN-CENTRE", "SYNTHETIC centre")
    service.add_centre(db, "SYN-OTHER", "Another SYNTHETIC centre")
    service.create_patient(db, CHILD, reader)
    service.create_patient(db, {**CHILD, "id": "SYN-OTHER-0001", "centre": "SYN-OTHER"}, reader)
    tokens = {}
    for role in Role:
        name = f"u-{role.value}"
        accounts.create_user(db, shell(), name, f"User {role.value}", role.value, PASSWORD,
                             centre="SYN-CENTRE" if role in CENTRE_ROLES else None)
        tokens[role] = accounts.create_token(db, shell(), name, "test")[1]
    yield database_url, db, tokens
    db.close()


@pytest.fixture
def client(site, reader):
    url, _db, _tokens = site
    with TestClient(create_app(url, reader=lambda: reader)) as test_client:
        yield test_client


def _requests():
    """Route name -> (method, path, json body) of a call that succeeds when permitted."""
    counter = iter(range(1, 1000))
    return {
        "health": lambda: ("GET", "/api/v1/health", None),
        "typings.validate": lambda: ("POST", "/api/v1/typings/validate", {"typing": TYPING_1}),
        "typings.reduce": lambda: ("POST", "/api/v1/typings/reduce",
                                   {"typing": TYPING_1, "level": "G"}),
        "match": lambda: ("POST", "/api/v1/match", {"patient": TYPING_1, "donor": DONOR}),
        "patients.list": lambda: ("GET", "/api/v1/patients", None),
        "patients.get": lambda: ("GET", "/api/v1/patients/SYN-C1Q-0001", None),
        "patients.create": lambda: ("POST", "/api/v1/patients", _new_record(next(counter))),
    }


def _audit(db):
    with db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(select(audit_table)
                                                        .order_by(audit_table.c.seq))]


def test_every_route_as_every_role_answers_as_the_route_table_says(client, site):
    _url, db, tokens = site
    calls = _requests()
    assert set(calls) == set(ROUTES)  # every route of the table is called
    seen = []
    for route, action in ROUTES.items():
        method, path, body = calls[route]()
        answer = client.request(method, path, json=body)
        if action is None:
            assert answer.status_code == 200, (route, answer.text)
            continue
        assert answer.status_code == 401, (route, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        for role in Role:
            method, path, body = calls[route]()
            answer = client.request(method, path, json=body,
                                    headers={"Authorization": f"Bearer {tokens[role]}"})
            expected = action in PERMISSIONS[role]
            assert (200 <= answer.status_code < 300) == expected, (route, role, answer.text)
            if not expected:
                assert answer.status_code == 403, (route, role, answer.text)
                assert answer.json()["status"] == 403
            seen.append((route, role, answer.status_code))
    rows = _audit(db)
    api_rows = [r for r in rows if r["source"] == "testclient"]
    refused = [r for r in api_rows if r["outcome"] == "refused"]
    n_protected = sum(1 for a in ROUTES.values() if a)
    n_forbidden = sum(1 for a in ROUTES.values() if a for role in Role
                      if a not in PERMISSIONS[role])
    assert len([r for r in refused if r["detail"] == "no-token"]) == n_protected
    assert len([r for r in refused if r["action"] != "token.authenticate"
                and r["detail"] != "no-token"]) == n_forbidden
    for row in api_rows:  # never a typing or a clinical value
        text = " ".join(str(v) for v in row.values())
        assert "A*01:01" not in text and "C1QA" not in text and "24.5" not in text


def test_another_centres_patient_is_not_found(client, site):
    _url, _db, tokens = site
    auth = {"Authorization": f"Bearer {tokens[Role.COORDINATOR]}"}
    answer = client.get("/api/v1/patients/SYN-OTHER-0001", headers=auth)
    assert answer.status_code == 404
    assert answer.json()["type"] == "urn:graftmatch:problem:not-found"
    assert client.get("/api/v1/patients/SYN-NOBODY", headers=auth).status_code == 404
    listed = client.get("/api/v1/patients", headers=auth).json()
    assert [p["id"] for p in listed] == ["SYN-C1Q-0001"]


def test_errors_are_problem_details_naming_the_field(client, site):
    _url, _db, tokens = site
    auth = {"Authorization": f"Bearer {tokens[Role.COORDINATOR]}"}
    bad = _new_record(900)
    bad["sex"] = "Q"
    bad["weight_kg"] = -3
    answer = client.post("/api/v1/patients", json=bad, headers=auth)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert {"type", "title", "status", "detail"} <= set(problem)
    assert {e["field"] for e in problem["errors"]} >= {"sex", "weight_kg"}
    assert all(e["reason"] for e in problem["errors"])

    answer = client.post("/api/v1/typings/validate", json={"typing": "A*99:99+A*01:01"},
                         headers=auth)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "typing"

    answer = client.post("/api/v1/match", json={"patient": TYPING_1}, headers=auth)
    assert answer.status_code == 422
    assert answer.json()["errors"] == [{"field": "donor", "reason": "Field required"}]

    answer = client.get("/api/v1/patients", headers={"Authorization": "Bearer nonsense"})
    assert answer.status_code == 401
    assert answer.json()["title"] == "Not authenticated"
    assert client.get("/api/v1/nowhere").headers["content-type"] == "application/problem+json"


def test_openapi_names_every_route(client):
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    assert {"/api/v1/health", "/api/v1/typings/validate", "/api/v1/typings/reduce",
            "/api/v1/match", "/api/v1/patients", "/api/v1/patients/{patient_id}"} <= set(paths)


def test_an_unmigrated_database_is_refused_naming_the_fix(tmp_path):
    from graftmatch.database import DatabaseError

    with pytest.raises(DatabaseError, match="graftmatch db upgrade"):
        create_app(f"sqlite:///{tmp_path / 'none.sqlite'}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_graftmatch_serve_answers_over_a_real_socket(tmp_path):
    url = f"sqlite:///{tmp_path / 'served.sqlite'}"
    upgrade(url)
    db = Database(url)
    service.add_centre(db, "SYN-CENTRE", "SYNTHETIC centre")
    accounts.create_user(db, shell(), "coord", "Coordinator", "coordinator", PASSWORD,
                         centre="SYN-CENTRE")
    secret = accounts.create_token(db, shell(), "coord", "serve test")[1]
    db.close()
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    server = subprocess.Popen([sys.executable, "-m", "graftmatch", "serve", "--database", url,
                               "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}/api/v1"
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"{base}/health", timeout=2)
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("the server did not answer") from None
                time.sleep(0.2)
        assert health.json()["status"] == "ok"
        listed = httpx.get(f"{base}/patients", headers={"Authorization": f"Bearer {secret}"},
                           timeout=10)
        assert listed.status_code == 200 and listed.json() == []
        assert httpx.get(f"{base}/patients", timeout=10).status_code == 401
    finally:
        server.kill()
        server.wait(timeout=30)
        if server.stdout:
            server.stdout.close()
