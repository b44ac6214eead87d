"""The ``graftmatch`` command line."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from graftmatch import __version__
from graftmatch.errors import GraftmatchError, ReleaseError, TypingError
from graftmatch.interfaces import match_command, predict_commands, registry_commands
from graftmatch.interfaces.common import err, fail, open_reader, out
from graftmatch.interfaces.patient_commands import centres_app, db_app, patients_app
from graftmatch.matching.grader import Matcher
from graftmatch.nomenclature import release as releases
from graftmatch.nomenclature.mac import load_mac_table, read_mac_file, save_mac_table
from graftmatch.nomenclature.reduce import Level, Reducer
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
        with err.status(f"downloading IPD-IMGT/HLA {release}") as status:
            info = releases.fetch_release(release, base_url=url,
                                          progress=lambda f: status.update(f"downloading {f}"))
    except GraftmatchError as exc:
        raise fail(exc) from None
    _report_installed(info)


@hla.command("import")
def hla_import(
    folder: Annotated[Path, typer.Option("--from", help="Folder holding an unpacked release "
                                         "(laid out as the IPD-IMGT/HLA repository)")],
) -> None:
    """Import a release from a folder, for sites without internet access."""
    try:
        info = releases.import_release(folder)
    except GraftmatchError as exc:
        raise fail(exc) from None
    _report_installed(info)


def _report_installed(info: releases.ReleaseInfo) -> None:
    checked = info.provenance.get("md5_verified", [])
    pinned = " and the pinned sha256 checksums" if info.provenance.get(
        "pinned_sha256_verified") else ""
    out.print(f"IPD-IMGT/HLA {info.version} ({info.date}) installed in {info.path}")
    out.print(f"verified: {len(checked)} files against the release's md5checksum.txt{pinned}")
    index = releases.load_index(info)
    out.print(f"index: {len(index.names):,} alleles over {len(index.loci)} loci")


@hla.command("info")
def hla_info(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show the active release, its source, allele counts per locus and the citation."""
    try:
        info = releases.active_release()
        index = releases.load_index(info)
    except GraftmatchError as exc:
        raise fail(exc, json_out) from None
    counts = index.counts_per_locus()
    macs = load_mac_table(releases.home_dir())
    doc: dict[str, Any] = {
        "release": info.version, "date": info.date, "source": info.source,
        "path": str(info.path), "alleles": len(index.names), "alleles_per_locus": counts,
        "g_groups": len(index.g_names), "p_groups": len(index.p_names),
        "mac_list": ({"source": macs.source, "updated": macs.updated, "codes": len(macs.codes)}
                     if macs else None),
        "licence": releases.LICENCE_URL, "citation": releases.CITATION,
    }
    if json_out:
        out.print_json(json.dumps(doc))
        return
    out.print(f"[bold]IPD-IMGT/HLA {info.version}[/] ({info.date})")
    out.print(f"source: {info.source}", highlight=False)
    out.print(f"{len(index.names):,} alleles, {len(index.g_names):,} G groups, "
              f"{len(index.p_names):,} P groups")
    table = Table("locus", "alleles", title="alleles per locus")
    for locus in index.loci:
        table.add_row(locus, f"{counts[locus]:,}")
    out.print(table)
    out.print("MAC list: " + (f"{len(macs.codes):,} codes from {macs.source}" if macs
                              else "none imported (MAC-coded typings are rejected)"))
    out.print(f"licence: CC BY-ND, {releases.LICENCE_URL}\nplease cite:\n{releases.CITATION}",
              highlight=False)


@hla.command("import-mac")
def hla_import_mac(
    file: Annotated[Path, typer.Argument(help="NMDP numer.v3.txt / alpha.v3.txt, or its zip")],
) -> None:
    """Import the NMDP multiple-allele-code list you obtained from NMDP."""
    try:
        table = read_mac_file(file)
        path = save_mac_table(table, releases.home_dir())
    except GraftmatchError as exc:
        raise fail(exc) from None
    out.print(f"imported {len(table.codes):,} MAC codes (list dated {table.updated or 'unknown'})"
              f" into {path}")


@hla.command("validate")
def hla_validate(
    typing_text: Annotated[str, typer.Argument(metavar="TYPING", help="GL String or typing")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check a typing against the active release: exit 0 if valid, 1 if not."""
    try:
        reader = open_reader()
        typing_ = reader.parse(typing_text)
    except GraftmatchError as exc:
        raise fail(exc, json_out) from None
    notices = [{"notice": n.message, "token": n.token, "position": n.position}
               for n in typing_.notices]
    if json_out:
        out.print_json(json.dumps({"valid": True, "typing": typing_.to_gl(),
                                   "loci": list(typing_.loci), "release": typing_.release,
                                   "notices": notices}))
        return
    out.print(f"valid ({typing_.release}): {typing_.to_gl()}", highlight=False)
    for n in typing_.notices:
        err.print(f"[yellow]note:[/] {n.message} (at position {n.position})", highlight=False)


@hla.command("reduce")
def hla_reduce(
    typing_text: Annotated[str, typer.Argument(metavar="TYPING", help="GL String or typing")],
    to: Annotated[LevelChoice, typer.Option("--to", help="Reduction level")] = LevelChoice.lgx,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Reduce a typing to G groups, P groups, 2-field ARD (lgx) or serology."""
    try:
        reader = open_reader()
        typing_ = reader.parse(typing_text)
        reduced = Reducer(reader, Level(to.value)).reduce_typing(typing_)
    except GraftmatchError as exc:
        raise fail(exc, json_out) from None
    if json_out:
        out.print_json(json.dumps({
            "typing": typing_.to_gl(), "level": to.value, "reduced": reduced,
            "release": typing_.release,
            "notices": [{"notice": n.message, "token": n.token, "position": n.position}
                        for n in typing_.notices]}))
        return
    sys.stdout.write(reduced + "\n")
    for n in typing_.notices:
        err.print(f"[yellow]note:[/] {n.message} (at position {n.position})", highlight=False)


#: Real-world typings the demo reads: the forms labs and registries send.
DEMO_TYPINGS: tuple[tuple[str, str], ...] = (
    ("high resolution, 4 fields", "A*01:01:01:01+A*02:01:01:01^B*08:01:01:01+B*44:02:01:01"),
    ("registry allele lists (WMDA study style)",
     "A*01:01/A*01:02/A*01:03/A*01:16N+A*03:01/A*03:02^DRB1*03:01+DRB1*15:01"),
    ("shorthand allele list", "A*01:06/07+A*24:02"),
    ("XX code and first-field typing", "B*44:XX+B*08"),
    ("G and P groups", "C*07:01:01G+C*07:02P"),
    ("serology (broad and split)", "A9+A2^B12+B8^DR17+DR15"),
    ("DR51/52/53 and DPB1", "DRB3*01:01+DRB4*01:01^DPB1*04:01+DPB1*02:01"),
    ("renamed allele", "A*02:01:08+A*01:01"),
    ("pre-2010 name", "B*0801+B*15101"),
    ("null allele", "C*04:09N+C*07:01"),
)
DEMO_INVALID: tuple[str, ...] = ("A*01:999+A*02:01", "A*01:01+B*08:01", "A*01:AB", "A*01:04")

#: An example patient and donors for the matching part of the demo: made-up typings built from
#: real allele names, each donor showing one situation a coordinator meets.
DEMO_PATIENT = ("A*01:01+A*02:01^B*08:01+B*44:02^C*07:01+C*05:01^DRB1*03:01+DRB1*04:01"
                "^DQB1*02:01+DQB1*03:02^DPB1*04:01+DPB1*02:01")
DEMO_DONORS: tuple[tuple[str, str], ...] = (
    ("identical, permissive DPB1 mismatch",
     "A*01:01+A*02:01^B*08:01+B*44:02^C*07:01+C*05:01^DRB1*03:01+DRB1*04:01"
     "^DQB1*02:01+DQB1*03:02^DPB1*04:01+DPB1*01:01"),
    ("homozygous at C (GvH-only mismatch)",
     "A*01:01+A*02:01^B*08:01+B*44:02^C*07:01+C*07:01^DRB1*03:01+DRB1*04:01"
     "^DQB1*02:01+DQB1*03:02^DPB1*04:01+DPB1*03:01"),
    ("allele-level mismatch at A (A*02:05, still A2)",
     "A*01:01+A*02:05^B*08:01+B*44:02^C*07:01+C*05:01^DRB1*03:01+DRB1*04:01"
     "^DQB1*02:01+DQB1*03:02"),
    ("registry typing: XX codes, C and DQB1 untyped",
     "A*01:XX+A*02:XX^B*08:01+B*44:XX^DRB1*03:01/DRB1*03:02+DRB1*04:XX"),
)


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
        try:
            info = releases.active_release()
        except ReleaseError:
            err.print("no IPD-IMGT/HLA release yet: downloading "
                      f"{releases.DEFAULT_RELEASE} from the official repository")
            info = releases.fetch_release(releases.DEFAULT_RELEASE)
        reader = open_reader()
    except GraftmatchError as exc:
        raise fail(exc) from None
    index = reader.index
    out.rule(f"graftmatch {__version__}: IPD-IMGT/HLA {index.release}")
    out.print(f"release from {info.source}: {len(index.names):,} alleles, "
              f"{len(index.g_names):,} G groups, {len(index.p_names):,} P groups",
              highlight=False)
    reducers = {level: Reducer(reader, level) for level in Level}
    for label, text in DEMO_TYPINGS:
        typing_ = reader.parse(text)
        out.print(f"\n[bold]{label}[/]\n  as sent   {text}")
        for level in (Level.LGX, Level.P, Level.SEROLOGY):
            out.print(f"  {level.value:<9} {_abbreviate(reducers[level].reduce_typing(typing_))}")
        for notice in typing_.notices:
            out.print(f"  [yellow]note[/]      {notice.message}")
    out.print()
    out.print("[bold]typings graftmatch refuses, with the reason a lab can act on:[/]")
    for text in DEMO_INVALID:
        try:
            reader.parse(text)
        except TypingError as exc:
            out.print(f"  {text}: {exc}", highlight=False)
    _demo_matching(reader)
    try:
        hf_used = _demo_prediction(reader, hf, population)
        out.print()
        out.rule(f"donor search: a SYNTHETIC registry of {donors:,} donors and {cords:,} cord "
                 "units")
        registry_commands.demo_search(reader, hf_used, population, donors, cords)
    except GraftmatchError as exc:
        raise fail(exc) from None
    out.print(f"\nIPD-IMGT/HLA data: CC BY-ND ({releases.LICENCE_URL}). Please cite:\n"
              f"{releases.CITATION}", highlight=False)


def _demo_matching(reader: TypingReader) -> None:
    matcher = Matcher(reader.index)
    patient = reader.parse(DEMO_PATIENT)
    out.print()
    out.rule("match grading (P group level, counted over A, B, C, DRB1, DQB1)")
    out.print(f"example patient: {DEMO_PATIENT}")
    table = Table()
    for column in ("example donor", "count", "category", "GvH", "HvG", "mismatches",
                   "DPB1 TCE"):
        table.add_column(column)
    for label, text in DEMO_DONORS:
        result = matcher.match(patient, reader.parse(text))
        where = [f"{r.locus} ({'antigen' if r.antigen_mismatches else 'allele'})"
                 for r in result.loci if r.counted and r.mismatches]
        if result.untyped_loci:
            where.append("untyped: " + ", ".join(result.untyped_loci))
        dpb1 = next((r for r in result.loci if r.locus == "DPB1"), None)
        table.add_row(label, result.match_count, result.category,
                      str(result.gvh_mismatches), str(result.hvg_mismatches),
                      "; ".join(where) or "-", dpb1.tce.verdict if dpb1 and dpb1.tce else "-")
    out.print(table)


def _demo_prediction(reader: TypingReader, hf: Path | None, population: str | None) -> Path:
    """Predict match probabilities for the registry-typed demo donor; return the set used."""
    from graftmatch.prediction.frequencies import read_frequency_set
    from graftmatch.prediction.haplotypes import HaplotypeTable
    from graftmatch.prediction.imputation import Imputer
    from graftmatch.prediction.match_probability import MatchPredictor
    from graftmatch.prediction.synthetic import write_synthetic_set

    out.print()
    out.rule("match prediction from haplotype frequencies")
    if hf is None:
        hf = releases.home_dir() / f"synthetic-demo-{reader.index.release}.json.gz"
        if not hf.exists():
            write_synthetic_set(hf, reader.index, ["A", "C", "B", "DRB1", "DQB1"], 20_000,
                                seed=1)
    freq_set = read_frequency_set(hf, reader)
    chosen, steps = freq_set.choose(population)
    label = "SYNTHETIC (generated; not real frequencies)" if freq_set.synthetic else \
        (freq_set.licence or "user-supplied")
    out.print(f"frequency set: {hf.name}, population {chosen.name}, "
              f"{len(chosen.haplotypes):,} haplotypes over {'~'.join(freq_set.loci)}; {label}",
              highlight=False)
    for step in steps:
        out.print(f"  [yellow]note[/] {step}")
    imputer = Imputer(HaplotypeTable.compile(chosen, reader), population_steps=steps)
    predictor = MatchPredictor(Matcher(reader.index))
    patient = imputer.impute(reader.parse(DEMO_PATIENT))
    label_, donor_text = DEMO_DONORS[-1]
    donor = imputer.impute(reader.parse(donor_text))
    result = predictor.predict(patient, donor)
    total = 2 * len(result.loci)
    out.print(f"donor ({label_}): {donor_text}")
    out.print(f"  imputation: status {donor.status}, {len(donor.genotypes):,} genotypes, "
              f"most likely {donor.genotypes.genotype(0)} "
              f"(p = {donor.genotypes.probabilities[0]:.3f})", highlight=False)
    out.print("  " + ", ".join(f"P({total - k}/{total}) = {p:.3f}"
                               for k, p in enumerate(result.p_mismatches[:3])))
    out.print("  per locus P(match): " + ", ".join(f"{lp.locus} {lp.p[0]:.3f}"
                                                   for lp in result.per_locus))
    return hf


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
