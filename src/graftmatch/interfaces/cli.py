"""The ``graftmatch`` command line: options parsed, a service called, its result rendered."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from graftmatch import __version__
from graftmatch.errors import GraftmatchError
from graftmatch.interfaces import match_command, predict_commands, registry_commands
from graftmatch.interfaces.account_commands import audit_app, users_app
from graftmatch.interfaces.common import err, fail, notify, out, print_json, progress_bar
from graftmatch.interfaces.patient_commands import centres_app, db_app, patients_app
from graftmatch.nomenclature import release as releases
from graftmatch.services import demo as demos
from graftmatch.services import reference, typings
from graftmatch.typing.model import Typing
from graftmatch.typing.parser import TypingReader

app = typer.Typer(help="HLA typing, matching and donor search for stem cell transplantation.",
                  no_args_is_help=True, add_completion=False)
hla = typer.Typer(help="IPD-IMGT/HLA releases and HLA nomenclature: read, check and reduce "
                  "typings.", no_args_is_help=True)
app.add_typer(hla, name="hla")
app.command("match")(match_command.match)
app.command("impute")(predict_commands.impute)
app.command("predict")(predict_commands.predict)
app.add_typer(predict_commands.hf_app, name="hf")
app.add_typer(registry_commands.registry_app, name="registry")
app.command("search")(registry_commands.search)
app.add_typer(db_app, name="db")
app.add_typer(centres_app, name="centres")
app.add_typer(patients_app, name="patients")
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")


class LevelChoice(StrEnum):
    G = "G"
    P = "P"
    lgx = "lgx"
    serology = "serology"


@hla.command("fetch")
def hla_fetch(
    release: Annotated[str, typer.Option(help="IPD-IMGT/HLA release, e.g. 3.58.0")] = (
        releases.DEFAULT_RELEASE),
    url: Annotated[str | None, typer.Option(help="Repository base URL (default: the official "
                                            "ANHIG/IMGTHLA repository)")] = None,
) -> None:
    """Download a release from the official IPD-IMGT/HLA repository into the user cache."""
    try:
        with progress_bar() as progress:
            installed = reference.fetch_release(release, url, progress)
    except GraftmatchError as exc:
        raise fail(exc) from None
    _report_installed(installed)


@hla.command("import")
def hla_import(
    folder: Annotated[Path, typer.Option("--from", help="Folder holding an unpacked release "
                                         "(laid out as the IPD-IMGT/HLA repository)")],
) -> None:
    """Import a release from a folder, for sites without internet access."""
    try:
        installed = reference.import_release(folder)
    except GraftmatchError as exc:
        raise fail(exc) from None
    _report_installed(installed)


def _report_installed(installed: reference.InstalledRelease) -> None:
    info = installed.info
    pinned = " and the pinned sha256 checksums" if installed.pinned_sha256 else ""
    out.print(f"IPD-IMGT/HLA {info.version} ({info.date}) installed in {info.path}")
    out.print(f"verified: {installed.verified_files} files against the release's "
              f"md5checksum.txt{pinned}")
    out.print(f"index: {installed.alleles:,} alleles over {installed.loci} loci")


@hla.command("info")
def hla_info(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show the active release, its source, allele counts per locus and the citation."""
    try:
        overview = reference.release_overview()
    except GraftmatchError as exc:
        raise fail(exc, json_out) from None
    if json_out:
        print_json(overview.to_dict())
        return
    info, index, macs = overview.info, overview.index, overview.mac_list
    counts = overview.alleles_per_locus
    out.print(f"[bold]IPD-IMGT/HLA {info.version}[/] ({info.date})")
    out.print(f"source: {info.source}", highlight=False)
    out.print(f"{len(index.names):,} alleles, {len(index.g_names):,} G groups, "
              f"{len(index.p_names):,} P groups")
    table = Table("locus", "alleles", title="alleles per locus")
    for locus in index.loci:
        table.add_row(locus, f"{counts[locus]:,}")
    out.print(table)
    out.print("MAC list: " + (f"{macs['codes']:,} codes from {macs['source']}" if macs
                              else "none imported (MAC-coded typings are rejected)"))
    out.print(f"licence: CC BY-ND, {releases.LICENCE_URL}\nplease cite:\n{releases.CITATION}",
              highlight=False)


@hla.command("import-mac")
def hla_import_mac(
    file: Annotated[Path, typer.Argument(help="NMDP numer.v3.txt / alpha.v3.txt, or its zip")],
) -> None:
    """Import the NMDP multiple-allele-code list you obtained from NMDP."""
    try:
        imported = reference.import_mac_list(file)
    except GraftmatchError as exc:
        raise fail(exc) from None
    out.print(f"imported {imported.codes:,} MAC codes (list dated "
              f"{imported.updated or 'unknown'}) into {imported.path}")


def _print_notices(typing_: Typing) -> None:
    for n in typing_.notices:
        err.print(f"[yellow]note:[/] {n.message} (at position {n.position})", highlight=False)


@hla.command("validate")
def hla_validate(
    typing_text: Annotated[str, typer.Argument(metavar="TYPING", help="GL String or typing")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check a typing against the active release: exit 0 if valid, 1 if not."""
    try:
        checked = typings.validate(typing_text)
    except GraftmatchError as exc:
        raise fail(exc, json_out) from None
    if json_out:
        print_json(checked.to_dict())
        return
    out.print(f"valid ({checked.typing.release}): {checked.typing.to_gl()}", highlight=False)
    _print_notices(checked.typing)


@hla.command("reduce")
def hla_reduce(
    typing_text: Annotated[str, typer.Argument(metavar="TYPING", help="GL String or typing")],
    to: Annotated[LevelChoice, typer.Option("--to", help="Reduction level")] = LevelChoice.lgx,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Reduce a typing to G groups, P groups, 2-field ARD (lgx) or serology."""
    try:
        reduction = typings.reduce(typing_text, to.value)
    except GraftmatchError as exc:
        raise fail(exc, json_out) from None
    if json_out:
        print_json(reduction.to_dict())
        return
    sys.stdout.write(reduction.reduced + "\n")
    _print_notices(reduction.typing)


@app.command("serve")
def serve(
    database: Annotated[str | None, typer.Option(
        "--database", help="Database URL (default: GRAFTMATCH_DATABASE, else graftmatch.sqlite "
        "in GRAFTMATCH_HOME); it must be migrated first: graftmatch db upgrade")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
) -> None:
    """Start the REST API (/api/v1, OpenAPI at /api/v1/openapi.json) with uvicorn. Run
    'graftmatch db upgrade' first: an unmigrated database is refused, naming the fix."""
    from graftmatch.interfaces import api

    try:
        api.serve(database, host, port)
    except GraftmatchError as exc:
        raise fail(exc) from None


@app.command("demo")
def demo(
    hf: Annotated[Path | None, typer.Option(
        help="Haplotype frequency set for the prediction part (default: a SYNTHETIC set "
             "generated into the cache, labelled as such)")] = None,
    population: Annotated[str | None, typer.Option(help="Population in that set")] = None,
    donors: Annotated[int, typer.Option(help="Donors in the synthetic demo registry")]
    = 100_000,
    cords: Annotated[int, typer.Option(help="Cord units in the synthetic demo registry")]
    = 5_000,
) -> None:
    """End-to-end demo: load the release, read real-world typings, grade example matches,
    predict match probabilities, and search a synthetic registry for a C1q-deficient child."""
    try:
        with progress_bar() as progress:
            info = reference.active_or_fetch(notify, progress)
        reader = reference.open_reader()
    except GraftmatchError as exc:
        raise fail(exc) from None
    index = reader.index
    out.rule(f"graftmatch {__version__}: IPD-IMGT/HLA {index.release}")
    out.print(f"release from {info.source}: {len(index.names):,} alleles, "
              f"{len(index.g_names):,} G groups, {len(index.p_names):,} P groups",
              highlight=False)
    for shown in demos.demo_typings(reader):
        out.print(f"\n[bold]{shown.label}[/]\n  as sent   {shown.text}")
        for level, reduced in shown.reduced.items():
            out.print(f"  {level.value:<9} {_abbreviate(reduced)}")
        for notice in shown.typing.notices:
            out.print(f"  [yellow]note[/]      {notice.message}")
    out.print()
    out.print("[bold]typings graftmatch refuses, with the reason a lab can act on:[/]")
    for text, refusal in demos.demo_refusals(reader):
        out.print(f"  {text}: {refusal}", highlight=False)
    _demo_matching(reader)
    try:
        out.print()
        out.rule("match prediction from haplotype frequencies")
        predicted = demos.demo_prediction(reader, hf, population)
        _print_demo_prediction(predicted)
        out.print()
        out.rule(f"donor search: a SYNTHETIC registry of {donors:,} donors and {cords:,} cord "
                 "units")
        with progress_bar() as progress:
            searched = demos.demo_search(reader, predicted.path, population, donors, cords,
                                         progress=progress, notify=notify)
        out.print(searched.index.message)
        patient = searched.outcome.patient
        out.print(f"patient: C1q deficiency, 6 years, 18 kg, male, CMV-negative, blood group "
                  f"A; HLA {patient.typing}", highlight=False)
        registry_commands.print_result(searched.outcome)
    except GraftmatchError as exc:
        raise fail(exc) from None
    out.print(f"\nIPD-IMGT/HLA data: CC BY-ND ({releases.LICENCE_URL}). Please cite:\n"
              f"{releases.CITATION}", highlight=False)


def _demo_matching(reader: TypingReader) -> None:
    out.print()
    out.rule("match grading (P group level, counted over A, B, C, DRB1, DQB1)")
    out.print(f"example patient: {demos.DEMO_PATIENT}")
    table = Table()
    for column in ("example donor", "count", "category", "GvH", "HvG", "mismatches",
                   "DPB1 TCE"):
        table.add_column(column)
    for label, result in demos.demo_matches(reader):
        where = [f"{r.locus} ({'antigen' if r.antigen_mismatches else 'allele'})"
                 for r in result.loci if r.counted and r.mismatches]
        if result.untyped_loci:
            where.append("untyped: " + ", ".join(result.untyped_loci))
        dpb1 = next((r for r in result.loci if r.locus == "DPB1"), None)
        table.add_row(label, result.match_count, result.category,
                      str(result.gvh_mismatches), str(result.hvg_mismatches),
                      "; ".join(where) or "-", dpb1.tce.verdict if dpb1 and dpb1.tce else "-")
    out.print(table)


def _print_demo_prediction(shown: demos.DemoPrediction) -> None:
    freq_set = shown.frequency_set
    label = "SYNTHETIC (generated; not real frequencies)" if freq_set.synthetic else \
        (freq_set.licence or "user-supplied")
    out.print(f"frequency set: {shown.path.name}, population {shown.population}, "
              f"{shown.haplotypes:,} haplotypes over {'~'.join(freq_set.loci)}; {label}",
              highlight=False)
    for step in shown.steps:
        out.print(f"  [yellow]note[/] {step}")
    donor, result = shown.donor, shown.prediction
    total = 2 * len(result.loci)
    out.print(f"donor ({shown.donor_label}): {shown.donor_text}")
    out.print(f"  imputation: status {donor.status}, {len(donor.genotypes):,} genotypes, "
              f"most likely {donor.genotypes.genotype(0)} "
              f"(p = {donor.genotypes.probabilities[0]:.3f})", highlight=False)
    out.print("  " + ", ".join(f"P({total - k}/{total}) = {p:.3f}"
                               for k, p in enumerate(result.p_mismatches[:3])))
    out.print("  per locus P(match): " + ", ".join(f"{lp.locus} {lp.p[0]:.3f}"
                                                   for lp in result.per_locus))


def _abbreviate(gl: str, keep: int = 4) -> str:
    """Shorten long allele lists for the screen: first ``keep`` names, then a count."""
    def one(alleles: str) -> str:
        names = alleles.split("/")
        if len(names) <= keep:
            return alleles
        return "/".join(names[:keep]) + f"/...(+{len(names) - keep})"
    return "^".join("+".join(one(c) for c in block.split("+")) for block in gl.split("^"))


@app.callback(invoke_without_command=True)
def _root(version: Annotated[bool, typer.Option("--version", help="Show the version")] = False
          ) -> None:
    if version:
        out.print(f"graftmatch {__version__}")
        raise typer.Exit()


def main() -> None:
    app()
