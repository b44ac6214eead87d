"""``graftmatch match``: grade one patient-donor pair, or many from files."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from graftmatch.errors import GraftmatchError
from graftmatch.interfaces.common import err, fail, out, parse_loci, print_json, progress_bar
from graftmatch.matching.result import MatchResult
from graftmatch.services import matching

if TYPE_CHECKING:
    from graftmatch.services.batch import BatchReport


class MatchLevel(StrEnum):
    P = "P"
    G = "G"


class OutFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


def match(
    patient: Annotated[str | None, typer.Option(help="Patient typing (GL String)")] = None,
    donor: Annotated[str | None, typer.Option(help="Donor typing (GL String)")] = None,
    patients: Annotated[Path | None, typer.Option(
        help="Batch: file of patient typings (ID%GL, ID,GL, ID<TAB>GL or JSON Lines; .gz ok)")
    ] = None,
    donors: Annotated[Path | None, typer.Option(help="Batch: file of donor typings")] = None,
    pairs: Annotated[Path | None, typer.Option(
        help="Batch: grade only these pairs (lines 'patient_id,donor_id'); default all pairs")
    ] = None,
    loci: Annotated[str | None, typer.Option(
        help="Loci to grade and count, e.g. A,B,C,DRB1 (8/8). Default: A,B,C,DRB1,DQB1 (10/10); "
             "one pair also shows DPB1, DRB3/4/5, DQA1, DPA1 where both are typed")] = None,
    level: Annotated[MatchLevel | None, typer.Option(
        help="Match level: P group (default, WMDA) or G group")] = None,
    policy: Annotated[Path | None, typer.Option(
        help="A site's matching policy file (default: the built-in policy.toml)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One pair: print JSON")] = False,
    output: Annotated[Path | None, typer.Option(
        "--out", help="Batch: write results here (default: standard output)")] = None,
    fmt: Annotated[OutFormat | None, typer.Option(
        "--format", help="Batch output format (default: from --out's suffix, else csv)")] = None,
    summary: Annotated[list[str] | None, typer.Option(
        help="Batch: print the distribution of total mismatches over these loci (pairs typed "
             "at all of them); repeatable, e.g. --summary A,B,DRB1")] = None,
    no_pairs: Annotated[bool, typer.Option(
        "--no-pairs", help="Batch: write no per-pair rows (summaries only)")] = False,
) -> None:
    """Grade patient-donor HLA matches: per locus mismatches, grades, confidence, GvH/HvG
    direction, antigen vs allele mismatches, DPB1 TCE, and the match count (e.g. 9/10)."""
    single = patient is not None or donor is not None
    batch = patients is not None or donors is not None
    try:
        if single == batch:
            raise GraftmatchError("give either --patient and --donor (one pair) or --patients "
                                  "and --donors (files)")
        if single and (patient is None or donor is None):
            raise GraftmatchError("one pair needs both --patient and --donor")
        if batch and (patients is None or donors is None):
            raise GraftmatchError("batch mode needs both --patients and --donors")
        if single and (pairs or output or summary or no_pairs or fmt):
            raise GraftmatchError("--pairs, --out, --format, --summary and --no-pairs are for "
                                  "batch mode")
        chosen = parse_loci(loci)
        level_name = level.value if level else None
        if single:
            assert patient is not None and donor is not None
            result = matching.grade_pair(patient, donor, chosen, level=level_name,
                                         policy=policy)
        else:
            assert patients is not None and donors is not None
            # Imported here: numba's compiled loop and polars are for batch mode only, and
            # would slow the start of every other command.
            from graftmatch.services.batch import grade_files

            summary_loci = [parse_loci(text, "--summary") or [] for text in summary or []]
            with progress_bar() as progress:
                report = grade_files(
                    patients, donors, chosen, level=level_name, policy=policy, pairs=pairs,
                    output=None if no_pairs else output,
                    stream=None if no_pairs or output else sys.stdout.buffer,
                    fmt=fmt.value if fmt else None, summaries=summary_loci,
                    progress=progress)
            _print_batch(report, out if output or no_pairs else err)
            return
    except GraftmatchError as exc:
        raise fail(exc, json_out) from None
    if json_out:
        print_json(result.to_dict())
    else:
        _print_result(result)


def _print_result(result: MatchResult) -> None:
    table = Table(title=f"match at {result.level} group level (IPD-IMGT/HLA {result.release})")
    for column in ("locus", "patient", "donor", "grade", "confidence", "mismatch"):
        table.add_column(column)
    for column in ("MM", "GvH", "HvG"):
        table.add_column(column, justify="right")
    table.add_column("DPB1 TCE")
    for locus in result.loci:
        name = locus.locus + ("" if locus.counted else "*")
        if not locus.typed:
            table.add_row(name, "", "", "untyped", "potential", "", "", "", "", "")
            continue
        for k, pos in enumerate(locus.positions):
            first = k == 0
            kind = "" if pos.mismatch is None else (
                pos.mismatch.label + (", permissive" if pos.permissive else ""))
            table.add_row(
                name if first else "", pos.patient, pos.donor, pos.grade.value,
                pos.confidence.label, kind,
                str(locus.mismatches) if first else "", str(locus.gvh_mismatches) if first
                else "", str(locus.hvg_mismatches) if first else "",
                (locus.tce.verdict if locus.tce and first else ""),
                end_section=not first)
    out.print(table)
    if not all(locus.counted for locus in result.loci):
        out.print("* graded, not counted in the match count")
    line = (f"[bold]{result.label()}[/]; GvH {result.gvh_mismatches}, HvG "
            f"{result.hvg_mismatches}, {result.antigen_mismatches} at antigen level")
    if result.untyped_loci:
        line += " (untyped loci are counted as neither match nor mismatch)"
    out.print(line)


def _print_batch(report: BatchReport, console: Console) -> None:
    console.print(f"graded {report.graded:,} pairs ({report.patients:,} patients, "
                  f"{report.donors:,} donors) over {', '.join(report.loci)} at {report.level} "
                  "group level")
    for s in report.summaries:
        table = Table(title=f"total mismatches over {', '.join(s.loci)}")
        for column in ("mismatches", "pairs", "certain", "potential"):
            table.add_column(column, justify="right")
        for row in s.rows():
            table.add_row(*(f"{row[k]:,}" for k in ("mismatches", "pairs", "certain",
                                                    "potential")))
        console.print(table)
        if s.untyped:
            console.print(f"  {s.untyped:,} pairs left out: a locus untyped on one side")
