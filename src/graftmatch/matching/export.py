"""Writing batch results as CSV or JSON Lines, block by block (memory stays bounded).

Columns: ``patient, donor, match_count, total_mismatches, gvh_mismatches, hvg_mismatches,
antigen_mismatches, potential_matches, confidence, category, untyped_loci``, then per locus
``<L>_mismatches, <L>_gvh, <L>_hvg, <L>_antigen, <L>_confidence`` (empty when untyped) and, when
DPB1 is graded, ``DPB1_tce``. JSON Lines carry the same values, per-locus ones nested under
``loci``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO

import numpy as np
import polars as pl

from graftmatch.matching.batch import ANTIGEN, CONFIDENCE, GVH, HVG, MM, TOTALS, UNTYPED, PairBlock
from graftmatch.matching.grades import Confidence
from graftmatch.matching.kernels import CATEGORIES, TCE_VERDICTS

_CONFIDENCE_LABELS = [c.label for c in sorted(Confidence)]
_LOCUS_FIELDS = (("mismatches", MM), ("gvh", GVH), ("hvg", HVG), ("antigen", ANTIGEN))


def block_frame(block: PairBlock, patient_ids: pl.Series, donor_ids: pl.Series,
                loci: Sequence[str], nested: bool) -> pl.DataFrame:
    totals = {name: block.totals[:, i] for i, name in enumerate(TOTALS)}
    untyped_names = pl.Series([";".join(locus for b, locus in enumerate(loci) if mask >> b & 1)
                               for mask in range(1 << len(loci))])
    frame = pl.DataFrame({
        "patient": patient_ids.gather(block.patient_rows),
        "donor": donor_ids.gather(block.donor_rows),
        "matches": 2 * totals["typed"] - totals["mismatches"],
        "slots": 2 * totals["typed"],
        "total_mismatches": totals["mismatches"],
        "gvh_mismatches": totals["gvh"],
        "hvg_mismatches": totals["hvg"],
        "antigen_mismatches": totals["antigen"],
        "potential_matches": totals["potential"],
        "confidence": _labels(_CONFIDENCE_LABELS, totals["confidence"]),
        "category": _labels(list(CATEGORIES), totals["category"]),
        "untyped_loci": untyped_names.gather(totals["untyped"]),
    })
    frame = frame.with_columns(
        pl.format("{}/{}", "matches", "slots").alias("match_count")).select(
        "patient", "donor", "match_count", *frame.columns[4:])
    per_locus: dict[str, dict[str, pl.Series]] = {}
    for li, locus in enumerate(loci):
        data = block.loci[:, li]
        typed = pl.Series(data[:, MM] != UNTYPED)
        fields = {name: _where(typed, pl.Series(data[:, f])) for name, f in _LOCUS_FIELDS}
        fields["confidence"] = _where(typed, _labels(_CONFIDENCE_LABELS, data[:, CONFIDENCE]))
        if locus == "DPB1":
            fields["tce"] = _where(typed, _labels(list(TCE_VERDICTS), block.tce))
        per_locus[locus] = fields
    if nested:
        loci_struct = pl.DataFrame({locus: pl.DataFrame(f).to_struct()
                                    for locus, f in per_locus.items()}).to_struct("loci")
        return frame.with_columns(loci_struct)
    return frame.with_columns(
        [s.alias(f"{locus}_{name}") for locus, f in per_locus.items() for name, s in f.items()])


def _labels(labels: list[str], codes: np.ndarray) -> pl.Series:
    """Codes to their labels; a code past the list (the untyped marker) gives null."""
    return pl.Series([*labels, None]).gather(np.minimum(codes, len(labels)))


def _where(keep: pl.Series, values: pl.Series) -> pl.Series:
    return pl.select(pl.when(keep).then(values)).to_series().alias(values.name)


def write_block(frame: pl.DataFrame, out: IO[bytes], fmt: str, header: bool) -> None:
    if fmt == "csv":
        frame.write_csv(out, include_header=header)
    else:
        frame.write_ndjson(out)
