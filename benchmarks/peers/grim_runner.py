"""Peer runner: NMDP's py-graph-imputation (GRIM) 1.0.0, one subject at a time, timed.

GRIM (https://github.com/nmdp-bioinformatics/py-graph-imputation, LGPL-3.0) is used here only
as a benchmark peer beside graftmatch's own imputer; graftmatch never imports it. It lives in
its own virtual environment (``make grim-env``) and this script runs with that interpreter; it
does not import graftmatch::

    F=../shared/data/haplotype-frequencies/nmdp-py-graph-imputation-example/CAU.freqs.gz
    benchmarks/.venv-grim/bin/python benchmarks/peers/grim_runner.py --freqs $F \\
        --population CAU --subjects SUBJECTS.txt[.gz] --out OUT.jsonl [--limit 50]

Phases, as GRIM's README runs them, with every configuration key explicit (flags, defaulting
to GRIM's ``conf/minimal-configuration.json``):

1. graph build, timed apart: ``produce_hpf`` turns ``{POP}.freqs.gz`` into GRIM's
   haplotype/population/frequency CSV, ``generate_graph`` writes the node/edge CSV files and
   ``Graph.build_graph`` loads them into memory (the three times are reported separately);
2. imputation, one ``Imputation.impute_one`` call per subject (the function GRIM's file-level
   ``impute_file`` loops over), each timed with ``time.perf_counter`` together with GRIM's own
   ranking/truncation functions (``write_best_prob``, ``write_best_prob_genotype``, written to
   memory), so a subject's time is what GRIM spends on it, minus its file I/O.

Input: one subject a line, ``ID%GL`` (``ID,GL`` accepted), optionally gzipped. GRIM reads allele
lists ('/') itself. It has no genotype lists ('|'): a GL string holding them is run once per
combination of alternatives and the pairs found are merged (a pair found twice counted once),
then ranked by GRIM's functions. It cannot expand MAC or XX codes: such subjects are reported
as ``problem`` without calling GRIM (expand them to allele lists first).

Output: JSON lines, one a subject::

    {"id", "seconds", "status": "ok"|"failed"|"problem", "plan": "a"|"b"|"c",
     "genotypes": [["hap1+hap2", p], ...], "genotypes_total": sum of p over all pairs kept,
     "n_pairs": pairs kept before the top-N cut, "unphased": [["A*..+A*..^B*..", p], ...],
     "unphased_total": ..., "n_unphased": ..., "error": ...}

``p`` is the number GRIM writes: an unnormalised likelihood (frequency products, times 2 for
heterozygous pairs, times plan-B penalties), summed over population pairs; divide by the
``*_total`` field for a posterior over what GRIM kept. ``plan`` is GRIM's: "a" (whole
haplotypes found in the graph), "b" (haplotypes pieced together from blocks of the Plan B
matrix, each join times 1e-4, unknown alleles times factor_missing_data) or "c" (the most common
allele per locus); ``--no-planb`` turns B and C off. ``failed`` is GRIM's ``.miss`` (no
result), ``problem`` its ``.problem`` (GL rejected or an exception) or input refused here. A
summary (graph build times, counts, per-subject time statistics, the configuration) is printed
to stderr as one JSON line and, with ``--summary``, written to a file.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import itertools
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

os.environ.setdefault("TQDM_DISABLE", "1")  # GRIM's graph loading draws progress bars

WORK_DEFAULT = Path(__file__).resolve().parents[1] / ".grim-work"
# Locus indices must follow the alphabetical order of locus names: GRIM sorts each haplotype's
# alleles as strings (gl2haps) and looks the "~"-joined result up among graph nodes named in
# loci_map order. So haplotypes come out as A~B~C~DQB1~DRB1.
LOCI_MAP = {"A": 1, "B": 2, "C": 3, "DQB1": 4, "DRB1": 5}
PLAN_B_MATRIX = [
    [[1, 2, 3, 4, 5]],
    [[1, 2, 3], [4, 5]],
    [[1], [2, 3], [4, 5]],
    [[1, 2, 3], [4], [5]],
    [[1], [2, 3], [4], [5]],
    [[1], [2], [3], [4], [5]],
]
PRIORITY = {"alpha": 0.4999999, "eta": 0, "beta": 1e-7, "gamma": 1e-7, "delta": 0.4999999}
MAC_RE = re.compile(r"\*\d+:[A-Z]{2,}")  # A*01:AB, A*02:XX (GRIM cannot expand them)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--freqs", type=Path, required=True, help="POP.freqs.gz (hap,count,freq)")
    p.add_argument("--population", required=True, help="population code, e.g. CAU")
    p.add_argument("--subjects", type=Path, required=True, help="ID%%GL lines, maybe .gz")
    p.add_argument("--out", type=Path, required=True, help="JSON lines output")
    p.add_argument("--work", type=Path, default=WORK_DEFAULT, help="GRIM's files (graph CSVs)")
    p.add_argument("--summary", type=Path, help="also write the summary JSON here")
    p.add_argument("--limit", type=int, help="impute only the first N subjects")
    p.add_argument("--reuse-graph", action="store_true",
                   help="load the graph CSVs an earlier run left in --work instead of generating "
                        "them again (same --freqs, --population and --freq-trim; phases 1-2 "
                        "then count 0 s); --limit 0 makes such a build-only run")
    g = p.add_argument_group("GRIM configuration (defaults: conf/minimal-configuration.json)")
    g.add_argument("--epsilon", type=float, default=1e-3)
    g.add_argument("--results", type=int, default=10, help="number_of_results (top N kept)")
    g.add_argument("--pop-results", type=int, default=100, help="number_of_pop_results")
    g.add_argument("--planb", action=argparse.BooleanOptionalAction, default=True,
                   help="plan B (recombination blocks) and plan C (common alleles) fallbacks")
    g.add_argument("--muug", action=argparse.BooleanOptionalAction, default=True,
                   help="output_MUUG: unphased multi-locus genotypes")
    g.add_argument("--haplotypes", action=argparse.BooleanOptionalAction, default=True,
                   help="output_haplotypes: phased haplotype pairs")
    g.add_argument("--freq-trim", type=float, default=1e-5, help="freq_trim_threshold")
    g.add_argument("--factor-missing-data", type=float, default=1e-4)
    g.add_argument("--options-threshold", type=int, default=100_000,
                   help="number_of_options_threshold")
    g.add_argument("--max-haps-in-phase", type=int, default=100,
                   help="max_haplotypes_number_in_phase")
    g.add_argument("--unk-priors", choices=["SR", "MR"], default="SR", help="UNK_priors")
    g.add_argument("--save-space", action=argparse.BooleanOptionalAction, default=False,
                   help="save_space_mode")
    g.add_argument("--race", action=argparse.BooleanOptionalAction, default=True,
                   help="give each subject race1=race2=POPULATION, as GRIM's example donor.csv")
    g.add_argument("--max-expansions", type=int, default=64,
                   help="most genotype-list ('|') combinations run for one subject")
    return p.parse_args(argv)


def grim_json_config(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """GRIM's JSON configuration (graph generation reads it from a file)."""
    return {
        "populations": [args.population],
        "freq_trim_threshold": args.freq_trim,
        "priority": PRIORITY,
        "UNK_priors": args.unk_priors,
        "loci_map": LOCI_MAP,
        "factor_missing_data": args.factor_missing_data,
        "Plan_B_Matrix": PLAN_B_MATRIX,
        "planb": args.planb,
        "number_of_options_threshold": args.options_threshold,
        "epsilon": args.epsilon,
        "number_of_results": args.results,
        "number_of_pop_results": args.pop_results,
        "output_MUUG": args.muug,
        "output_haplotypes": args.haplotypes,
        "max_haplotypes_number_in_phase": args.max_haps_in_phase,
        "save_space_mode": args.save_space,
        "freq_data_dir": str(work / "freqs"),
        "freq_file": str(work / "hpf.csv"),
        "pops_count_file": str(work / "pop_counts_file.txt"),
        "graph_files_path": str(work / "csv") + "/",
        "node_csv_file": "nodes.csv",
        "edges_csv_file": "edges.csv",
        "info_node_csv_file": "info_node.csv",
        "top_links_csv_file": "top_links.csv",
    }


def impute_config(conf: dict[str, Any]) -> dict[str, Any]:
    """The in-memory configuration ``Graph`` and ``Imputation`` take (as run_impute builds it)."""
    csv_dir = conf["graph_files_path"]
    return {
        "planb": conf["planb"],
        "pops": conf["populations"],
        "priority": conf["priority"],
        "epsilon": conf["epsilon"],
        "number_of_results": conf["number_of_results"],
        "number_of_pop_results": conf["number_of_pop_results"],
        "output_MUUG": conf["output_MUUG"],
        "output_haplotypes": conf["output_haplotypes"],
        "node_file": csv_dir + conf["node_csv_file"],
        "top_links_file": csv_dir + conf["top_links_csv_file"],
        "edges_file": csv_dir + conf["edges_csv_file"],
        "factor_missing_data": conf["factor_missing_data"],
        "loci_map": conf["loci_map"],
        "matrix_planb": conf["Plan_B_Matrix"],
        "pops_count_file": conf["pops_count_file"],
        "use_pops_count_file": True,
        "number_of_options_threshold": conf["number_of_options_threshold"],
        "max_haplotypes_number_in_phase": conf["max_haplotypes_number_in_phase"],
        "nodes_for_plan_A": [],
        "save_mode": conf["save_space_mode"],
        "UNK_priors": conf["UNK_priors"],
        "full_loci": "".join(sorted(str(v) for v in conf["loci_map"].values())),
    }


def build_graph(args: argparse.Namespace) -> tuple[Any, dict[str, Any], dict[str, float]]:
    """Run GRIM's three graph phases; return the graph, the imputation config and timings."""
    from graph_generation import generate_hpf, generate_neo4j_multi_hpf
    from grim.imputation.networkx_graph import Graph

    work = args.work.resolve() / args.population
    (work / "freqs").mkdir(parents=True, exist_ok=True)
    link = work / "freqs" / f"{args.population}.freqs.gz"  # produce_hpf reads DIR/POP.freqs.gz
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(args.freqs.resolve())
    conf = json.loads(json.dumps(grim_json_config(args, work)))  # GRIM mutates what it gets
    conf_file = work / "grim-config.json"
    conf_file.write_text(json.dumps(conf, indent=2) + "\n")

    times: dict[str, float] = {"hpf_seconds": 0.0, "graph_csv_seconds": 0.0}
    config = impute_config(conf)
    args.reused_graph = args.reuse_graph and Path(config["node_file"]).is_file()
    if not args.reused_graph:
        t0 = time.perf_counter()
        generate_hpf.produce_hpf(conf_file=str(conf_file))
        times["hpf_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        argv, sys.argv = sys.argv, sys.argv[:1]  # generate_graph parses sys.argv itself
        try:
            generate_neo4j_multi_hpf.generate_graph(config_file=str(conf_file))
        finally:
            sys.argv = argv
        times["graph_csv_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    graph = Graph(config)
    graph.build_graph(config["node_file"], config["top_links_file"], config["edges_file"])
    times["graph_load_seconds"] = time.perf_counter() - t0
    times["graph_build_seconds"] = sum(times.values())
    return graph, config, times


def read_subjects(path: Path, limit: int | None) -> Iterator[tuple[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        n = 0
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if limit is not None and n >= limit:
                break
            sep = "%" if "%" in line else ","
            sid, _, gl = line.partition(sep)
            n += 1
            yield sid, gl.split(",")[0]


def expand_genotype_lists(gl: str) -> list[str]:
    """Split '|' genotype lists into the GL strings GRIM can take, one per combination."""
    loci = [locus.split("|") for locus in gl.split("^")]
    return ["^".join(combo) for combo in itertools.product(*loci)]


def ranked(lines: str) -> list[list[Any]]:
    """Parse GRIM's ``name,key,prob,rank`` lines (the name is a placeholder without commas)."""
    out: list[list[Any]] = []
    for line in lines.splitlines():
        key, prob, _rank = line.split(",", 1)[1].rsplit(",", 2)
        out.append([key, float(prob)])
    return out


class Runner:
    def __init__(self, graph: Any, config: dict[str, Any], args: argparse.Namespace) -> None:
        from grim.imputation import impute

        self.impute = impute
        self.imp = impute.Imputation(graph, config)
        self.config = config
        self.args = args
        self.binary = [1] * (len(config["full_loci"]) - 1)  # impute_file's default: all phases
        self.race = args.population if args.race else None

    def impute_one(self, sid: str, gl: str) -> tuple[Any, Any]:
        """GRIM's per-subject call, as impute_file makes it (em off, n=1000)."""
        c = self.config
        self.imp.plan, self.imp.option_1, self.imp.option_2 = "a", 0, 0
        _, res_muugs, res_haps = self.imp.impute_one(
            sid, gl, list(self.binary), self.race, self.race, c["priority"], c["epsilon"],
            1000, c["output_MUUG"], c["output_haplotypes"], c["planb"], False)
        return res_muugs, res_haps

    def run(self, sid: str, gl: str) -> dict[str, Any]:
        rec: dict[str, Any] = {"id": sid}
        if MAC_RE.search(gl):
            rec.update(seconds=0.0, status="problem",
                       error="MAC/XX code: GRIM 1.0.0 does not expand them")
            return rec
        alternatives = expand_genotype_lists(gl)
        if len(alternatives) > self.args.max_expansions:
            rec.update(seconds=0.0, status="problem",
                       error=f"{len(alternatives)} genotype-list combinations > max-expansions")
            return rec
        t0 = time.perf_counter()
        try:
            results = [self.impute_one(sid, alt) for alt in alternatives]
            plan = self.imp.plan
            if any(m is None for m, _ in results):
                rec.update(seconds=time.perf_counter() - t0, status="problem",
                           error="GRIM rejected the GL string (impute_one returned None)")
                return rec
            haps, probs, muug = self.merge(results)
            n = self.config["number_of_results"]
            hap_out, muug_out = io.StringIO(), io.StringIO()
            if self.config["output_haplotypes"]:
                self.impute.write_best_prob("x", haps, probs, n, hap_out, "+")
            if self.config["output_MUUG"]:
                self.impute.write_best_prob_genotype("x", muug, n, muug_out)
            seconds = time.perf_counter() - t0
        except Exception as exc:  # impute_file also catches everything (-> .problem)
            rec.update(seconds=time.perf_counter() - t0, status="problem",
                       error=f"{type(exc).__name__}: {exc}")
            return rec
        rec.update(seconds=seconds, status="ok" if probs or muug else "failed", plan=plan)
        if self.config["output_haplotypes"]:
            rec.update(genotypes=ranked(hap_out.getvalue()),
                       genotypes_total=float(sum(probs)), n_pairs=len(probs))
        if self.config["output_MUUG"]:
            rec.update(unphased=ranked(muug_out.getvalue()),
                       unphased_total=float(sum(muug.values())), n_unphased=len(muug))
        if rec["status"] == "failed":
            rec["error"] = "no imputation result (GRIM .miss)"
        return rec

    @staticmethod
    def merge(results: list[tuple[Any, Any]]) -> tuple[list[Any], list[float], dict[str, float]]:
        """Join the results of genotype-list alternatives; a pair found twice counts once."""
        if len(results) == 1:
            m, h = results[0]
            if h is None or isinstance(h["Haps"], str):  # "Nan": haplotypes not computed
                return [], [], dict(m["Haps"])
            return list(h["Haps"]), list(h["Probs"]), dict(m["Haps"])
        seen: dict[tuple[tuple[str, str], ...], int] = {}
        haps: list[Any] = []
        probs: list[float] = []
        muug: dict[str, float] = {}
        for m, h in results:
            for geno, p in m["Haps"].items():
                muug[geno] = max(p, muug.get(geno, 0.0))
            if h is None or isinstance(h["Haps"], str):
                continue
            for pair, p, pop in zip(h["Haps"], h["Probs"], h["Pops"], strict=True):
                key = tuple(sorted(zip(pair, pop, strict=True)))
                if key in seen:
                    probs[seen[key]] = max(probs[seen[key]], p)
                    continue
                seen[key] = len(probs)
                haps.append(pair)
                probs.append(p)
        return haps, probs, muug


def stats(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {}
    s = sorted(xs)
    return {"mean": statistics.fmean(s), "median": statistics.median(s), "min": s[0],
            "p95": s[min(len(s) - 1, int(0.95 * len(s)))], "max": s[-1], "sum": sum(s)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import grim

    log: TextIO = sys.stderr
    with contextlib.redirect_stdout(log):  # GRIM prints progress to stdout
        graph, config, build_times = build_graph(args)
        settings = {k: v for k, v in json.loads(json.dumps(config)).items()
                    if not k.endswith(("_file", "_files"))}  # before GRIM turns ints to str
        runner = Runner(graph, config, args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        records: list[dict[str, Any]] = []
        with args.out.open("w") as out:
            for sid, gl in read_subjects(args.subjects, args.limit):
                rec = runner.run(sid, gl)
                records.append(rec)
                out.write(json.dumps(rec) + "\n")
    status: dict[str, int] = {}
    for r in records:
        status[r["status"]] = status.get(r["status"], 0) + 1
    summary = {
        "summary": True,
        "grim_version": grim.__version__,
        "freqs": str(args.freqs),
        "freqs_sha256": hashlib.sha256(args.freqs.read_bytes()).hexdigest(),
        "subjects": str(args.subjects),
        "n_subjects": len(records),
        "status": status,
        **build_times,
        "seconds_all": stats([r["seconds"] for r in records]),
        "seconds_ok": stats([r["seconds"] for r in records if r["status"] == "ok"]),
        "plans": {p: sum(r.get("plan") == p for r in records) for p in "abc"},
        "timing": "time.perf_counter around Imputation.impute_one + GRIM's ranking, per subject",
        "config": settings,
        "freq_trim_threshold": args.freq_trim,
        "race": runner.race,
        "reused_graph": args.reused_graph,
    }
    line = json.dumps(summary)
    print(line, file=sys.stderr)
    if args.summary:
        args.summary.write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
