"""The audit trail: record a row, verify the hash chain, export as FHIR AuditEvents.

Rows say who (username, role, centre), what (an action of
:data:`graftmatch.access.roles.ACTIONS` or a login/admin verb), which record (a patient's
centre and pseudonym, a username, a token id), when (UTC), from where (``source``) and the
outcome, never HLA typings or clinical values: ``detail`` holds an error's class name only,
since messages may quote the values refused. The table is only ever appended to.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select

from graftmatch.access.chain import FIELDS, GENESIS, fhir_audit_event, row_hash, verify
from graftmatch.access.roles import Identity, require
from graftmatch.database import Database
from graftmatch.database.tables import audit
from graftmatch.errors import GraftmatchError
from graftmatch.pathway.patients import PatientNotFound

_MAX_DETAIL = 200


def outcome_of(exc: BaseException | None) -> tuple[str, str | None]:
    """The outcome and detail of a call that raised ``exc`` (None: it succeeded)."""
    from graftmatch.access.roles import AccessDenied

    if exc is None:
        return "success", None
    if isinstance(exc, AccessDenied):
        return "refused", exc.action
    if isinstance(exc, PatientNotFound):
        return "not-found", None
    return "failure", type(exc).__name__


def append(conn: Connection, identity: Identity, action: str, record: str | None = None, *,
           outcome: str = "success", detail: str | None = None,
           when: dt.datetime | None = None, role: str | None = None) -> int:
    """Append one row inside the caller's write transaction; returns its ``seq``. ``role``
    overrides the identity's (``unknown`` for a login under a name without an account)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE audit IN SHARE ROW EXCLUSIVE MODE")
    last = conn.execute(select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc())
                        .limit(1)).first()
    seq, prev = (1, GENESIS) if last is None else (last.seq + 1, last.hash)
    row: dict[str, Any] = {
        "seq": seq, "at": (when or dt.datetime.now(dt.UTC)).isoformat(timespec="microseconds"),
        "actor": identity.username, "role": role or identity.role_name, "centre": identity.centre,
        "action": action, "record": record[:200] if record else None,
        "source": identity.source[:100], "outcome": outcome,
        "detail": detail[:_MAX_DETAIL] if detail else None}
    conn.execute(insert(audit).values(**row, prev_hash=prev, hash=row_hash(prev, row)))
    return seq


def record(db: Database, identity: Identity, action: str, record: str | None = None, *,
           outcome: str = "success", detail: str | None = None, role: str | None = None) -> int:
    """Append one row in its own transaction."""
    with db.begin() as conn:
        return append(conn, identity, action, record, outcome=outcome, detail=detail,
                      role=role)


class Note:
    """The pending row of an :func:`audited` call: a change writes it inside its own
    transaction (:meth:`write`), so the change and its row commit, or roll back, together."""

    def __init__(self, identity: Identity, action: str, record_id: str | None) -> None:
        self.identity, self.action, self.record_id = identity, action, record_id
        self.written = False

    def write(self, conn: Connection) -> None:
        append(conn, self.identity, self.action, self.record_id)
        self.written = True


@contextmanager
def audited(db: Database, identity: Identity, action: str, record_id: str | None
            ) -> Iterator[Note]:
    """Run the block and write its row: a change inside its transaction (``note.write``), a
    read after it; on a failure (refused, not found, invalid) in a transaction of its own,
    then let the error go on."""
    note = Note(identity, action, record_id)
    try:
        yield note
    except GraftmatchError as exc:
        outcome, detail = outcome_of(exc)
        record(db, identity, action, record_id, outcome=outcome, detail=detail)
        raise
    if not note.written:
        record(db, identity, action, record_id)


@dataclass(frozen=True)
class Verification:
    rows: int
    head_hash: str
    problems: tuple[str, ...]

    @property
    def intact(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "head_hash": self.head_hash, "intact": self.intact,
                "problems": list(self.problems)}


def _rows(conn: Connection) -> Iterator[dict[str, Any]]:
    columns = [audit.c[f] for f in (*FIELDS, "prev_hash", "hash")]
    for r in conn.execute(select(*columns).order_by(audit.c.seq)):
        yield dict(r._mapping)


def verify_chain(db: Database, caller: Identity) -> Verification:
    """Check the whole chain; every problem names its row."""
    with audited(db, caller, "audit.verify", None):
        require(caller, "audit.read")
        with db.read() as conn:
            rows = list(_rows(conn))
    return Verification(len(rows), rows[-1]["hash"] if rows else GENESIS,
                        tuple(verify(rows)))


def export(db: Database, caller: Identity) -> list[dict[str, Any]]:
    """Every row as a FHIR AuditEvent-shaped document, oldest first."""
    with audited(db, caller, "audit.export", None):
        require(caller, "audit.read")
        with db.read() as conn:
            return [fhir_audit_event(r) for r in _rows(conn)]
