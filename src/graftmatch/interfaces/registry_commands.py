"""``graftmatch registry ...`` and ``graftmatch search``: the donor registry and donor search."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from graftmatch.errors import GraftmatchError
from graftmatch.interfaces.common import (
    fail,
    notify,
    out,
    parse_loci,
    parse_names,
    parse_per_locus,
    print_json,
    progress_bar,
)
from graftmatch.prediction.imputation import confidence
from graftmatch.registry.store import ImportReport
from graftmatch.search.engine import Candidate, Criteria, Patient
from graftmatch.services import registries
from graftmatch.services import search as searches

registry_app = typer.Typer(help="Donor registries: import records, build the search index, "
                           "summarise, generate a synthetic registry.", no_args_is_help=True)

RegistryOption = Annotated[Path, typer.Option("--registry", help="Registry folder")]


@registry_app.command("import")
def registry_import(
    source: Annotated[Path, typer.Argument(
        help="Records: CSV or JSON (Lines), .gz ok; /dev/stdin reads standard input")],
    registry: RegistryOption,
    hf: Annotated[Path | None, typer.Option(
        help="Frequency set for imputation (needed when the registry is created)")] = None,
    population: Annotated[str | None, typer.Option(
        help="Population of that set for the registry's donors")] = None,
    again: Annotated[bool, typer.Option(
        help="Apply a file imported before once more (e.g. an old snapshot, over the "
             "imports since)")] = False,
    limits: Annotated[Path | None, typer.Option(
        help="A site's plausible ranges (default: the built-in limits.toml)")] = None,
) -> None:
    """Import donors and cord units (new, updated and deleted records) in one transaction, in
    file order, then rebuild the search index. Bad records are listed in an error report."""
    try:
        with progress_bar() as progress:
            imported = registries.import_records(registry, source, hf=hf,
                                                 population=population, again=again,
                                                 limits=limits, progress=progress,
                                                 notify=notify)
    except GraftmatchError as exc:
        raise fail(exc) from None
    report = imported.report
    if report.already_imported:
        out.print(_already_imported(source, report), highlight=False)
    else:
        out.print(f"{source}: {_count(report.accepted, 'record')} loaded, "
                  f"{report.deleted:,} deleted, {report.rejected:,} rejected", highlight=False)
        if report.duplicates:
            out.print(f"  {_count(report.duplicates, 'record')} repeated an id of an "
                      "earlier line (the later line is stored)", highlight=False)
        if report.not_deleted:
            out.print(f"  {_count(report.not_deleted, 'deletion')} named no stored record "
                      "(nothing deleted)", highlight=False)
        for line in report.first_errors:
            out.print(f"  [red]rejected[/] {escape(line)}", highlight=False)
        for line in report.first_notices:
            out.print(f"  [yellow]notice[/] {escape(line)}", highlight=False)
        if report.error_report:
            out.print(f"  every rejected record and notice: {report.error_report}",
                      highlight=False)
    if imported.index is None:
        assert imported.index_error is not None
        raise fail(imported.index_error)
    out.print(imported.index.message)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _already_imported(source: Path, report: ImportReport) -> str:
    """Which import it was and when, and how to apply it again on purpose."""
    done = report.previous
    assert done is not None
    since = (f"{_count(report.later_imports, 'later import')} "
             f"{'has' if report.later_imports == 1 else 'have'} changed records since"
             if report.later_imports else "it is the latest import")
    return (f"{source} was already imported on {done.finished:%Y-%m-%d %H:%M} UTC (as "
            f"{done.path}, data version {done.data_version}); {since}. Records unchanged: to "
            "apply this file again on purpose, run the import with --again")


@registry_app.command("refresh")
def registry_refresh(
    registry: RegistryOption,
    force: Annotated[bool, typer.Option(help="Rebuild even if nothing changed")] = False,
) -> None:
    """Rebuild the search index when records, the IMGT release or the frequency set changed."""
    try:
        with progress_bar() as progress:
            refreshed = registries.refresh(registry, force=force, progress=progress,
                                           notify=notify)
    except GraftmatchError as exc:
        raise fail(exc) from None
    out.print(refreshed.message)


@registry_app.command("stats")
def registry_stats(
    registry: RegistryOption,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Summarise a registry: records by kind and source, index state and size."""
    try:
        doc = registries.registry_stats(registry)
    except GraftmatchError as exc:
        raise fail(exc, json_out) from None
    if json_out:
        print_json(doc)
        return
    for key, value in doc.items():
        out.print(f"{key}: {value}", highlight=False)


def search(
    registry: RegistryOption,
    patient: Annotated[str, typer.Option(help="Patient typing (GL String)")],
    population: Annotated[str | None, typer.Option(
        help="Patient's population in the registry's frequency set (default: the registry's "
             "population; missing ones fall back as reported)")] = None,
    weight: Annotated[float | None, typer.Option(help="Patient weight in kg (cord dose)")]
    = None,
    cmv: Annotated[str, typer.Option(help="Patient CMV: negative, positive, unknown")]
    = "unknown",
    abo: Annotated[str | None, typer.Option(help="Patient ABO group (A, B, AB, O)")] = None,
    sex: Annotated[str, typer.Option(help="Patient sex (F, M, U)")] = "U",
    loci: Annotated[str | None, typer.Option(
        help="Loci counted for adult donors (default A,B,C,DRB1,DQB1: 10/10)")] = None,
    max_mismatches: Annotated[int, typer.Option(help="Mismatches allowed in total (0-4)")] = 2,
    per_locus: Annotated[str | None, typer.Option(
        help="Mismatches allowed at single loci, e.g. DRB1=0,A=1 (others: no own limit)")]
    = None,
    registries: Annotated[str | None, typer.Option(
        help="Only these registries and cord banks, comma-separated (default: all)")] = None,
    age: Annotated[float | None, typer.Option(help="Patient age in years (reported with the "
                                                   "results; ranking uses donor age)")] = None,
    limit: Annotated[int, typer.Option(help="Candidates to show per kind")] = 20,
    kinds: Annotated[str, typer.Option(help="donor, cord or both")] = "donor,cord",
    ranking: Annotated[Path | None, typer.Option(
        help="A site's ranking rules (default: the built-in ranking.toml)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Search a registry for a patient: every donor and cord unit within the criteria, with
    match grades, match probabilities and a rank with its reasons."""
    try:
        criteria = Criteria(loci=tuple(parse_loci(loci) or Criteria.loci),
                            max_mismatches=max_mismatches,
                            per_locus=parse_per_locus(per_locus),
                            kinds=parse_names(kinds, "--kinds"),
                            sources=parse_names(registries, "--registries")
                            if registries is not None else None)
        outcome = searches.search(registry, Patient(patient, weight, cmv, abo, sex, age),
                                  criteria, population=population, ranking=ranking,
                                  limit=limit)
    except GraftmatchError as exc:
        raise fail(exc, json_out) from None
    if json_out:
        print_json(outcome.to_dict())
        return
    print_result(outcome)


def _match_cell(c: Candidate, n: int) -> str:
    return c.match.label() if c.match is not None else f"{n - c.mismatches}/{n} by typing"


def print_result(outcome: searches.SearchOutcome) -> None:
    result, criteria, limit, r = (outcome.result, outcome.criteria, outcome.limit,
                                  outcome.ranking)
    n = 2 * len(criteria.loci)
    core = [locus for locus in r.core_loci if locus in criteria.loci]
    out.print(f"searched {result.counts['records']:,} records ({result.counts['typings']:,} "
              f"distinct typings) in {result.seconds['total']:.2f} s: "
              f"{result.counts['donors']:,} donors and {result.counts['cords']:,} cord units "
              "within the criteria")
    patient = result.patient
    if confidence(patient.status) == "lowered":
        out.print(f"[yellow]patient imputation {patient.status} (lowered confidence)[/]: "
                  + "; ".join(patient.reasons or patient.population_steps), highlight=False)
    donors = Table(title=f"adult donors, up to {criteria.max_mismatches} mismatches over "
                   f"{', '.join(criteria.loci)}; ranked by {', '.join(r.donor_order)} "
                   f"({r.source})")
    m = 2 * len(core)
    for column in ("#", "donor", "match", f"P({m}/{m})", f"P({n}/{n})", f"P(>={n - 1}/{n})",
                   "age", "sex", "CMV", "ABO", "DPB1", "why"):
        donors.add_column(column)
    for c in result.donors[:limit]:
        rec = c.record
        p = c.p_mismatches
        donors.add_row(str(c.rank), f"{rec.get('source')}:{rec.get('ext_id')}",
                       _match_cell(c, n),
                       f"{c.p_core_match:.2f}" if c.p_core_match is not None else "-",
                       f"{p[0]:.2f}" if p else "-", f"{sum(p[:2]):.2f}" if p else "-",
                       f"{c.age:.0f}" if c.age is not None else "-", rec.get("sex") or "-",
                       rec.get("cmv") or "-", f"{rec.get('abo') or ''}{rec.get('rh') or ''}",
                       c.tce or (f"P(perm) {c.p_permissive_dpb1:.2f}"
                                 if c.p_permissive_dpb1 is not None else "-"),
                       "; ".join(c.reasons))
    out.print(donors)
    for c in [*result.donors[:limit], *result.cords[:limit]]:
        if confidence(c.imputation) == "lowered":
            notes = [reason for reason in c.reasons if reason.startswith("imputation ")]
            out.print(f"[yellow]{c.record.get('source')}:{c.record.get('ext_id')}[/]: "
                      + ("; ".join(notes) or f"imputation {c.imputation} (lowered confidence)"),
                      highlight=False)
    out.print(f"ranking evidence: {r.donor_evidence}", highlight=False)
    if result.cords:
        cords = Table(title=f"cord blood units (single units at TNC >= "
                      f"{r.single_min_tnc_per_kg:g} x10^7/kg; ranked by "
                      f"{', '.join(r.cord_order)})")
        for column in ("#", "unit", "match", "TNC x10^7/kg", "CD34 x10^5/kg", "why"):
            cords.add_column(column)
        for c in result.cords[:limit]:
            rec = c.record
            cords.add_row(str(c.rank), f"{rec.get('source')}:{rec.get('ext_id')}",
                          _match_cell(c, 2 * len(r.cord_loci)),
                          f"{c.tnc_per_kg:.2f}" if c.tnc_per_kg is not None else "-",
                          f"{c.cd34_per_kg:.2f}" if c.cd34_per_kg is not None else "-",
                          "; ".join(c.reasons))
        out.print(cords)
        out.print(f"cord ranking evidence: {r.cord_evidence}", highlight=False)
    if result.double_cords:
        out.print(f"double-unit pairs offered (no single unit reaches the target dose of "
                  f"{r.target_tnc_per_kg:g} x10^7/kg; units below the single-unit floor appear "
                  "only here):")
        for a, b in result.double_cords[:5]:
            out.print(f"  {a.record.get('ext_id')} ({a.mismatches} MM, {a.tnc_per_kg:.2f}) + "
                      f"{b.record.get('ext_id')} ({b.mismatches} MM, {b.tnc_per_kg:.2f}) = "
                      f"{(a.tnc_per_kg or 0) + (b.tnc_per_kg or 0):.2f} x10^7/kg",
                      highlight=False)
    out.print("Results support the transplant team's decision; they do not make it.")


@registry_app.command("generate")
def registry_generate(
    out_path: Annotated[Path, typer.Argument(metavar="FILE",
                                             help="CSV to write (.csv or .csv.gz)")],
    hf: Annotated[Path, typer.Option(help="Frequency set to draw donors from")],
    population: Annotated[str | None, typer.Option(help="Population of that set")] = None,
    donors: Annotated[int, typer.Option(help="Adult donors")] = 100_000,
    cords: Annotated[int, typer.Option(help="Cord blood units")] = 5_000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same file)")] = 0,
) -> None:
    """Write a SYNTHETIC registry (labelled so: registries named SYNTHETIC-*, and a .meta.json
    beside it) drawn from a frequency set, with a realistic mix of typing resolutions."""
    try:
        meta = registries.generate(out_path, hf, population, donors, cords, seed)
    except GraftmatchError as exc:
        raise fail(exc) from None
    out.print(f"wrote {out_path}: {meta['donors']:,} SYNTHETIC donors and {meta['cords']:,} "
              f"cord units drawn from {meta['frequency_set']} (seed {seed})", highlight=False)
