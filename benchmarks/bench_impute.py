"""Impute HLA genotypes with graftmatch beside NMDP's py-graph-imputation (GRIM) 1.0.0.

Correctness: the 1,000 WMDA patients and 10,000 WMDA donors are imputed by both tools against
GRIM's example CAU set (3,380 haplotypes A~C~B~DRB1~DQB1 at two fields). Genotypes are compared
in one spelling: loci sorted by name, the two copies of a locus sorted, and graftmatch's exact
typings (method ``typed``: one genotype, probability 1, in the typing's own names) cut to two
fields. Goals (issue "match prediction"): the top unphased genotype identical for >= 99% of the
subjects both tools impute, and a median total variation distance (TVD) <= 0.01.

How TVD is computed. graftmatch's probabilities are posteriors normalised by the exact total
over every explaining haplotype pair; it lists the pairs of posterior >= 1e-6, merged into
unphased genotypes, and reports the rest as ``truncated_mass``. GRIM's are its written numbers
over ``unphased_total``, the sum over every genotype it kept (its search keeps the 100 likeliest
haplotypes per phase and pairs above an epsilon, so that is not every explaining pair). GRIM
runs twice: a timing pass in its default configuration (epsilon 1e-3, top 10 results, phased
and unphased output) and a correctness pass writing unphased genotypes only, 100,000 of them at
most, so its lists are complete (the report counts those that are not). TVD = 1/2 sum_g |p(g) -
q(g)| over the union of both lists (a genotype one side lacks counts 0 there) + 1/2 (each side's
unlisted mass): an upper bound, exact when both lists are complete. A top-1 disagreement is
sorted into one kind: ``tie`` when both tools give the two top genotypes equal probability (to
1e-9, relative; CAU frequencies are rounded to 5 decimals, so many pairs share a prior), each
tool then keeping the one it met first; ``truncated`` when not tied and GRIM kept fewer
genotypes than graftmatch lists; ``other`` otherwise. A referee computed here independently of
both tools (pure Python, straight from the frequency file, every explaining pair, no cut; allele
names compared as strings, valid for these 2-field typings and set) gives the exact posterior of
every non-tie disagreement, of the largest TVDs and of a few ties; each tool's distance from it
says which one is right.

Speed: graftmatch's per-subject time is ``reader.parse`` + ``Imputer.impute`` (GRIM parses its
own strings); GRIM's is ``Imputation.impute_one`` + its ranking, as its runner times it
(benchmarks/peers/grim_runner.py, run in GRIM's own venv made by ``make grim-env``). Set-up is
reported apart: GRIM's graph build, graftmatch's set reading, table compile and numba warm-up.
Both run on one thread. The throughput ratio is GRIM's summed time over graftmatch's on the
subjects both imputed (goal >= 10x), also on those graftmatch had to impute (not exact). GRIM's
default freq_trim_threshold (1e-5) is divided by the set's summed count column, so it trims
nothing from these sets. A synthetic set (graftmatch's generator, 200,000 haplotypes, no real
frequencies) measures scale: subjects are pairs of its haplotypes drawn by frequency, then
masked: half typed at two fields, half as allele lists of the commonest alleles sharing the
first field (up to 8, the true one included, like the WMDA lists); C and DQB1 each untyped for
half of them. GRIM's graph for it is built by a run of its own, stopped after 5 minutes (GRIM
then skipped), and loaded again by the run that imputes.

    python benchmarks/bench_impute.py                 # full run, about 8 minutes on 2 cores
    python benchmarks/bench_impute.py --quick         # 100 patients, 1,000 donors, 20,000
                                                      # synthetic haplotypes: about 2 minutes
    python benchmarks/bench_impute.py --no-grim --out gm.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"
IMGT = Path(os.environ.setdefault("GRAFTMATCH_IMGT_DIR", str(SHARED / "imgt-hla" / "3.58.0")))

from graftmatch.errors import GraftmatchError  # noqa: E402
from graftmatch.nomenclature.release import load_index  # noqa: E402
from graftmatch.prediction import kernels  # noqa: E402
from graftmatch.prediction.frequencies import Population, read_frequency_set  # noqa: E402
from graftmatch.prediction.haplotypes import HaplotypeTable  # noqa: E402
from graftmatch.prediction.imputation import Imputation, Imputer  # noqa: E402
from graftmatch.prediction.synthetic import write_synthetic_set  # noqa: E402
from graftmatch.typing.parser import TypingReader  # noqa: E402

CAU = SHARED / "haplotype-frequencies" / "nmdp-py-graph-imputation-example" / "CAU.freqs.gz"
PATIENTS = SHARED / "wmda-mvt" / "pat.gl.txt.gz"
DONORS = SHARED / "wmda-mvt" / "don.gl.txt.gz"
GRIM_PYTHON = REPO / "benchmarks" / ".venv-grim" / "bin" / "python"
GRIM_RUNNER = REPO / "benchmarks" / "peers" / "grim_runner.py"
LOCI = ("A", "C", "B", "DRB1", "DQB1")
GRIM_FULL_LISTS = 100_000  # number_of_results of GRIM's correctness pass
GRIM_BUILD_LIMIT_S = 300  # synthetic set: GRIM imputation skipped when its graph takes longer
GRIM_IMPUTE_LIMIT_S = 1800
TIE = 1e-9
TOP_GOAL, TVD_GOAL, SPEED_GOAL = 0.99, 0.01, 10.0
REFEREE_TVD = 10  # largest TVDs per group given to the referee (besides non-tie disagreements)
SYN_SEED, LIST_SIZE, UNTYPED_P, LIST_P = 7, 8, 0.5, 0.5


@dataclass(frozen=True)
class Sizes:
    patients: int | None  # None: all
    donors: int | None
    haplotypes: int  # synthetic set
    synthetic_subjects: int


FULL = Sizes(None, None, 200_000, 1_000)
QUICK = Sizes(100, 1_000, 20_000, 200)


@dataclass
class Result:
    """One subject imputed by one tool; ``posterior`` maps canonical genotypes to
    probabilities."""

    id: str
    seconds: float
    status: str  # graftmatch ok/fallback/unrepresented/error; GRIM ok/failed/problem
    how: str  # graftmatch's method, GRIM's plan
    posterior: dict[str, float] = field(repr=False)
    count: int  # genotypes the tool found (GRIM: before its top-N cut)
    unlisted: float  # the tool's own mass not in ``posterior``

    @property
    def top(self) -> str:
        return max(self.posterior, key=self.posterior.__getitem__)  # first best: its own pick


@dataclass
class Comparison:
    id: str
    group: str
    tvd: float
    same_top: bool
    category: str  # same | tie | truncated | other
    gm: Result
    grim: Result
    referee: dict[str, Any] | None = None


# -- shared helpers ----------------------------------------------------------------------------
def read_gl(path: Path, limit: int | None = None) -> list[tuple[str, str]]:
    with gzip.open(path, "rt") as handle:
        rows = [line.rstrip("\n").split("%", 1) for line in handle if line.strip()]
    return [(ident, gl) for ident, gl in rows[:limit]]


def two_field(name: str) -> str:
    locus, fields = name.split("*", 1)
    parts = fields.split(":")
    if len(parts) <= 2:
        return name
    suffix = parts[-1][-1] if parts[-1][-1].isalpha() else ""
    return f"{locus}*{parts[0]}:{parts[1]}{suffix}"


def canonical(gl: str, project: bool = False) -> str:
    """One spelling for an unphased genotype: copies sorted, loci in alphabetical order."""
    blocks = []
    for block in gl.split("^"):
        copies = block.split("+")
        blocks.append("+".join(sorted(two_field(c) if project else c for c in copies)))
    return "^".join(sorted(blocks, key=lambda b: b.split("*", 1)[0]))


def tvd(p: dict[str, float], q: dict[str, float], p_out: float = 0.0, q_out: float = 0.0
        ) -> float:
    diff = sum(abs(p.get(g, 0.0) - q.get(g, 0.0)) for g in p.keys() | q.keys())
    return 0.5 * (diff + p_out + q_out)


def tied(a: float, b: float) -> bool:
    return abs(a - b) <= TIE * max(a, b)


def timing(seconds: Iterable[float]) -> dict[str, float]:
    a = np.fromiter(seconds, dtype=np.float64)
    if not len(a):
        return {"n": 0}
    return {"n": len(a), "mean": float(a.mean()), "median": float(np.median(a)),
            "p95": float(np.percentile(a, 95)), "max": float(a.max()), "total": float(a.sum())}


def timed_s(t0: float) -> float:
    return time.perf_counter() - t0


# -- graftmatch --------------------------------------------------------------------------------
def gm_posterior(imp: Imputation) -> dict[str, float]:
    g = imp.genotypes
    out: dict[str, float] = {}
    for k in range(len(g)):
        key = canonical(g.genotype(k), project=imp.method == "typed")
        out[key] = out.get(key, 0.0) + float(g.probabilities[k])
    return out


def impute_gm(imputer: Imputer, reader: TypingReader, subjects: list[tuple[str, str]]
              ) -> list[Result]:
    """Parse + impute each subject, timed; reading the result out is not timed."""
    out = []
    for sid, gl in subjects:
        t0 = time.perf_counter()
        try:
            imp = imputer.impute(reader.parse(gl))
        except GraftmatchError as exc:
            out.append(Result(sid, timed_s(t0), "error", str(exc), {}, 0, 0.0))
            continue
        seconds = timed_s(t0)
        out.append(Result(sid, seconds, imp.status, imp.method, gm_posterior(imp),
                          len(imp.genotypes), imp.truncated_mass))
    return out


def compile_gm(path: Path, population: str, reader: TypingReader
               ) -> tuple[Imputer, Population, dict[str, float]]:
    t0 = time.perf_counter()
    pop, _ = read_frequency_set(path, reader).select(population)
    t_read = timed_s(t0)
    t0 = time.perf_counter()
    table = HaplotypeTable.compile(pop, reader)
    imputer = Imputer(table)
    t_compile = timed_s(t0)
    # Warm-up: the commonest haplotype twice, DQB1 untyped, runs every kernel once (numba
    # compiles them, or loads them from its disk cache) without touching the subjects' caches.
    t0 = time.perf_counter()
    warm = "^".join(f"{a}+{a}" for a in table.haplotype(0).split("~")[:-1])
    imputer.impute(reader.parse(warm))
    t_warm = timed_s(t0)
    return imputer, pop, {"read_set_seconds": t_read, "compile_table_seconds": t_compile,
                          "warm_up_seconds": t_warm}


# -- GRIM --------------------------------------------------------------------------------------
def run_grim(freqs: Path, population: str, subjects: Path, tmp: Path, name: str,
             limit: int | None, extra: list[str], timeout: float | None = None
             ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run GRIM's runner in its own venv; its JSON lines and summary. Raises
    subprocess.TimeoutExpired past ``timeout``."""
    out, summary, log = (tmp / f"{name}{ext}" for ext in (".jsonl", ".summary.json", ".log"))
    cmd = [str(GRIM_PYTHON), str(GRIM_RUNNER), "--freqs", str(freqs), "--population",
           population, "--subjects", str(subjects), "--out", str(out), "--summary",
           str(summary), "--work", str(tmp / "grim-work"), *extra]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    with log.open("w") as handle:
        rc = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout,
                            check=False).returncode
    if rc:
        tail = log.read_text().splitlines()[-5:]
        raise RuntimeError(f"GRIM runner failed ({rc}): " + " | ".join(tail))
    with out.open() as handle:
        records = [json.loads(line) for line in handle]
    return records, json.loads(summary.read_text())


def grim_result(rec: dict[str, Any]) -> Result:
    total = rec.get("unphased_total") or 0.0
    post: dict[str, float] = {}
    for gl, p in rec.get("unphased", []):
        key = canonical(gl)
        post[key] = post.get(key, 0.0) + p / total
    cut = len(rec.get("unphased", [])) < rec.get("n_unphased", 0)
    unlisted = max(0.0, 1.0 - sum(post.values())) if cut else 0.0
    return Result(rec["id"], rec["seconds"], rec["status"], rec.get("plan") or "-", post,
                  rec.get("n_unphased", 0), unlisted)


def grim_setup(summary: dict[str, Any]) -> dict[str, float]:
    return {k: summary[k] for k in ("hpf_seconds", "graph_csv_seconds", "graph_load_seconds",
                                    "graph_build_seconds")}


# -- comparison and referee --------------------------------------------------------------------
def compare(group: str, gm: list[Result], grim: list[Result]) -> list[Comparison]:
    theirs = {r.id: r for r in grim}
    out = []
    for ours in gm:
        other = theirs.get(ours.id)
        if other is None or ours.status == "error" or other.status != "ok":
            continue
        a, b, p, q = ours.top, other.top, ours.posterior, other.posterior
        if a == b:
            category = "same"
        elif tied(p[a], p.get(b, 0.0)) and tied(q.get(a, 0.0), q[b]):
            category = "tie"
        elif other.count < ours.count:
            category = "truncated"
        else:
            category = "other"
        out.append(Comparison(ours.id, group, tvd(ours.posterior, other.posterior,
                                                  ours.unlisted, other.unlisted),
                              a == b, category, ours, other))
    return out


class Referee:
    """The exact posterior from the frequency file, every explaining pair, no cut."""

    def __init__(self, path: Path) -> None:
        with gzip.open(path, "rt") as handle:
            rows = [line.strip().split(",") for line in handle if line.strip()]
        self.haps = [tuple(r[0].split("~")) for r in rows]
        self.freqs = [float(r[2]) for r in rows]
        self.loci = tuple(a.split("*", 1)[0] for a in self.haps[0])

    def posterior(self, gl: str) -> dict[str, float] | None:
        typed = []
        for block in gl.split("^"):
            if "|" in block or "~" in block:
                return None
            copies = [frozenset(c.split("/")) for c in block.split("+")]
            locus = block.split("*", 1)[0]
            if locus in self.loci:
                typed.append((self.loci.index(locus), copies[0], copies[-1]))
        cand = [h for h, hap in enumerate(self.haps)
                if all(hap[c] in s1 or hap[c] in s2 for c, s1, s2 in typed)]
        post: dict[str, float] = {}
        for x, i in enumerate(cand):
            hi, fi = self.haps[i], self.freqs[i]
            for j in cand[x:]:
                hj = self.haps[j]
                if all((hi[c] in s1 and hj[c] in s2) or (hi[c] in s2 and hj[c] in s1)
                       for c, s1, s2 in typed):
                    key = canonical("^".join(f"{a}+{b}" for a, b in zip(hi, hj, strict=True)))
                    post[key] = post.get(key, 0.0) + fi * self.freqs[j] * (1 if i == j else 2)
        total = sum(post.values())
        return {k: v / total for k, v in post.items()} if total else None

    def judge(self, c: Comparison, gl: str) -> dict[str, Any] | None:
        exact = self.posterior(gl)
        if exact is None:
            return None
        best = max(exact.values())
        return {"tvd_graftmatch": tvd(c.gm.posterior, exact, c.gm.unlisted),
                "tvd_grim": tvd(c.grim.posterior, exact, c.grim.unlisted),
                "genotypes": len(exact), "best": best,
                "graftmatch_top_best": tied(exact.get(c.gm.top, 0.0), best),
                "grim_top_best": tied(exact.get(c.grim.top, 0.0), best)}


# -- synthetic subjects ------------------------------------------------------------------------
def draw_subjects(pop: Population, count: int, seed: int) -> list[tuple[str, str]]:
    """Pairs of the set's haplotypes drawn by frequency, masked (see the module docstring)."""
    rng = np.random.default_rng(seed)
    freqs = pop.frequencies / pop.total
    loci = [a.split("*", 1)[0] for a in pop.haplotypes[0]]
    # per locus, the set's alleles by marginal frequency, grouped by first field
    families: list[dict[str, list[str]]] = []
    for col in range(len(loci)):
        marginal: dict[str, float] = {}
        for hap, f in zip(pop.haplotypes, freqs, strict=True):
            marginal[hap[col]] = marginal.get(hap[col], 0.0) + float(f)
        fam: dict[str, list[str]] = {}
        for name in sorted(marginal, key=lambda n: -marginal[n]):
            fam.setdefault(name.split(":", 1)[0], []).append(name)
        families.append(fam)

    def allele_list(col: int, name: str) -> str:
        common = families[col][name.split(":", 1)[0]][:LIST_SIZE]
        members = common if name in common else [*common[:LIST_SIZE - 1], name]
        return "/".join(sorted(members))

    out = []
    for k, pair in enumerate(rng.choice(len(freqs), size=(count, 2), p=freqs)):
        lists = rng.random() < LIST_P
        blocks = []
        for col, locus in enumerate(loci):
            if locus in ("C", "DQB1") and rng.random() < UNTYPED_P:
                continue
            copies = [pop.haplotypes[int(h)][col] for h in pair]
            blocks.append("+".join(allele_list(col, c) if lists else c for c in copies))
        out.append((f"S{k + 1:06d}", "^".join(blocks)))
    return out


# -- the run -----------------------------------------------------------------------------------
@dataclass
class Run:
    """Everything measured, for the report."""

    groups: dict[str, list[tuple[str, str]]]  # WMDA group -> (id, GL)
    gm: dict[str, list[Result]]  # patients, donors, synthetic
    grim: dict[str, list[Result]]  # timing passes (GRIM defaults)
    grim_full: dict[str, list[Result]]  # correctness passes (complete unphased lists)
    setup: dict[str, dict[str, dict[str, float]]]  # set -> tool -> phase -> seconds
    numba: str  # where numba's kernels came from
    grim_settings: dict[str, Any]
    synthetic_grim: str  # what became of GRIM on the synthetic set


def measure(sizes: Sizes, use_grim: bool, grim_build_limit: float = GRIM_BUILD_LIMIT_S,
            grim_synthetic_subjects: int | None = None) -> Run:
    t0 = time.perf_counter()
    index = load_index()
    reader = TypingReader(index)
    t_index = timed_s(t0)
    imputer, cau_pop, gm_setup = compile_gm(CAU, "CAU", reader)
    numba = ("from numba's disk cache" if sum(kernels.impute.stats.cache_hits.values())
             else "compiled now")
    groups = {"patients": read_gl(PATIENTS, sizes.patients),
              "donors": read_gl(DONORS, sizes.donors)}
    gm = {g: impute_gm(imputer, reader, subjects) for g, subjects in groups.items()}
    cau = f"CAU ({len(cau_pop.haplotypes):,} haplotypes)"
    run = Run(groups, gm, {}, {}, {cau: {"graftmatch": {"load_index_seconds": t_index,
                                                        **gm_setup}}},
              numba, {}, "not run (--no-grim)")
    with tempfile.TemporaryDirectory(prefix="bench-impute-") as tmp_name:
        tmp = Path(tmp_name)
        if use_grim:
            for g, path in (("patients", PATIENTS), ("donors", DONORS)):
                # the first run builds GRIM's graph; the others load what it wrote
                limit = len(groups[g])
                recs, summary = run_grim(CAU, "CAU", path, tmp, f"{g}-timing", limit,
                                         ["--reuse-graph"])
                run.grim[g] = [grim_result(r) for r in recs]
                run.setup[cau].setdefault("GRIM", grim_setup(summary))
                recs, summary = run_grim(CAU, "CAU", path, tmp, f"{g}-full", limit, [
                    "--results", str(GRIM_FULL_LISTS), "--no-haplotypes", "--reuse-graph"])
                run.grim_full[g] = [grim_result(r) for r in recs]
            run.grim_settings = {
                "version": summary["grim_version"],
                "timing_pass": "defaults (epsilon 1e-3, 10 results, phased + unphased)",
                "correctness_pass": f"{GRIM_FULL_LISTS:,} results, unphased only",
                "config": summary["config"], "freq_trim_threshold": summary["freq_trim_threshold"]}

        syn_path = tmp / "SYN.freqs.gz"  # GRIM names the population after the file
        t0 = time.perf_counter()
        write_synthetic_set(syn_path, index, LOCI, sizes.haplotypes, seed=SYN_SEED)
        t_write = timed_s(t0)
        syn_imputer, syn_pop, syn_setup = compile_gm(syn_path, "SYN", reader)
        subjects = draw_subjects(syn_pop, sizes.synthetic_subjects, SYN_SEED)
        syn_file = tmp / "synthetic-subjects.txt"
        syn_file.write_text("".join(f"{s}%{gl}\n" for s, gl in subjects))
        gm["synthetic"] = impute_gm(syn_imputer, reader, subjects)
        syn = f"synthetic ({sizes.haplotypes:,} haplotypes)"
        run.setup[syn] = {"graftmatch": {"write_set_seconds": t_write, **syn_setup}}
        if use_grim:
            try:  # a build-only run first, so that a slow build is stopped at its limit
                _, summary = run_grim(syn_path, "SYN", syn_file, tmp, "synthetic-build", 0, [],
                                      timeout=grim_build_limit)
                run.setup[syn]["GRIM"] = grim_setup(summary)
                recs, _ = run_grim(syn_path, "SYN", syn_file, tmp, "synthetic",
                                   grim_synthetic_subjects, ["--reuse-graph"],
                                   timeout=GRIM_IMPUTE_LIMIT_S)
                run.grim["synthetic"] = [grim_result(r) for r in recs]
                run.synthetic_grim = "run (graph built by a first run, loaded by the next)"
            except subprocess.TimeoutExpired as exc:
                phase = ("imputation" if "GRIM" in run.setup[syn]
                         else "graph build (CSV generation + load)")
                run.synthetic_grim = f"skipped: its {phase} did not finish in {exc.timeout:.0f} s"
            except RuntimeError as exc:
                run.synthetic_grim = f"failed: {exc}"
    return run


# -- report ------------------------------------------------------------------------------------
def table(title: str, columns: Iterable[str], left: int = 1, **kw: Any) -> Table:
    """A report table whose first ``left`` columns are left-aligned, the others right."""
    t = Table(title=title)
    for k, col in enumerate(columns):
        t.add_column(col, justify="left" if k < left else "right", **kw)
    return t


def report_setup(console: Console, run: Run) -> None:
    t = table("Set-up (not in per-subject times)", ("set", "tool", "phase", "seconds"), 3)
    for name, tools in run.setup.items():
        for tool, phases in tools.items():
            for phase, secs in phases.items():
                label = phase.removesuffix("_seconds").replace("_", " ")
                if phase == "warm_up_seconds" and name.startswith("CAU"):
                    label += f" (numba kernels {run.numba})"
                t.add_row(name, tool, label, f"{secs:,.3f}")
        t.add_section()
    console.print(t)


def ms(x: float) -> str:
    return f"{1000 * x:,.3f}"


def ratio(gm: list[Result], grim: list[Result], imputed_only: bool = False) -> float | None:
    """GRIM's summed time over graftmatch's, on the subjects both imputed."""
    theirs = {r.id: r.seconds for r in grim if r.status == "ok"}
    both = [r for r in gm if r.id in theirs and r.status != "error"
            and not (imputed_only and r.how == "typed")]
    ours = sum(r.seconds for r in both)
    return sum(theirs[r.id] for r in both) / ours if ours else None


def report_speed(console: Console, run: Run) -> dict[str, Any]:
    t = table("Per-subject time, ms (graftmatch: parse + impute; GRIM: impute_one + rank)",
              ("group", "tool", "subjects", "mean", "median", "p95", "max", "total s",
               "subjects/s"), 2)
    out: dict[str, Any] = {}
    for g, results in run.gm.items():
        rows = {"graftmatch": ("graftmatch", results),
                "graftmatch_imputed": (f"graftmatch, the {sum(r.how != 'typed' for r in results):,}"
                                       " not exact", [r for r in results if r.how != "typed"])}
        if g in run.grim:
            rows["grim"] = ("GRIM (defaults)", run.grim[g])
        if g in run.grim_full:
            rows["grim_unphased_full_lists"] = ("GRIM (unphased only, full lists)",
                                                run.grim_full[g])
        out[g] = {}
        for k, (label, rs) in rows.items():
            s = out[g][k] = timing(r.seconds for r in rs)
            if s["n"]:
                t.add_row(g if k == "graftmatch" else "", label, f"{int(s['n']):,}",
                          ms(s["mean"]), ms(s["median"]), ms(s["p95"]), ms(s["max"]),
                          f"{s['total']:,.2f}", f"{s['n'] / s['total']:,.0f}")
        t.add_section()
        if g in run.grim:
            out[g]["ratio"] = ratio(results, run.grim[g])
            out[g]["ratio_imputed_only"] = ratio(results, run.grim[g], imputed_only=True)
            out[g]["ratio_vs_unphased_full_lists"] = (ratio(results, run.grim_full[g])
                                                      if g in run.grim_full else None)
    console.print(t)
    for g, s in out.items():
        if s.get("ratio"):
            extra = "".join(f"; {s[k]:,.1f}x {label}" for k, label in (
                ("ratio_imputed_only", "on the subjects it had to impute"),
                ("ratio_vs_unphased_full_lists", "GRIM's unphased-only full-list pass")) if s[k])
            console.print(f"  {g}: graftmatch has {s['ratio']:,.1f}x GRIM's throughput (GRIM "
                          f"defaults){extra}", highlight=False)
    if run.grim_full:
        both = ratio([r for g in run.grim_full for r in run.gm[g]],
                     [r for g in run.grim_full for r in run.grim[g]])
        out["wmda_ratio"] = both
        console.print(f"  WMDA patients + donors: {both or 0:,.1f}x; goal >= {SPEED_GOAL:.0f}x "
                      + ("met" if both and both >= SPEED_GOAL else "NOT met"), highlight=False)
    console.print(f"  synthetic set, GRIM: {run.synthetic_grim}")
    return out


def agreement(cs: list[Comparison]) -> dict[str, Any]:
    d = np.array([c.tvd for c in cs])
    return {"subjects": len(cs),
            "top1_identical": sum(c.same_top for c in cs) / len(cs),
            "top1_identical_or_tied": sum(c.category in ("same", "tie") for c in cs) / len(cs),
            "tvd_median": float(np.median(d)), "tvd_mean": float(d.mean()),
            "tvd_p95": float(np.percentile(d, 95)), "tvd_max": float(d.max()),
            "tvd_over_goal": int((d > TVD_GOAL).sum()),
            "grim_lists_cut": sum(c.grim.unlisted > 0 for c in cs),
            "categories": {k: sum(c.category == k for c in cs)
                           for k in ("same", "tie", "truncated", "other")}}


def report_agreement(console: Console, run: Run) -> dict[str, Any]:
    comparisons = [c for g in run.grim_full for c in compare(g, run.gm[g], run.grim_full[g])]
    # the referee: every non-tie disagreement, the largest TVDs and a few ties of each group
    picked = {c.id: c for c in comparisons if c.category not in ("same", "tie")}
    for g in run.grim_full:
        ranked = sorted((c for c in comparisons if c.group == g), key=lambda c: -c.tvd)
        ties = [c for c in comparisons if c.group == g and c.category == "tie"]
        picked.update((c.id, c) for c in ranked[:REFEREE_TVD] + ties[:3])
    referee, gl_of = Referee(CAU), {s: gl for sub in run.groups.values() for s, gl in sub}
    t0 = time.perf_counter()
    for c in picked.values():
        c.referee = referee.judge(c, gl_of[c.id])
    t_referee = timed_s(t0)

    out: dict[str, Any] = {}
    t = table("Agreement with GRIM on the CAU set (unphased posteriors)",
              ("group", "both imputed", "one only: gm, GRIM", "top-1 identical",
               "identical or tied", "median TVD", "mean TVD", "p95 TVD", "max TVD",
               f"TVD > {TVD_GOAL}", "GRIM lists cut"))
    for g in [*run.grim_full, "all"]:
        a = out[g] = agreement([c for c in comparisons if g in ("all", c.group)])
        only = "-"
        if g != "all":
            ok_gm = {r.id for r in run.gm[g] if r.status != "error"}
            ok_grim = {r.id for r in run.grim_full[g] if r.status == "ok"}
            a["only_graftmatch"], a["only_grim"] = len(ok_gm - ok_grim), len(ok_grim - ok_gm)
            only = f"{a['only_graftmatch']:,}, {a['only_grim']:,}"
        t.add_row(g, f"{a['subjects']:,}", only, f"{100 * a['top1_identical']:.2f}%",
                  f"{100 * a['top1_identical_or_tied']:.2f}%", f"{a['tvd_median']:.2e}",
                  f"{a['tvd_mean']:.2e}", f"{a['tvd_p95']:.2e}", f"{a['tvd_max']:.2e}",
                  f"{a['tvd_over_goal']:,}", f"{a['grim_lists_cut']:,}")
    console.print(t)
    a = out["all"]
    met = a["top1_identical"] >= TOP_GOAL and a["tvd_median"] <= TVD_GOAL
    console.print(f"  goals (top-1 identical >= {100 * TOP_GOAL:.0f}%, median TVD <= {TVD_GOAL})"
                  f": {'met' if met else 'NOT met'}; top-1 kinds: " + ", ".join(
                      f"{k} {v:,}" for k, v in a["categories"].items()), highlight=False)

    dis = [c for c in comparisons if not c.same_top]
    t = table(f"Every top-1 disagreement ({len(dis)}): the loci where graftmatch's top genotype"
              " differs from GRIM's (the others are identical)",
              ("subject", "kind", "gm top vs GRIM top", "P(gm top), P(GRIM top): by gm | by "
               "GRIM", "gm | GRIM plan", "genotypes gm/GRIM", "GRIM mass: own, gm", "best top"),
              8)
    for c in dis:
        a_, b_ = c.gm.top, c.grim.top
        t.add_row(c.id, c.category, differing_loci(a_, b_),
                  f"{c.gm.posterior[a_]:.6f}, {c.gm.posterior.get(b_, 0):.6f} | "
                  f"{c.grim.posterior.get(a_, 0):.6f}, {c.grim.posterior[b_]:.6f}",
                  f"{c.gm.status}/{c.gm.how} | {c.grim.how}",
                  f"{c.gm.count:,}/{c.grim.count:,}", coverage(c), verdict(c.referee))
    console.print(t)

    t = table(f"Largest TVDs and non-tie disagreements against the exact posterior (referee, "
              f"{t_referee:.1f} s)", ("subject", "kind", "TVD gm-GRIM", "genotypes gm/GRIM/exact",
                                      "GRIM mass: own, gm", "TVD gm-exact", "TVD GRIM-exact",
                                      "best top"), 2)
    for c in sorted(picked.values(), key=lambda c: -c.tvd):
        r = c.referee
        if c.category != "tie" and r is not None:
            t.add_row(c.id, c.category, f"{c.tvd:.4f}",
                      f"{c.gm.count:,}/{c.grim.count:,}/{r['genotypes']:,}", coverage(c),
                      f"{r['tvd_graftmatch']:.2e}", f"{r['tvd_grim']:.2e}", verdict(r))
    console.print(t)
    out["disagreements"] = [record(c) for c in dis]
    out["refereed"] = [record(c) for c in picked.values()]

    if "synthetic" in run.grim:
        cs = compare("synthetic", run.gm["synthetic"], run.grim["synthetic"])
        same = sum(c.category in ("same", "tie") for c in cs)
        out["synthetic_top1_identical_or_tied"] = same / len(cs) if cs else None
        console.print(f"synthetic set: top-1 identical or tied for {same:,} of {len(cs):,} "
                      "subjects both imputed (GRIM's timing pass lists its top 10: no TVD)")
    return out


def differing_loci(a: str, b: str) -> str:
    """``C 03:04+06:02 vs 03:03+06:02``, one line per locus where two genotypes differ."""
    def short(block: str) -> str:
        return "+".join(c.split("*", 1)[1] for c in block.split("+"))
    return "\n".join(f"{x.split('*', 1)[0]} {short(x)} vs {short(y)}"
                     for x, y in zip(a.split("^"), b.split("^"), strict=True) if x != y)


def coverage(c: Comparison) -> str:
    """Mass of GRIM's list: of GRIM's own total, and under graftmatch's posterior."""
    under_gm = sum(c.gm.posterior.get(g, 0.0) for g in c.grim.posterior)
    return f"{1 - c.grim.unlisted:.4f}, {under_gm:.4f}"


def verdict(r: dict[str, Any] | None) -> str:
    """Whose top genotype is a most likely one under the exact posterior."""
    if r is None:
        return "-"
    return {(True, True): "both", (True, False): "gm only", (False, True): "GRIM only",
            (False, False): "neither"}[r["graftmatch_top_best"], r["grim_top_best"]]


def record(c: Comparison) -> dict[str, Any]:
    return {"id": c.id, "group": c.group, "kind": c.category, "tvd": c.tvd,
            "graftmatch": {"top": c.gm.top, "p_top": c.gm.posterior[c.gm.top],
                           "p_grim_top": c.gm.posterior.get(c.grim.top, 0.0),
                           "status": c.gm.status, "method": c.gm.how,
                           "genotypes": c.gm.count, "truncated_mass": c.gm.unlisted},
            "grim": {"top": c.grim.top, "p_top": c.grim.posterior[c.grim.top],
                     "p_graftmatch_top": c.grim.posterior.get(c.gm.top, 0.0),
                     "plan": c.grim.how, "genotypes": c.grim.count,
                     "unlisted_mass": c.grim.unlisted},
            "grim_list_mass": coverage(c), "referee": c.referee}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="100 patients, 1,000 donors, 20,000 synthetic haplotypes")
    p.add_argument("--no-grim", action="store_true", help="graftmatch alone")
    p.add_argument("--out", type=Path, help="write every figure to this JSON file")
    p.add_argument("--grim-build-limit", type=float, default=GRIM_BUILD_LIMIT_S,
                   help="seconds GRIM may take to build its graph for the synthetic set "
                        "(its 200,000-haplotype build takes about 400 s and 20 GB)")
    p.add_argument("--grim-synthetic-subjects", type=int,
                   help="impute only the first N synthetic subjects with GRIM")
    args = p.parse_args()
    if not args.no_grim and not GRIM_PYTHON.exists():
        sys.exit(f"{GRIM_PYTHON} is missing: run `make grim-env`, or pass --no-grim")
    sizes = QUICK if args.quick else FULL
    console = Console(width=None if sys.stdout.isatty() else 170)
    t_script = time.perf_counter()
    console.print(f"python {platform.python_version()}, {os.cpu_count()} cores, "
                  f"{platform.machine()}; IPD-IMGT/HLA from {IMGT}"
                  + ("; --quick" if args.quick else "") + ("; --no-grim" if args.no_grim else ""))
    run = measure(sizes, not args.no_grim, args.grim_build_limit,
                  args.grim_synthetic_subjects)
    report_setup(console, run)
    figures = {"quick": args.quick, "sizes": asdict(sizes), "grim_settings": run.grim_settings,
               "setup": run.setup, "synthetic_grim": run.synthetic_grim,
               "speed": report_speed(console, run)}
    if run.grim_full:
        figures["agreement"] = report_agreement(console, run)
    console.print(f"\nscript {timed_s(t_script):.1f} s")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1) + "\n")
        console.print(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
