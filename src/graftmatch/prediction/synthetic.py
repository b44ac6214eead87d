"""Synthetic haplotype frequency sets for scale tests. Always labelled synthetic.

Real sets hold 10^4 to 10^6 haplotypes over real allele names with a steep skew (the top CAU
haplotype A*01:01~C*07:01~B*08:01~DRB1*03:01~DQB1*02:01 alone is 7%) [15 Gragert 2013]. The
generator mimics that shape, not any population: per locus it takes the release's expressing
2-field names, ranks them so that low second fields come first (common alleles were named
first: A*02:01, A*01:01, B*07:02), gives them Zipf weights, draws distinct haplotypes from those
allele weights, and gives haplotypes Zipf frequencies ranked by their alleles' weights (with
noise). Nothing in it is a
real frequency; ``metadata.synthetic`` is true and the source says so.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from graftmatch.atomic import atomic_file
from graftmatch.errors import GraftmatchError
from graftmatch.nomenclature.index import NomenclatureIndex
from graftmatch.nomenclature.names import split_name

#: Zipf exponents: alleles per locus, and haplotypes (1.0 gives a top haplotype near 7-8% in
#: a 10^5-haplotype set, like the CAU example set).
ALLELE_SKEW = 1.3
HAPLOTYPE_SKEW = 1.0


def _allele_names(index: NomenclatureIndex, locus: str) -> list[str]:
    """Expressing 2-field names at a locus, commonest-looking first."""
    seen: dict[str, tuple[int, int]] = {}
    for name in index.names:
        if not name.startswith(locus + "*"):
            continue
        loc, fields, suffix = split_name(name)
        if loc != locus or suffix or len(fields) < 2:
            continue
        seen.setdefault(f"{locus}*{fields[0]}:{fields[1]}", (int(fields[1]), int(fields[0])))
    if not seen:
        raise GraftmatchError(f"locus {locus!r} has no expressing alleles in release "
                              f"{index.release}")
    return sorted(seen, key=lambda n: seen[n])


def synthetic_haplotypes(index: NomenclatureIndex, loci: Sequence[str], count: int,
                         seed: int = 0) -> tuple[list[str], np.ndarray]:
    """``count`` distinct haplotypes and their frequencies (summing to 1)."""
    if count < 1:
        raise GraftmatchError(f"a synthetic set needs at least 1 haplotype, not {count}")
    rng = np.random.default_rng(seed)
    names, weights = [], []
    for locus in loci:
        alleles = _allele_names(index, locus)
        w = 1.0 / np.arange(1, len(alleles) + 1) ** ALLELE_SKEW
        names.append(alleles)
        weights.append(w / w.sum())
    capacity = 1
    for n in names:
        capacity *= len(n)
    if count > capacity:
        raise GraftmatchError(f"only {capacity} distinct haplotypes exist over "
                              f"{'~'.join(loci)}; asked for {count}")
    chosen: dict[tuple[int, ...], None] = {}
    while len(chosen) < count:
        batch = max(1024, 2 * (count - len(chosen)))
        draws = np.stack([rng.choice(len(n), size=batch, p=w)
                          for n, w in zip(names, weights, strict=True)], axis=1)
        for row in map(tuple, draws.tolist()):
            chosen.setdefault(row, None)
            if len(chosen) == count:
                break
    rows = np.array(list(chosen), dtype=np.int64).reshape(count, len(loci))
    # Common alleles make common haplotypes: rank by allele weights, with Gumbel noise so that
    # the order is not a strict product of loci (real sets carry linkage disequilibrium).
    score = sum(np.log(w[rows[:, col]]) for col, w in enumerate(weights))
    order = np.argsort(-(score + rng.gumbel(size=count)), kind="stable")
    freqs = 1.0 / np.arange(1, count + 1) ** HAPLOTYPE_SKEW
    freqs /= freqs.sum()
    haps = ["~".join(names[col][i] for col, i in enumerate(row)) for row in rows[order]]
    return haps, freqs


def write_synthetic_set(path: Path, index: NomenclatureIndex, loci: Sequence[str], count: int,
                        *, seed: int = 0, population: str = "SYN") -> dict[str, Any]:
    """Write a synthetic set: graftmatch JSON (``.json``, with metadata) or GRIM CSV
    (``.freqs.gz``/``.freqs``, file name = population; labelled synthetic by that name only,
    so JSON is preferred). Returns the metadata."""
    haps, freqs = synthetic_haplotypes(index, loci, count, seed)
    meta = {"source": f"graftmatch synthetic generator (seed {seed}); NOT real frequencies",
            "synthetic": True, "loci": list(loci), "resolution": "2-field",
            "release": index.release, "licence": "CC0 (generated)", "seed": seed,
            "haplotypes": count}
    name = path.name
    if name.endswith(".json") or name.endswith(".json.gz"):
        doc = {"metadata": meta, "haplotypes": [
            {"haplotype": h, "population": population, "frequency": float(f)}
            for h, f in zip(haps, freqs, strict=True)]}
        data = json.dumps(doc, separators=(",", ":")).encode()
    elif ".freqs" in name:
        data = "".join(f"{h},{max(1, round(f * 1e6))},{f:.10g}\n"
                       for h, f in zip(haps, freqs, strict=True)).encode()
    else:
        raise GraftmatchError(f"{path}: write a synthetic set as .json, .json.gz, .freqs or "
                              ".freqs.gz")
    if name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    with atomic_file(path, "wb") as handle:
        handle.write(data)
    return meta
