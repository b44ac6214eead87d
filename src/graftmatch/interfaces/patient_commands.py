"""``graftmatch db ...``, ``graftmatch centres ...`` and ``graftmatch patients ...``: the
patient store, a thin adapter over :mod:`graftmatch.services.patients`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from graftmatch.database import Database, DatabaseError, parse_url, shown, upgrade
from graftmatch.errors import GraftmatchError
from graftmatch.interfaces.common import EXIT_INVALID, EXIT_SETUP, err, out
from graftmatch.nesting import TooDeep, json_loads
from graftmatch.pathway.patients import Patient, PatientError
from graftmatch.services import patients as service
from graftmatch.services.common import json_text
from graftmatch.services.reference import open_reader

db_app = typer.Typer(help="The graftmatch database (patients): create and migrate it.",
                     no_args_is_help=True)
centres_app = typer.Typer(help="Transplant centres of the database.", no_args_is_help=True)
patients_app = typer.Typer(help="Patient records: add, type, show, list, update.",
                           no_args_is_help=True)

DatabaseOption = Annotated[str | None, typer.Option(
    "--database", help="Database URL (default: GRAFTMATCH_DATABASE, else graftmatch.sqlite in "
    "GRAFTMATCH_HOME); sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON")]
FileOption = Annotated[Path | None, typer.Option(
    "--file", help="The record as JSON (/dev/stdin reads standard input); options given "
    "beside it override its fields")]
CentreOption = Annotated[str | None, typer.Option(
    "--centre", help="Only this centre's patients (a patient of another centre is not found)")]


def _fail(exc: GraftmatchError, as_json: bool = False) -> typer.Exit:
    code = EXIT_SETUP if isinstance(exc, DatabaseError) else EXIT_INVALID
    if as_json:
        doc = exc.to_dict() if isinstance(exc, PatientError) else {"error": str(exc)}
        out.print_json(json_text(doc))
    elif isinstance(exc, PatientError):
        err.print("[bold red]error:[/] the record was refused:", markup=True)
        for path, reason in exc.problems:
            err.print(f"  {escape(path)}: {escape(reason)}", markup=True, soft_wrap=True)
    else:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def _read_json(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        doc = json_loads(path.read_bytes())
    except OSError as exc:
        raise GraftmatchError(f"cannot read {path}: {exc.strerror}") from None
    except (ValueError, TooDeep) as exc:
        raise GraftmatchError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise GraftmatchError(f"{path}: should hold one JSON object (the record's fields)")
    return doc


def _given(**options: Any) -> dict[str, Any]:
    return {key: value for key, value in options.items() if value is not None}


# --- db ---------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(database: DatabaseOption = None) -> None:
    """Create the database, or migrate it to this graftmatch's schema (one transaction)."""
    try:
        before, after = upgrade(database)
        name = shown(parse_url(database))
    except GraftmatchError as exc:
        raise _fail(exc) from None
    if before == after:
        out.print(f"database {name} is up to date (schema revision {after})")
    else:
        out.print(f"database {name} migrated from {before or 'nothing'} to schema revision "
                  f"{after}")


# --- centres ----------------------------------------------------------------------------------


@centres_app.command("add")
def centres_add(
    code: Annotated[str, typer.Argument(help="Short code, e.g. GOSH or SYN-CENTRE")],
    name: Annotated[str, typer.Argument(help="The centre's name")],
    database: DatabaseOption = None,
) -> None:
    """Add a transplant centre."""
    try:
        with Database(database) as db:
            centre = service.add_centre(db, code, name)
    except GraftmatchError as exc:
        raise _fail(exc) from None
    out.print(f"centre {centre.code} added")


@centres_app.command("list")
def centres_list(database: DatabaseOption = None, json_out: JsonOption = False) -> None:
    """List the centres."""
    try:
        with Database(database) as db:
            found = service.list_centres(db)
    except GraftmatchError as exc:
        raise _fail(exc, json_out) from None
    if json_out:
        out.print_json(json.dumps([c.model_dump(mode="json") for c in found]))
        return
    table = Table("code", "name", title="centres")
    for c in found:
        table.add_row(escape(c.code), escape(c.name))
    out.print(table)


# --- patients ---------------------------------------------------------------------------------


@patients_app.command("add")
def patients_add(
    file: FileOption = None,
    patient_id: Annotated[str | None, typer.Option("--id", help="Pseudonymous id")] = None,
    centre: Annotated[str | None, typer.Option(help="Centre code")] = None,
    sex: Annotated[str | None, typer.Option(help="F, M or U")] = None,
    birth_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    weight: Annotated[float | None, typer.Option(help="Weight in kg")] = None,
    abo: Annotated[str | None, typer.Option(help="A, B, AB or O")] = None,
    rh: Annotated[str | None, typer.Option(help="+ or -")] = None,
    cmv: Annotated[str | None, typer.Option(help="positive, negative or unknown")] = None,
    population: Annotated[str | None, typer.Option(help="Population (frequency sets)")] = None,
    disease: Annotated[str | None, typer.Option(
        help="c1q-deficiency or other-iei (with --file for variants and results)")] = None,
    iuis_category: Annotated[str | None, typer.Option(help="IUIS category, e.g. complement")]
    = None,
    gene: Annotated[str | None, typer.Option(help="Gene, e.g. C1QA")] = None,
    synthetic: Annotated[bool | None, typer.Option(
        "--synthetic/--real", help="Label the record as made-up data")] = None,
    database: DatabaseOption = None,
    json_out: JsonOption = False,
) -> None:
    """Add a patient from a JSON record and/or options; its typings (in the file) are read
    against the active IPD-IMGT/HLA release."""
    try:
        data = _read_json(file)
        data.update(_given(id=patient_id, centre=centre, sex=sex, birth_date=birth_date,
                           weight_kg=weight, abo=abo, rh=rh, cmv=cmv, population=population,
                           synthetic=synthetic))
        diagnosis = _given(disease=disease, iuis_category=iuis_category, gene=gene)
        if diagnosis:
            base = data.get("diagnosis")
            data["diagnosis"] = {**(base if isinstance(base, dict) else {}), **diagnosis}
        reader = open_reader()
        with Database(database) as db:
            patient = service.create_patient(db, data, reader)
    except GraftmatchError as exc:
        raise _fail(exc, json_out) from None
    _show(patient, json_out)


@patients_app.command("typing")
def patients_typing(
    patient_id: Annotated[str, typer.Argument(metavar="ID", help="The patient's id")],
    file: FileOption = None,
    gl: Annotated[str | None, typer.Option(help="The typing (GL String or any form)")] = None,
    laboratory: Annotated[str | None, typer.Option(help="The typing laboratory")] = None,
    date: Annotated[str | None, typer.Option(help="Date typed, YYYY-MM-DD")] = None,
    method: Annotated[str | None, typer.Option(help="NGS, SBT, SSO, SSP, serology, other")]
    = None,
    resolution: Annotated[str | None, typer.Option(help="allele, high, intermediate, low")]
    = None,
    current: Annotated[bool, typer.Option(help="Make it the current typing")] = False,
    centre: CentreOption = None,
    database: DatabaseOption = None,
    json_out: JsonOption = False,
) -> None:
    """Add an HLA typing to a patient (read against the active release); it becomes the
    current typing only with --current."""
    try:
        data = {**_read_json(file), **_given(gl=gl, laboratory=laboratory, date=date,
                                             method=method, resolution=resolution)}
        reader = open_reader()
        with Database(database) as db:
            patient = service.add_typing(db, patient_id, data, reader, current=current,
                                         centre=centre)
    except GraftmatchError as exc:
        raise _fail(exc, json_out) from None
    _show(patient, json_out)


@patients_app.command("current")
def patients_current(
    patient_id: Annotated[str, typer.Argument(metavar="ID", help="The patient's id")],
    number: Annotated[int, typer.Argument(help="The typing's number (see 'patients show')")],
    centre: CentreOption = None,
    database: DatabaseOption = None,
    json_out: JsonOption = False,
) -> None:
    """Choose the patient's current typing."""
    try:
        with Database(database) as db:
            patient = service.choose_current_typing(db, patient_id, number, centre=centre)
    except GraftmatchError as exc:
        raise _fail(exc, json_out) from None
    _show(patient, json_out)


@patients_app.command("update")
def patients_update(
    patient_id: Annotated[str, typer.Argument(metavar="ID", help="The patient's id")],
    file: Annotated[Path | None, typer.Option(
        "--file", help="JSON object of the fields to change")] = None,
    weight: Annotated[float | None, typer.Option(help="Weight in kg")] = None,
    cmv: Annotated[str | None, typer.Option(help="positive, negative or unknown")] = None,
    abo: Annotated[str | None, typer.Option(help="A, B, AB or O")] = None,
    rh: Annotated[str | None, typer.Option(help="+ or -")] = None,
    version: Annotated[int | None, typer.Option(
        help="Refuse the change unless the record is at this version")] = None,
    centre: CentreOption = None,
    database: DatabaseOption = None,
    json_out: JsonOption = False,
) -> None:
    """Change fields of a patient's record (the whole record is checked again)."""
    try:
        changes = {**_read_json(file), **_given(weight_kg=weight, cmv=cmv, abo=abo, rh=rh)}
        with Database(database) as db:
            patient = service.update_patient(db, patient_id, changes, centre=centre,
                                             version=version)
    except GraftmatchError as exc:
        raise _fail(exc, json_out) from None
    _show(patient, json_out)


@patients_app.command("show")
def patients_show(
    patient_id: Annotated[str, typer.Argument(metavar="ID", help="The patient's id")],
    centre: CentreOption = None,
    database: DatabaseOption = None,
    json_out: JsonOption = False,
) -> None:
    """Show a patient's record: details, diagnosis, results and typings."""
    try:
        with Database(database) as db:
            patient = service.get_patient(db, patient_id, centre=centre)
    except GraftmatchError as exc:
        raise _fail(exc, json_out) from None
    _show(patient, json_out)


@patients_app.command("list")
def patients_list(
    centre: CentreOption = None,
    database: DatabaseOption = None,
    json_out: JsonOption = False,
) -> None:
    """List the patients (of one centre with --centre)."""
    try:
        with Database(database) as db:
            found = service.list_patients(db, centre=centre)
    except GraftmatchError as exc:
        raise _fail(exc, json_out) from None
    if json_out:
        out.print_json(json.dumps([p.model_dump(mode="json") for p in found]))
        return
    table = Table("centre", "id", "sex", "born", "diagnosis", "typings", "current",
                  title="patients")
    for p in found:
        table.add_row(escape(p.centre), escape(p.id) + (" (SYNTHETIC)" if p.synthetic else ""),
                      p.sex, str(p.birth_date), escape(p.disease), str(p.typings),
                      str(p.current_typing) if p.current_typing else "none chosen")
    out.print(table)


def _show(patient: Patient, json_out: bool) -> None:
    if json_out:
        out.print_json(patient.model_dump_json())
        return
    d = patient.diagnosis
    label = " [bold](SYNTHETIC)[/]" if patient.synthetic else ""
    out.print(f"patient {escape(patient.id)} of centre {escape(patient.centre)}{label}, "
              f"version {patient.version}", markup=True)
    facts = Table(show_header=False, box=None)
    for key, value in (
            ("sex", patient.sex.value), ("born", f"{patient.birth_date} "
                                                 f"(age {patient.age_years})"),
            ("weight", f"{patient.weight_kg:g} kg" if patient.weight_kg else "not recorded"),
            ("ABO/Rh", f"{patient.abo.value if patient.abo else '?'}"
                       f"{patient.rh.value if patient.rh else ''}"),
            ("CMV", patient.cmv.value), ("population", patient.population or "not recorded"),
            ("diagnosis", f"{d.disease_name} (IUIS: {d.iuis_category})"),
            ("gene", d.gene or "not recorded"),
            ("variants", ", ".join(f"{v.hgvs} ({v.zygosity})" for v in d.variants) or "none")):
        facts.add_row(key, escape(value))
    out.print(facts)
    if d.lab_results:
        results = Table("test", "date", "result", "reference range", "within range",
                        title="laboratory results")
        for r in d.lab_results:
            within = {True: "yes", False: "no", None: "undecided"}[r.within_range]
            results.add_row(r.test, str(r.date or ""),
                            f"{'' if r.comparator == '=' else r.comparator}{r.value:g} {r.unit}",
                            f"{r.reference_range.low:g}-{r.reference_range.high:g} {r.unit}",
                            within)
        out.print(results)
    typed = Table("#", "current", "date", "laboratory", "method", "resolution", "release",
                  "typing", title="HLA typings")
    for t in patient.typings:
        typed.add_row(str(t.number), "yes" if t.number == patient.current_typing else "",
                      str(t.date), escape(t.laboratory), t.method, t.resolution, t.release,
                      escape(t.gl))
    out.print(typed if patient.typings else "no HLA typing yet")
    if patient.typings and patient.current_typing is None:
        out.print("no current typing chosen: graftmatch patients current ID NUMBER")
