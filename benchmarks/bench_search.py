"""Donor search at registry scale: build SYNTHETIC registries and time searches.

For each size (default 1 million donors, plus 5% cord units): generate a synthetic registry from
the LGPL example CAU frequency set (labelled synthetic), import it, build the search index, then
run searches for patients drawn from the same set (half typed at high resolution, half with
untyped DQB1) at 0, 1 and 2 allowed mismatches with probabilities. Prints import and index
throughput, index size per million donors, p50/p95 search latency and peak memory.

    python benchmarks/bench_search.py --sizes 1000000 [--patients 50] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CAU = (REPO.parent / "shared" / "data" / "haplotype-frequencies"
       / "nmdp-py-graph-imputation-example" / "CAU.freqs.gz")


def _peak_gib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000000")
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--work", type=Path, default=Path("/tmp/graftmatch-bench-search"))
    args = parser.parse_args()
    os.environ.setdefault("GRAFTMATCH_IMGT_DIR",
                          str(REPO.parent / "shared" / "data" / "imgt-hla" / "3.58.0"))
    sys.path.insert(0, str(REPO / "src"))
    from graftmatch.nomenclature.release import load_index
    from graftmatch.prediction.frequencies import read_frequency_set
    from graftmatch.prediction.haplotypes import HaplotypeTable
    from graftmatch.prediction.settings import default_settings
    from graftmatch.registry.index import build_index
    from graftmatch.registry.store import Registry, RegistryError
    from graftmatch.registry.synthetic import generate_registry
    from graftmatch.search.engine import Criteria, Patient, Searcher
    from graftmatch.typing.parser import TypingReader

    reader = TypingReader(load_index())
    population, _ = read_frequency_set(CAU, reader).select("CAU")
    table = HaplotypeTable.compile(population, reader)
    rng = np.random.default_rng(7)
    patients = []
    for n in range(args.patients):
        h1, h2 = rng.choice(len(table), size=2, p=table.freqs / table.freqs.sum())
        a, b = table.haplotype(h1).split("~"), table.haplotype(h2).split("~")
        loci = [(x, y) for locus, x, y in zip(table.loci, a, b, strict=True)
                if not (n % 2 and locus == "DQB1")]
        patients.append("^".join(f"{x}+{y}" for x, y in loci))
    for size in (int(s) for s in args.sizes.split(",")):
        folder = args.work / f"registry-{size}"
        source = args.work / f"registry-{size}.csv.gz"
        cords = size // 20
        print(f"== {size:,} donors + {cords:,} cord units (SYNTHETIC, from CAU)", flush=True)
        if not source.exists():
            t = time.perf_counter()
            generate_registry(source, reader, table, size, cords, seed=size)
            print(f"generate: {time.perf_counter() - t:.1f} s", flush=True)
        if not (folder / "registry.sqlite").exists():
            reg = Registry.create(folder, release=reader.index.release,
                                  frequency_set=str(CAU), population="CAU")
            t = time.perf_counter()
            report = reg.import_file(source, reader)
            imported = time.perf_counter() - t
            print(f"import: {report.accepted:,} records in {imported:.1f} s "
                  f"({report.accepted / imported * 600 / 1e6:.2f} M per 10 min)", flush=True)
            t = time.perf_counter()
            info = build_index(reg, reader, table, default_settings())
            built = time.perf_counter() - t
            rate = (size + cords) / (imported + built) * 600 / 1e6
            print(f"index: {info.typings:,} distinct typings, {info.genotypes:,} genotypes in "
                  f"{built:.1f} s; import + index {rate:.2f} M records per 10 min", flush=True)
            print(f"build peak RSS {_peak_gib():.2f} GiB (this process), "
                  f"{_peak_gib(resource.RUSAGE_CHILDREN):.2f} GiB (largest index worker)",
                  flush=True)
        reg = Registry(folder)
        try:
            Searcher(reg, reader, table)
        except RegistryError:  # built by an older graftmatch (index layout): rebuild it
            t = time.perf_counter()
            info = build_index(reg, reader, table, default_settings())
            print(f"index rebuilt (older layout): {info.typings:,} distinct typings in "
                  f"{time.perf_counter() - t:.1f} s", flush=True)
        t = time.perf_counter()
        searcher = Searcher(reg, reader, table)
        print(f"searcher ready in {time.perf_counter() - t:.2f} s; index "
              f"{searcher.index.size_bytes / 2**20 / (size / 1e6):.0f} MiB per million donors",
              flush=True)
        warm = searcher.search(Patient(patients[0]), Criteria(max_mismatches=0))  # warm-up
        searcher.attach_records(warm.donors[:20] + warm.cords[:20])
        for max_mm in (0, 1, 2):
            times, shown, found = [], [], []
            for p in patients:
                t = time.perf_counter()
                result = searcher.search(Patient(p, weight_kg=20), Criteria(max_mismatches=max_mm))
                times.append(time.perf_counter() - t)
                # What a coordinator sees: the first 20 donors and cord units, with their
                # records and full grades (the pair grader), and the double-unit pairs.
                searcher.attach_records(result.donors[:20] + result.cords[:20] + [
                    u for pair in result.double_cords for u in pair])
                shown.append(time.perf_counter() - t)
                found.append(len(result.donors))
            times.sort()
            shown.sort()
            print(f"  {max_mm} MM: p50 {statistics.median(times):.3f} s, p95 "
                  f"{times[int(0.95 * (len(times) - 1))]:.3f} s, max {times[-1]:.3f} s; with "
                  f"the top 20 shown p50 {statistics.median(shown):.3f} s, p95 "
                  f"{shown[int(0.95 * (len(shown) - 1))]:.3f} s; donors found median "
                  f"{int(statistics.median(found)):,}", flush=True)
        print(f"peak RSS {_peak_gib():.2f} GiB (includes the build when it ran in this process; "
              "run again to measure searching alone)", flush=True)


if __name__ == "__main__":
    main()
