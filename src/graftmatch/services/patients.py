"""Patients as the transplant team keeps them: create, add a typing, choose the current
typing, read, list by centre, update.

Plain functions over an open :class:`~graftmatch.database.Database`, taking plain data (a
mapping, e.g. parsed JSON) or models and returning models of
:mod:`graftmatch.pathway.patients`; they print nothing and raise
:class:`~graftmatch.errors.GraftmatchError` subclasses whose messages name the field. Each
change is one transaction.

``caller`` is who calls (:class:`~graftmatch.access.roles.Identity`; None: the local shell
of the CLI, with every permission and every centre). Each function checks the caller's
permission in :data:`graftmatch.access.roles.PERMISSIONS`, limits it to the caller's centre,
and writes an audit row (who, action, which patient, outcome; never the record's values),
whatever the outcome. ``centre`` narrows the scope further; a patient of another centre than
the caller's (or than ``centre``) is "not found", exactly like one that does not exist.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, Row, func, insert, select, update

from graftmatch.access.roles import Identity, require, scope, shell
from graftmatch.database import Database, DatabaseError
from graftmatch.database.tables import centres, current_typings, patients, typings
from graftmatch.errors import GraftmatchError
from graftmatch.pathway.patients import (
    EDITABLE,
    CentreCode,
    HlaTyping,
    Patient,
    PatientError,
    PatientFields,
    PatientInput,
    PatientNotFound,
    ShortText,
    TypingInput,
    check_typing_date,
    read_typing,
    validate,
)
from graftmatch.services.audit import audited
from graftmatch.typing.parser import TypingReader

STORED = {"stored": True}


class CentreError(GraftmatchError):
    """A centre that does not exist or cannot be added."""


class Centre(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: CentreCode
    name: ShortText
    created_at: dt.datetime


class PatientSummary(BaseModel):
    """A line of a patient list."""

    model_config = ConfigDict(frozen=True)

    id: str
    centre: str
    sex: str
    birth_date: dt.date
    disease: str
    typings: int
    current_typing: int | None
    synthetic: bool


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- centres --------------------------------------------------------------------------------


def add_centre(db: Database, code: str, name: str, *, caller: Identity | None = None
               ) -> Centre:
    who = caller or shell()
    with audited(db, who, "centres.manage", f"centre {code}") as note:
        require(who, "centres.manage")
        centre = validate(Centre, {"code": code, "name": name, "created_at": _now()})
        try:
            with db.begin() as conn:
                conn.execute(insert(centres).values(**centre.model_dump()))
                note.write(conn)
        except DatabaseError:
            if _centre_id(db, centre.code) is not None:
                raise CentreError(f"centre {centre.code!r} exists already") from None
            raise
        return centre


def list_centres(db: Database) -> list[Centre]:
    with db.read() as conn:
        rows = conn.execute(select(centres.c.code, centres.c.name, centres.c.created_at)
                            .order_by(centres.c.code)).all()
    return [Centre(code=r.code, name=r.name, created_at=_utc(r.created_at)) for r in rows]


def _centre_id(db: Database, code: str) -> int | None:
    with db.read() as conn:
        return conn.execute(select(centres.c.id).where(centres.c.code == code)).scalar()


def _require_centre(conn: Connection, code: str) -> int:
    found = conn.execute(select(centres.c.id).where(centres.c.code == code)).scalar()
    if found is None:
        raise PatientError([("centre", f"{code!r} is not a centre of this database; add it "
                                       "with 'graftmatch centres add CODE NAME'")])
    return int(found)


# --- patients -------------------------------------------------------------------------------


def create_patient(db: Database, data: Mapping[str, Any] | PatientInput, reader: TypingReader,
                   *, centre: str | None = None, caller: Identity | None = None
                   ) -> Patient:
    """A new patient, with the typings given (read against ``reader``'s release) and, if
    ``current_typing`` names one, its current typing."""
    who = caller or shell()
    with audited(db, who, "patients.write", _record_id(data, centre)) as note:
        require(who, "patients.write")
        if _has_typings(data):
            require(who, "typings.write")
        centre = who.centre or centre
        if isinstance(data, Mapping) and centre is not None and "centre" not in data:
            data = {**data, "centre": centre}
        record = data if isinstance(data, PatientInput) else validate(PatientInput, data,
                                                                       reader=reader)
        if centre is not None and record.centre != centre:
            raise PatientError([("centre", f"{record.centre!r} is not your centre")])
        read = [read_typing(t, reader, number=n) for n, t in enumerate(record.typings, 1)]
        now = _now()
        with db.begin() as conn:
            centre_id = _require_centre(conn, record.centre)
            if _patient_row(conn, record.id, record.centre) is not None:
                raise PatientError([("id", f"{record.id!r} exists already in centre "
                                           f"{record.centre!r}")])
            fields = record.model_dump(mode="json", include=set(EDITABLE))
            pid = conn.execute(insert(patients).values(
                centre_id=centre_id, pseudonym=record.id, **{**fields, "birth_date":
                                                             record.birth_date},
                version=1, created_at=now, updated_at=now).returning(patients.c.id)).scalar_one()
            ids = [_insert_typing(conn, pid, t) for t in read]
            if record.current_typing is not None:
                _set_current(conn, pid, ids[record.current_typing - 1], now)
            note.write(conn)
            return _load(conn, pid)


def add_typing(db: Database, patient_id: str, data: Mapping[str, Any] | TypingInput,
               reader: TypingReader, *, current: bool = False, centre: str | None = None,
               caller: Identity | None = None) -> Patient:
    """Add a typing (numbered after the patient's others); it becomes the current typing only
    when asked (``current=True``)."""
    who = caller or shell()
    with audited(db, who, "typings.write", _record_id(patient_id, centre)) as note:
        require(who, "typings.write")
        centre = _scope(who, centre, patient_id)
        typing_in = data if isinstance(data, TypingInput) else validate(TypingInput, data,
                                                                         reader=reader)
        with db.begin() as conn:
            row = _find(conn, patient_id, centre, lock=True)
            check_typing_date(typing_in, _load(conn, row.id))
            number = int(conn.execute(select(func.coalesce(func.max(typings.c.number), 0))
                                      .where(typings.c.patient_id == row.id)).scalar_one()) + 1
            tid = _insert_typing(conn, row.id, read_typing(typing_in, reader, number=number))
            if current:
                _set_current(conn, row.id, tid, _now())
            _touch(conn, row)
            note.write(conn)
            return _load(conn, row.id)


def choose_current_typing(db: Database, patient_id: str, number: int, *,
                          centre: str | None = None,
                          caller: Identity | None = None) -> Patient:
    """Make typing ``number`` (1, 2... in order of entry) the patient's current typing."""
    who = caller or shell()
    with audited(db, who, "typings.write", _record_id(patient_id, centre)) as note:
        require(who, "typings.write")
        centre = _scope(who, centre, patient_id)
        with db.begin() as conn:
            row = _find(conn, patient_id, centre, lock=True)
            tid = conn.execute(select(typings.c.id).where(typings.c.patient_id == row.id,
                                                          typings.c.number == number)).scalar()
            if tid is None:
                count = conn.execute(select(func.count()).where(
                    typings.c.patient_id == row.id)).scalar_one()
                raise PatientError([("current_typing", f"{number} names no typing of patient "
                                                       f"{patient_id!r} (it has {count})")])
            _set_current(conn, row.id, tid, _now())
            _touch(conn, row)
            note.write(conn)
            return _load(conn, row.id)


def get_patient(db: Database, patient_id: str, *, centre: str | None = None,
                caller: Identity | None = None) -> Patient:
    who = caller or shell()
    with audited(db, who, "patients.read", _record_id(patient_id, centre)):
        require(who, "patients.read")
        centre = _scope(who, centre, patient_id)
        with db.read() as conn:
            return _load(conn, _find(conn, patient_id, centre).id)


def list_patients(db: Database, *, centre: str | None = None,
                  caller: Identity | None = None) -> list[PatientSummary]:
    """The patients of ``centre`` (all centres when None), by centre and id."""
    who = caller or shell()
    with audited(db, who, "patients.read", f"patients of {centre or who.centre or 'every centre'}"):
        require(who, "patients.read")
        centre, visible = scope(who, centre)
        if not visible:
            return []
        count = (select(func.count()).where(typings.c.patient_id == patients.c.id)
                 .correlate(patients).scalar_subquery())
        current = (select(typings.c.number).join(current_typings,
                                                current_typings.c.typing_id == typings.c.id)
                   .where(current_typings.c.patient_id == patients.c.id)
                   .correlate(patients).scalar_subquery())
        query = (select(patients, centres.c.code.label("centre_code"), count.label("n_typings"),
                        current.label("current_number"))
                 .join(centres, centres.c.id == patients.c.centre_id)
                 .order_by(centres.c.code, patients.c.pseudonym))
        if centre is not None:
            query = query.where(centres.c.code == centre)
        with db.read() as conn:
            rows = conn.execute(query).all()
        out = []
        for r in rows:
            fields = _fields(r)
            out.append(PatientSummary(id=fields.id, centre=fields.centre, sex=fields.sex.value,
                                      birth_date=fields.birth_date,
                                      disease=fields.diagnosis.disease_name,
                                      typings=r.n_typings, current_typing=r.current_number,
                                      synthetic=fields.synthetic))
        return out


def update_patient(db: Database, patient_id: str, changes: Mapping[str, Any], *,
                   centre: str | None = None, version: int | None = None,
                   caller: Identity | None = None) -> Patient:
    """Change fields of the record (not the id, the centre or the typings): the whole record
    is checked again. ``version``, when given, must be the record's (a change made meanwhile
    by someone else is refused, not overwritten)."""
    who = caller or shell()
    with audited(db, who, "patients.write", _record_id(patient_id, centre)) as note:
        require(who, "patients.write")
        centre = _scope(who, centre, patient_id)
        fixed = sorted(set(changes) - set(EDITABLE))
        if fixed:
            raise PatientError([(name, "cannot be changed by an update" if name in (
                "id", "centre", "typings", "current_typing") else "is not a field of this record")
                                for name in fixed])
        with db.begin() as conn:
            row = _find(conn, patient_id, centre, lock=True)
            stored = _load(conn, row.id)
            if version is not None and version != stored.version:
                raise PatientError([("version", f"the record is at version {stored.version}, "
                                                f"not {version}: it was changed meanwhile; "
                                                "read it again")])
            merged = {**stored.model_dump(mode="json", include={"id", "centre", *EDITABLE}),
                      **changes}
            record = validate(PatientFields, merged)
            for typing_ in stored.typings:
                check_typing_date(typing_, record, path=f"typings[{typing_.number - 1}]")
            conn.execute(update(patients).where(patients.c.id == row.id).values(
                **{**record.model_dump(mode="json", include=set(EDITABLE)),
                   "birth_date": record.birth_date}))
            _touch(conn, row)
            note.write(conn)
            return _load(conn, row.id)


# --- scope and audit --------------------------------------------------------------------------


def _record_id(data: Any, centre: str | None) -> str:
    """The audit's name of a patient: centre and pseudonym, nothing else of the record."""
    if isinstance(data, str):
        pid: Any = data
    elif isinstance(data, PatientInput):
        pid, centre = data.id, data.centre
    elif isinstance(data, Mapping):
        pid, centre = data.get("id"), data.get("centre", centre)
    else:
        pid = None
    return f"patient {str(centre)[:32] if centre else '?'}/{str(pid)[:64] if pid else '?'}"


def _has_typings(data: Any) -> bool:
    if isinstance(data, PatientInput):
        return bool(data.typings)
    return isinstance(data, Mapping) and bool(data.get("typings"))


def _scope(who: Identity, centre: str | None, patient_id: str) -> str | None:
    scoped, visible = scope(who, centre)
    if not visible:
        raise PatientNotFound(f"no patient {patient_id!r} in centre {centre!r}")
    return scoped


# --- rows and models --------------------------------------------------------------------------


def _patient_row(conn: Connection, patient_id: str, centre: str) -> Row[Any, Any] | None:
    return conn.execute(select(patients.c.id, patients.c.version)
                        .join(centres, centres.c.id == patients.c.centre_id)
                        .where(patients.c.pseudonym == patient_id,
                               centres.c.code == centre)).first()


def _find(conn: Connection, patient_id: str, centre: str | None, *, lock: bool = False
          ) -> Row[Any, Any, Any]:
    """The patient's row; ``lock`` (a write) holds it until the transaction ends, so that two
    writers to one patient queue on PostgreSQL as they do on SQLite (``BEGIN IMMEDIATE``)
    instead of numbering the same typing twice or failing on the version."""
    query = (select(patients.c.id, patients.c.version, centres.c.code)
             .join(centres, centres.c.id == patients.c.centre_id)
             .where(patients.c.pseudonym == patient_id))
    if centre is not None:
        query = query.where(centres.c.code == centre)
    if lock:
        query = query.with_for_update(of=patients)
    rows = conn.execute(query).all()
    if not rows:
        where = f" in centre {centre!r}" if centre is not None else ""
        raise PatientNotFound(f"no patient {patient_id!r}{where}")
    if len(rows) > 1:
        raise PatientError([("centre", f"patient {patient_id!r} is in several centres ("
                                       f"{', '.join(sorted(r.code for r in rows))}): give the "
                                       "centre")])
    return rows[0]


def _touch(conn: Connection, row: Row[Any, Any, Any]) -> None:
    """One more version; refused if another writer changed the record since it was read."""
    done = conn.execute(update(patients).where(patients.c.id == row.id,
                                               patients.c.version == row.version)
                        .values(version=row.version + 1, updated_at=_now()))
    if done.rowcount != 1:
        raise PatientError([("version", "the record was changed meanwhile; try again")])


def _insert_typing(conn: Connection, patient_pk: int, typing_: HlaTyping) -> int:
    values = typing_.model_dump(exclude={"date"})
    return int(conn.execute(insert(typings).values(patient_id=patient_pk,
                                                   typing_date=typing_.date, **values)
                            .returning(typings.c.id)).scalar_one())


def _set_current(conn: Connection, patient_pk: int, typing_id: int, when: dt.datetime) -> None:
    chosen = conn.execute(select(current_typings.c.patient_id).where(
        current_typings.c.patient_id == patient_pk)).first()
    if chosen is None:
        conn.execute(insert(current_typings).values(patient_id=patient_pk, typing_id=typing_id,
                                                    chosen_at=when))
    else:
        conn.execute(update(current_typings).where(current_typings.c.patient_id == patient_pk)
                     .values(typing_id=typing_id, chosen_at=when))


def _utc(value: dt.datetime) -> dt.datetime:
    """In UTC: SQLite hands back naive datetimes (graftmatch writes UTC only), PostgreSQL
    aware ones in the session's time zone."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _fields(r: Any) -> PatientFields:
    return PatientFields.model_validate(
        {"id": r.pseudonym, "centre": r.centre_code, "sex": r.sex, "birth_date": r.birth_date,
         "weight_kg": r.weight_kg, "abo": r.abo, "rh": r.rh, "cmv": r.cmv,
         "population": r.population, "diagnosis": r.diagnosis, "synthetic": r.synthetic},
        context=STORED)


def _load(conn: Connection, patient_pk: int) -> Patient:
    r = conn.execute(select(patients, centres.c.code.label("centre_code"))
                     .join(centres, centres.c.id == patients.c.centre_id)
                     .where(patients.c.id == patient_pk)).one()
    rows = conn.execute(select(typings).where(typings.c.patient_id == patient_pk)
                        .order_by(typings.c.number)).all()
    current = conn.execute(select(typings.c.number).join(
        current_typings, current_typings.c.typing_id == typings.c.id)
        .where(current_typings.c.patient_id == patient_pk)).scalar()
    return Patient.model_validate(
        {**_fields(r).model_dump(), "version": r.version, "created_at": _utc(r.created_at),
         "updated_at": _utc(r.updated_at), "current_typing": current,
         "typings": [{"gl": t.gl, "laboratory": t.laboratory, "date": t.typing_date,
                      "method": t.method, "resolution": t.resolution, "number": t.number,
                      "release": t.release, "notices": t.notices,
                      "entered_at": _utc(t.entered_at)} for t in rows]},
        context=STORED)
