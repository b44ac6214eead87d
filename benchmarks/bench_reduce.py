"""Reduce the 10,000 WMDA donor GL strings to lgx and to P groups, graftmatch beside py-ard.

Both engines are loaded first (index / database), then timed on the same strings in the same
process: "cold" means a fresh engine whose per-string caches are empty (py-ard re-initialised,
graftmatch a new reader and reducer); "warm" repeats the same strings on the same engine.
The outputs are compared string by string; disagreements are counted and the first printed.

    python benchmarks/bench_reduce.py            # reads ../shared/data
"""

from __future__ import annotations

import gzip
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.peers.pyard_offline import open_pyard  # noqa: E402
from graftmatch.nomenclature.index import NomenclatureIndex  # noqa: E402
from graftmatch.nomenclature.reduce import Level, Reducer  # noqa: E402
from graftmatch.typing.parser import TypingReader  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
IMGT = Path(os.environ.get("GRAFTMATCH_IMGT_DIR", SHARED / "imgt-hla" / "3.58.0"))
DONORS = SHARED / "wmda-mvt" / "don.gl.txt.gz"
REPEATS = 3


def timed(fn) -> tuple[float, list[str]]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def timed_map(fn: Callable[[str], str], items: list[str]) -> tuple[float, list[str]]:
    start = time.perf_counter()
    result = [fn(item) for item in items]
    return time.perf_counter() - start, result


def main() -> None:
    with gzip.open(DONORS, "rt") as handle:
        typings = [line.rstrip("\n").split("%", 1)[1] for line in handle if line.strip()]
    print(f"{len(typings):,} WMDA donor GL strings; IPD-IMGT/HLA from {IMGT}")
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, {platform.machine()}")

    with tempfile.TemporaryDirectory() as tmp:
        t_index, index = timed(lambda: NomenclatureIndex.compile(IMGT))
        index.save(Path(tmp) / "index.json")
        t_load, index = timed(lambda: NomenclatureIndex.load(Path(tmp) / "index.json"))
        t_maps, _ = timed(lambda: (index.by_prefix, index.g_members, index.p_members,
                                   index.antigen_members))
    print(f"graftmatch: compile {t_index:.2f} s (once per release), load {t_load:.3f} s "
          f"+ lookup maps {t_maps:.3f} s")
    t_pyard_init, ard = timed(lambda: open_pyard(IMGT, REPO / ".cache" / "pyard-bench"))
    print(f"py-ard 2.4.2: open database {t_pyard_init:.2f} s")

    rows = []
    for ours_level, pyard_level in ((Level.LGX, "lgx"), (Level.P, "P")):
        cold_ours = min(timed_map(Reducer(TypingReader(index), ours_level).reduce_gl, typings)[0]
                        for _ in range(REPEATS))
        warm = Reducer(TypingReader(index), ours_level)
        ours_out = timed_map(warm.reduce_gl, typings)[1]
        warm_ours = min(timed_map(warm.reduce_gl, typings)[0] for _ in range(REPEATS))
        cold_peer = []
        for _ in range(REPEATS):
            ard = open_pyard(IMGT, REPO / ".cache" / "pyard-bench")  # fresh caches
            cold_peer.append(timed_map(partial(ard.redux, redux_type=pyard_level), typings))
        t_cold_peer, peer_out = min(cold_peer, key=lambda x: x[0])
        warm_peer = min(timed_map(partial(ard.redux, redux_type=pyard_level), typings)[0]
                        for _ in range(REPEATS))
        # py-ard re-orders the loci of a GL String; graftmatch keeps the order sent.
        same = sum(sorted(a.split("^")) == sorted(b.split("^"))
                   for a, b in zip(ours_out, peer_out, strict=True))
        first_diff = next(((t, a, b) for t, a, b in zip(typings, ours_out, peer_out, strict=True)
                           if sorted(a.split("^")) != sorted(b.split("^"))), None)
        rows.append((pyard_level, cold_ours, t_cold_peer, warm_ours, warm_peer, same,
                     first_diff))

    n = len(typings)
    print()
    print(f"{'level':<6}{'graftmatch cold':>18}{'py-ard cold':>16}{'ratio':>8}"
          f"{'graftmatch warm':>18}{'py-ard warm':>16}{'ratio':>8}  same output (any locus order)")
    for level, co, cp, wo, wp, same, _ in rows:
        print(f"{level:<6}{n / co:>14,.0f} /s{n / cp:>12,.0f} /s{cp / co:>7.1f}x"
              f"{n / wo:>14,.0f} /s{n / wp:>12,.0f} /s{wp / wo:>7.1f}x"
              f"  {same:,}/{n:,}")
    for level, *_, diff in rows:
        if diff:
            print(f"first {level} difference: {diff[0][:60]}...\n  graftmatch {diff[1][:90]}"
                  f"\n  py-ard     {diff[2][:90]}")


if __name__ == "__main__":
    main()
