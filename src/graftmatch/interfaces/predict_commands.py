"""``graftmatch impute``, ``graftmatch predict`` and ``graftmatch hf``: match prediction from
haplotype frequencies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from graftmatch.errors import GraftmatchError
from graftmatch.interfaces.common import err, fail, out, parse_loci, print_json
from graftmatch.prediction.imputation import Imputation, confidence
from graftmatch.prediction.match_probability import MatchPrediction
from graftmatch.services import prediction
from graftmatch.services.common import no_notice

hf_app = typer.Typer(help="Haplotype frequency sets: check one, or write a synthetic one.",
                     no_args_is_help=True)

HfOption = Annotated[Path, typer.Option(
    "--hf", help="Haplotype frequency set: GRIM POP.freqs(.gz), hpf.csv, or graftmatch JSON")]
SettingsOption = Annotated[Path | None, typer.Option(
    help="A site's imputation settings (default: the built-in imputation.toml)")]
TopOption = Annotated[int, typer.Option(help="Genotypes to show per subject (0: all)")]
PopulationHelp = ("Population in the set (e.g. CAU); a mix as CAU:0.7,AFA:0.3. Missing "
                  "populations fall back to a broader one, then the pooled set; the steps are "
                  "reported")


def _note(notice: str) -> None:
    """A frequency set's notice, on stderr."""
    err.print(f"[yellow]note:[/] {escape(notice)}", markup=True, highlight=False)


def impute(
    typing_text: Annotated[str, typer.Argument(metavar="GL", help="Typing (GL String)")],
    hf: HfOption,
    population: Annotated[str | None, typer.Option(help=PopulationHelp)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    top: TopOption = 10,
    settings: SettingsOption = None,
) -> None:
    """Impute a typing: the likely genotypes, with probabilities, from haplotype frequencies
    (untyped loci imputed; status ok, population-substituted, fallback or unrepresented, with
    the reason)."""
    try:
        outcome = prediction.impute(typing_text, hf, population, settings,
                                     notify=no_notice if json_out else _note)
    except GraftmatchError as exc:
        raise fail(exc, json_out) from None
    limit = top or None
    if json_out:
        print_json(outcome.to_dict(limit))
        return
    _print_imputation("subject", outcome.imputation, limit)


def _print_imputation(label: str, result: Imputation, limit: int | None) -> None:
    g = result.genotypes
    out.print(f"[bold]{label}[/]: status [bold]{_status(result.status)}[/] ({result.method}), "
              f"population {result.population}, {len(g):,} genotype(s), truncated mass "
              f"{result.truncated_mass:.2e}")
    # An imputed status names the population steps in its reasons; an exact typing has none.
    for line in result.reasons or result.population_steps:
        out.print(f"  [yellow]note[/] {line}")
    if result.imputed_loci:
        out.print(f"  imputed (untyped) loci: {', '.join(result.imputed_loci)}")
    if result.ignored_loci:
        out.print(f"  typed but not in the set (not imputed): {', '.join(result.ignored_loci)}")
    table = Table()
    table.add_column("#", justify="right")
    table.add_column("probability", justify="right")
    for locus in g.loci:
        table.add_column(locus)
    for i in range(len(g) if limit is None else min(limit, len(g))):
        table.add_row(str(i + 1), f"{g.probabilities[i]:.4f}",
                      *(g.locus_text(i, col).replace("+", " + ") for col in range(len(g.loci))))
    out.print(table)


def _status(status: str) -> str:
    return status if confidence(status) == "normal" else f"{status} (lowered confidence)"


def predict(
    patient: Annotated[str, typer.Option(help="Patient typing (GL String)")],
    donor: Annotated[str, typer.Option(help="Donor typing (GL String)")],
    hf: HfOption,
    patient_population: Annotated[str | None, typer.Option(help=PopulationHelp)] = None,
    donor_population: Annotated[str | None, typer.Option(help=PopulationHelp)] = None,
    loci: Annotated[str | None, typer.Option(
        help="Loci to count, e.g. A,B,C,DRB1 (8/8); default: every locus of the set")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    top: TopOption = 5,
    settings: SettingsOption = None,
) -> None:
    """Match probabilities for a patient and a donor: P(0..4 mismatches), per locus P(0/1/2),
    and the DPB1 permissive-TCE probability when the set has DPB1."""
    try:
        outcome = prediction.predict(patient, donor, hf, patient_population=patient_population,
                                     donor_population=donor_population,
                                     loci=parse_loci(loci), settings=settings,
                                     notify=no_notice if json_out else _note)
    except GraftmatchError as exc:
        raise fail(exc, json_out) from None
    if json_out:
        print_json(outcome.to_dict(top or None))
        return
    _print_prediction(outcome.prediction, top or None)


def _print_prediction(result: MatchPrediction, limit: int | None) -> None:
    total = 2 * len(result.loci)
    out.print(f"[bold]match probabilities[/] over {', '.join(result.loci)} ({total}/{total}): "
              f"status [bold]{_status(result.status)}[/]")
    summary = Table()
    summary.add_column("mismatches", justify="right")
    summary.add_column("match", justify="right")
    summary.add_column("probability", justify="right")
    for k, p in enumerate(result.p_mismatches[:5]):
        summary.add_row(str(k), f"{total - k}/{total}", f"{p:.4f}")
    rest = sum(result.p_mismatches[5:])
    if rest:
        summary.add_row("5+", f"<={total - 5}/{total}", f"{rest:.4f}")
    out.print(summary)
    per_locus = Table()
    for column in ("locus", "P(0)", "P(1)", "P(2)", "DPB1 TCE"):
        per_locus.add_column(column, justify="right" if column.startswith("P") else "left")
    for lp in result.per_locus:
        tce = ", ".join(f"{k} {v:.3f}" for k, v in lp.tce.items() if v) if lp.tce else "-"
        per_locus.add_row(lp.locus, *(f"{p:.4f}" for p in lp.p), tce)
    out.print(per_locus)
    if result.p_permissive_dpb1 is not None:
        out.print(f"P(DPB1 matched or TCE-permissive) = {result.p_permissive_dpb1:.4f}")
    if result.truncated_mass > 1e-9:
        out.print(f"unassigned (truncated) probability: {result.truncated_mass:.2e}")
    _print_imputation("patient", result.patient, limit)
    _print_imputation("donor", result.donor, limit)


@hf_app.command("info")
def hf_info(
    path: Annotated[Path, typer.Argument(help="The frequency set")],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Read and check a frequency set: populations, loci, resolution, sums, notices."""
    try:
        hf = prediction.frequency_set_info(path)
    except GraftmatchError as exc:
        raise fail(exc, json_out) from None
    if json_out:
        print_json(prediction.frequency_set_dict(hf))
        return
    out.print(f"{path}: {'~'.join(hf.loci)}, {hf.resolution}, release {hf.release}"
              f"{', SYNTHETIC' if hf.synthetic else ''}; source {hf.source}"
              f"{'; licence ' + hf.licence if hf.licence else ''}", highlight=False)
    for name, p in hf.populations.items():
        out.print(f"  {name}: {len(p.haplotypes):,} haplotypes, frequencies sum to "
                  f"{p.total:.5f}")
    for notice in hf.notices:
        out.print(f"  [yellow]note[/] {notice}")


@hf_app.command("synthetic")
def hf_synthetic(
    path: Annotated[Path, typer.Argument(help="Where to write (.json, .json.gz, .freqs.gz)")],
    haplotypes: Annotated[int, typer.Option(help="Number of distinct haplotypes")] = 200_000,
    loci: Annotated[str, typer.Option(help="Loci, in haplotype order")] = "A,C,B,DRB1,DQB1",
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same set)")] = 0,
) -> None:
    """Write a SYNTHETIC frequency set over real allele names for scale tests (labelled
    synthetic; not real frequencies of any population)."""
    try:
        meta = prediction.write_synthetic_frequencies(path, parse_loci(loci) or [], haplotypes,
                                                      seed)
    except GraftmatchError as exc:
        raise fail(exc) from None
    out.print(f"wrote {path}: {meta['haplotypes']:,} SYNTHETIC haplotypes over "
              f"{'~'.join(meta['loci'])} (release {meta['release']}, seed {seed})",
              highlight=False)
