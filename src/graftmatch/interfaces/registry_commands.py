"""``graftmatch registry ...`` and ``graftmatch search``: the donor registry and donor search."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table
from sqlalchemy.exc import DBAPIError

from graftmatch.errors import GraftmatchError
from graftmatch.interfaces.common import err, fail, json_text, open_reader, out
from graftmatch.interfaces.match_command import parse_loci
from graftmatch.prediction.frequencies import read_frequency_set
from graftmatch.prediction.haplotypes import HaplotypeTable
from graftmatch.prediction.imputation import confidence
from graftmatch.prediction.settings import default_settings
from graftmatch.registry.index import (
    IMPUTATION_STATUS,
    LAYOUT,
    IndexDamaged,
    build_index,
    verified_index,
)
from graftmatch.registry.limits import load_limits
from graftmatch.registry.store import (
    ImportReport,
    Registry,
    RegistryError,
    database_error,
    sha256_of,
)
from graftmatch.search.engine import Candidate, Criteria, Patient, Searcher, SearchResult
from graftmatch.search.ranking import Ranking, default_ranking, load_ranking
from graftmatch.typing.parser import TypingReader

registry_app = typer.Typer(help="Donor registries: import records, build the search index, "
                           "summarise, generate a synthetic registry.", no_args_is_help=True)

RegistryOption = Annotated[Path, typer.Option("--registry", help="Registry folder")]


def _table(registry: Registry, reader: TypingReader, population: str | None = None
           ) -> tuple[HaplotypeTable, tuple[str, ...]]:
    """The registry's frequency set compiled for ``population`` (default: the registry's
    own), with the fallback steps taken to choose it."""
    meta = registry.meta()
    path = Path(meta["frequency_set"])
    chosen, steps = read_frequency_set(path, reader).choose(
        population or meta["population"] or None)
    return HaplotypeTable.compile(chosen, reader), steps


def refresh_index(registry: Registry, reader: TypingReader, *, force: bool = False) -> str:
    """Rebuild the index when records, release, frequency set or index layout changed, or
    an index file is damaged; say what was done."""
    meta = registry.meta()
    current = {"release": reader.index.release,
               "frequency_set_sha256": sha256_of(Path(meta["frequency_set"])),
               "index_layout": str(LAYOUT)}
    changed = [k for k, v in current.items() if meta.get(k) != v]
    damage = ""
    if not (force or registry.stale or changed):
        try:
            verified_index(registry).close()
            return "search index is up to date"
        except RegistryError as exc:  # damaged, or of another layout than recorded
            damage = "search index {}; ".format(
                f"damaged ({exc.detail})" if isinstance(exc, IndexDamaged) else
                "built by another graftmatch version")
    if changed and not registry.stale and "index_folder" in meta:
        registry.set_meta(index_version="-1")
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("imputing and indexing typings", total=None)
        info = build_index(registry, reader, _table(registry, reader)[0], default_settings(),
                           lambda done, total: bar.update(task, completed=done, total=total),
                           waiting=lambda: err.print(
                               "waiting for another process building the search index of "
                               f"{registry.path} to finish", highlight=False),
                           recorded=current)
    return (f"{damage}search index built: {info.records:,} records, {info.typings:,} "
            f"distinct typings, {info.genotypes:,} distinct genotypes in {info.seconds:.1f} s")


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
        reader = open_reader()
        bounds = load_limits(limits) if limits else None
        if not (registry / "registry.sqlite").exists():
            if hf is None:
                raise RegistryError(f"{registry} is new: give --hf (and --population) for "
                                    "its imputation")
            Registry.create(registry, release=reader.index.release,
                            frequency_set=str(hf.resolve()), population=population or "")
        reg = Registry(registry)
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task(f"importing {source.name}", total=None)
            report = reg.import_file(source, reader, lambda n: bar.advance(task, n),
                                     again=again, limits=bounds)
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
        out.print(refresh_index(reg, reader))
    except GraftmatchError as exc:
        raise fail(exc) from None
    except DBAPIError as exc:
        raise fail(database_error(registry, exc)) from None


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
        out.print(refresh_index(Registry(registry), open_reader(), force=force))
    except GraftmatchError as exc:
        raise fail(exc) from None
    except DBAPIError as exc:
        raise fail(database_error(registry, exc)) from None


@registry_app.command("stats")
def registry_stats(
    registry: RegistryOption,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Summarise a registry: records by kind and source, index state and size."""
    try:
        reg = Registry(registry, readonly=True)
        meta = reg.meta()
        doc: dict[str, Any] = {"records": reg.count(), "sources": reg.sources(),
                               "release": meta.get("release"),
                               "frequency_set": meta.get("frequency_set"),
                               "population": meta.get("population"),
                               "data_version": meta.get("data_version"),
                               "index_current": False}
        index = None
        if not reg.stale:
            try:
                index = verified_index(reg)
            except RegistryError as exc:  # damaged, or of another layout
                doc["index_error"] = str(exc)
        if index is not None:
            doc["index_current"] = True
            doc["index"] = {"folder": index.folder.name, "bytes": index.size_bytes,
                            "typings": len(index.tce),
                            "genotypes": len(index.genotypes),
                            # Typings by status; a population is substituted per record.
                            "imputation": {s: int((index.imputation == i).sum())
                                           for i, s in enumerate(IMPUTATION_STATUS)
                                           if s != "population-substituted"},
                            "population_substituted_records": int(
                                (index.population_substituted > 0).sum())}
            index.close()
    except GraftmatchError as exc:
        raise fail(exc, json_out) from None
    except DBAPIError as exc:
        raise fail(database_error(registry, exc), json_out) from None
    if json_out:
        out.print_json(json_text(doc))
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
        reader = open_reader()
        reg = Registry(registry, readonly=True)
        table, steps = _table(reg, reader, population)
        rules = load_ranking(ranking) if ranking else default_ranking()
        searcher = Searcher(reg, reader, table, rules, population_steps=steps)
        request = Patient(patient, weight, cmv, abo, sex, age)
        result = searcher.search(request, criteria)
        shown = result.donors[:limit] + result.cords[:limit]
        searcher.attach_records(shown + [u for pair in result.double_cords for u in pair])
    except GraftmatchError as exc:
        raise fail(exc, json_out) from None
    except DBAPIError as exc:
        raise fail(database_error(registry, exc), json_out) from None
    if json_out:
        try:
            text = json_text({"patient": dataclasses.asdict(request),
                              "ranking": {"source": rules.source,
                                          "donor_order": list(rules.donor_order),
                                          "donor_evidence": rules.donor_evidence,
                                          "cord_order": list(rules.cord_order),
                                          "cord_evidence": rules.cord_evidence},
                              **result_dict(result, limit)})
        except GraftmatchError as exc:
            raise fail(exc, json_out) from None
        out.print_json(text)
        return
    print_result(result, criteria, limit, rules)


def parse_names(text: str, option: str) -> tuple[str, ...]:
    """``REG1, REG2`` -> ("REG1", "REG2"); an empty entry (``,``) is refused, not read as "no
    names", which would find nothing."""
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise GraftmatchError(f"{option} {text!r}: an empty name; give names separated by "
                              "commas")
    return names


def parse_per_locus(text: str | None) -> dict[str, int]:
    """``DRB1=0,A=1`` -> {"DRB1": 0, "A": 1}; a malformed entry is refused by name."""
    limits: dict[str, int] = {}
    for n, entry in enumerate((e.strip() for e in (text or "").split(",")), 1):
        if not entry:
            continue
        locus, sep, value = entry.partition("=")
        if not sep or not value.strip().isdigit():
            raise GraftmatchError(f"--per-locus entry {n} {entry!r}: expected LOCUS=N, e.g. "
                                  "DRB1=0")
        limits[locus.strip().upper().removeprefix("HLA-")] = int(value)
    return limits


def _candidate_dict(c: Candidate) -> dict[str, Any]:
    rec = c.record
    match = c.match.to_dict() if c.match is not None else {}
    return {"rank": c.rank, "kind": c.kind, "id": rec.get("ext_id"),
            "source": rec.get("source"), "hla": rec.get("gl"), "mismatches": c.mismatches,
            "match_count": match.get("match_count"), "match": match.get("label"),
            "typed_loci": match.get("typed_loci"), "untyped_loci": match.get("untyped_loci"),
            "match_confidence": match.get("confidence"), "category": match.get("category"),
            "core_mismatches": c.core_mismatches, "p_core_match": c.p_core_match,
            "loci": c.loci, "p_mismatches": {str(k): p for k, p in enumerate(c.p_mismatches)},
            "p_locus": c.p_locus, "p_permissive_dpb1": c.p_permissive_dpb1, "tce": c.tce,
            "imputation": c.imputation, "imputation_confidence": confidence(c.imputation),
            "truncated_mass": c.truncated_mass, "age": c.age,
            "sex": rec.get("sex"), "abo": rec.get("abo"), "rh": rec.get("rh"),
            "cmv": rec.get("cmv"), "tnc_per_kg": c.tnc_per_kg, "cd34_per_kg": c.cd34_per_kg,
            "dose_group": c.dose_group, "reasons": c.reasons}


def result_dict(result: SearchResult, limit: int) -> dict[str, Any]:
    return {"counts": result.counts, "seconds": result.seconds,
            "patient_imputation": result.patient.to_dict(5),
            "donors": [_candidate_dict(c) for c in result.donors[:limit]],
            "cords": [_candidate_dict(c) for c in result.cords[:limit]],
            "double_cords": [[a.record.get("ext_id") or a.row, b.record.get("ext_id") or b.row]
                             for a, b in result.double_cords]}


def _match_cell(c: Candidate, n: int) -> str:
    return c.match.label() if c.match is not None else f"{n - c.mismatches}/{n} by typing"


def print_result(result: SearchResult, criteria: Criteria, limit: int,
                 ranking: Ranking | None = None) -> None:
    n = 2 * len(criteria.loci)
    r = ranking or default_ranking()
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
    from graftmatch.registry.synthetic import generate_registry

    try:
        reader = open_reader()
        chosen, _ = read_frequency_set(hf, reader).choose(population)
        meta = generate_registry(out_path, reader, HaplotypeTable.compile(chosen, reader),
                                 donors, cords, seed)
    except GraftmatchError as exc:
        raise fail(exc) from None
    out.print(f"wrote {out_path}: {meta['donors']:,} SYNTHETIC donors and {meta['cords']:,} "
              f"cord units drawn from {meta['frequency_set']} (seed {seed})", highlight=False)


#: The demo's patient: a made-up C1q-deficient child (typing built from real allele names).
DEMO_C1Q_PATIENT = Patient(
    typing="A*01:01+A*02:01^B*08:01+B*44:02^C*07:01+C*05:01^DRB1*03:01+DRB1*04:01"
           "^DQB1*02:01+DQB1*03:01",
    weight_kg=18.0, cmv="negative", abo="A", sex="M", age=6)


def demo_search(reader: TypingReader, hf: Path, population: str | None,
                donors: int = 100_000, cords: int = 5_000) -> None:
    """Build (once, in the cache) a synthetic registry of ``donors`` donors and ``cords`` cord
    units drawn from ``hf``, and search it for the demo patient."""
    from graftmatch.nomenclature.release import home_dir
    from graftmatch.registry.synthetic import generate_registry

    folder = home_dir() / f"demo-registry-{reader.index.release}-{hf.stem}-{donors}-{cords}"
    source = folder.parent / f"{folder.name}.csv.gz"
    if not (folder / "registry.sqlite").exists():
        chosen, _ = read_frequency_set(hf, reader).choose(population)
        generate_registry(source, reader, HaplotypeTable.compile(chosen, reader), donors,
                          cords, seed=1)
        Registry.create(folder, release=reader.index.release, frequency_set=str(hf.resolve()),
                        population=population or "")
    reg = Registry(folder)
    if reg.meta()["data_version"] == "0":
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task("loading the demo registry", total=donors + cords)
            reg.import_file(source, reader, lambda n: bar.advance(task, n))
    out.print(refresh_index(reg, reader))
    searcher = Searcher(reg, reader, _table(reg, reader)[0])
    criteria = Criteria()
    result = searcher.search(DEMO_C1Q_PATIENT, criteria)
    searcher.attach_records(result.donors[:10] + result.cords[:10]
                            + [u for pair in result.double_cords for u in pair])
    out.print(f"patient: C1q deficiency, 6 years, 18 kg, male, CMV-negative, blood group A; "
              f"HLA {DEMO_C1Q_PATIENT.typing}", highlight=False)
    print_result(result, criteria, 10)
