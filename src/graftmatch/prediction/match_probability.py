"""Match probabilities: how likely a patient-donor pair is to have 0, 1, 2... mismatches.

P(k) = sum over patient genotypes gp and donor genotypes gd of Pr(gp) * Pr(gd) * [m(gp, gd) = k]
(DOMAIN 3.3), where m is the match grading of the previous stage applied to each imputed
genotype pair: the same P-group rule, null handling and DPB1 TCE verdicts as a typed pair. Per
locus the grading is tabulated once per pair of distinct locus genotypes; the join over whole
genotypes (linkage disequilibrium makes loci dependent) is compiled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from graftmatch.errors import GraftmatchError
from graftmatch.matching.grader import Matcher
from graftmatch.matching.kernels import TCE_VERDICTS
from graftmatch.prediction import kernels
from graftmatch.prediction.imputation import STATUSES, GenotypeSet, Imputation, confidence
from graftmatch.prediction.settings import ImputationSettings, default_settings


@dataclass(frozen=True)
class LocusPrediction:
    locus: str
    #: Probability of 0, 1 and 2 mismatches at this locus.
    p: tuple[float, float, float]
    #: DPB1 only: probability of each TCE verdict (matched DPB1 counts as permissive).
    tce: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"p0": self.p[0], "p1": self.p[1], "p2": self.p[2]}
        if self.tce is not None:
            out["tce"] = self.tce
        return out


@dataclass(frozen=True)
class MatchPrediction:
    loci: tuple[str, ...]
    #: P(k mismatches) for k = 0 .. 2 * len(loci).
    p_mismatches: tuple[float, ...]
    per_locus: tuple[LocusPrediction, ...]
    #: The worse of the two imputations' statuses.
    status: str
    #: Probability not assigned to any count (genotypes cut from either list).
    truncated_mass: float
    patient: Imputation = field(repr=False)
    donor: Imputation = field(repr=False)

    @property
    def p_permissive_dpb1(self) -> float | None:
        for locus in self.per_locus:
            if locus.tce is not None:
                return locus.tce["permissive"]
        return None

    def to_dict(self, genotypes: int | None = 10) -> dict[str, Any]:
        total = 2 * len(self.loci)
        return {
            "loci": list(self.loci),
            "match_grade": f"{total}/{total}",
            "p_mismatches": {str(k): p for k, p in enumerate(self.p_mismatches)},
            "loci_probabilities": {lp.locus: lp.to_dict() for lp in self.per_locus},
            "p_permissive_dpb1": self.p_permissive_dpb1,
            "status": self.status,
            "confidence": confidence(self.status),
            "truncated_mass": self.truncated_mass,
            "patient": self.patient.to_dict(genotypes),
            "donor": self.donor.to_dict(genotypes),
        }


class MatchPredictor:
    """Predicts match probabilities between imputed subjects. Reuse one: the grading of each
    pair of locus genotypes is remembered."""

    def __init__(self, matcher: Matcher, settings: ImputationSettings | None = None) -> None:
        self.matcher = matcher
        self.settings = settings or default_settings()
        self._graded: dict[tuple[str, str, str], tuple[int, int]] = {}

    def predict(self, patient: Imputation, donor: Imputation,
                loci: Sequence[str] | None = None) -> MatchPrediction:
        asked = tuple(loci) if loci else patient.genotypes.loci
        for side, imp in (("patient", patient), ("donor", donor)):
            missing = [locus for locus in asked if locus not in imp.genotypes.loci]
            if missing:
                raise GraftmatchError(
                    f"locus {', '.join(missing)} is not in the {side}'s frequency set "
                    f"({', '.join(imp.genotypes.loci)}); match probabilities need it imputed")
        p_set, d_set = self._within_join(patient.genotypes, donor.genotypes)
        p_index, p_prob, p_rows = _project(p_set, asked)
        d_index, d_prob, d_rows = _project(d_set, asked)
        tables, offsets, widths, per_locus = [], [0], [], []
        for col, locus in enumerate(asked):
            mm, tce = self._tables(locus, p_set, p_rows[col], d_set, d_rows[col])
            p_marg = np.bincount(p_index[:, col], weights=p_prob, minlength=mm.shape[0])
            d_marg = np.bincount(d_index[:, col], weights=d_prob, minlength=mm.shape[1])
            joint = np.outer(p_marg, d_marg)
            p = tuple(float(joint[mm == m].sum()) for m in range(3))
            tce_p = None
            if locus == "DPB1":
                tce_p = {label: float(joint[tce == v].sum())
                         for v, label in enumerate(TCE_VERDICTS)}
            per_locus.append(LocusPrediction(locus, p, tce_p))  # type: ignore[arg-type]
            tables.append(mm.ravel())
            widths.append(mm.shape[1])
            offsets.append(offsets[-1] + mm.size)
        counts = kernels.join_mismatches(
            p_index, p_prob, d_index, d_prob,
            np.concatenate(tables).astype(np.int8), np.asarray(offsets[:-1], dtype=np.int64),
            np.asarray(widths, dtype=np.int64), 2 * len(asked) + 1)
        status = min(patient.status, donor.status, key=STATUSES.index)  # the worse
        p_total = float(counts.sum())
        return MatchPrediction(
            loci=asked, p_mismatches=tuple(float(x) for x in counts),
            per_locus=tuple(per_locus), status=status,
            truncated_mass=max(0.0, 1.0 - p_total), patient=patient, donor=donor)

    def _within_join(self, p: GenotypeSet, d: GenotypeSet) -> tuple[GenotypeSet, GenotypeSet]:
        """Both lists, cut from the least likely end until the join fits ``max_join_pairs``
        (what is cut shows as truncated mass)."""
        limit = self.settings.max_join_pairs
        if len(p) * len(d) <= limit:
            return p, d
        side = int(limit ** 0.5)
        keep_p = len(p) if len(p) <= side else max(side, limit // len(d))
        keep_d = max(1, min(len(d), limit // keep_p))
        return _head(p, keep_p), _head(d, keep_d)

    def _tables(self, locus: str, p: GenotypeSet, p_rows: npt.NDArray[np.int32],
                d: GenotypeSet, d_rows: npt.NDArray[np.int32]
                ) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int8]]:
        """Mismatch count and TCE verdict for each pair of distinct locus genotypes."""
        pc, dc = p.loci.index(locus), d.loci.index(locus)
        mm = np.zeros((len(p_rows), len(d_rows)), dtype=np.int8)
        tce = np.zeros_like(mm)
        p_names = [_names(p, pc, row) for row in p_rows]
        d_names = [_names(d, dc, row) for row in d_rows]
        for u, (p_key, p_copies) in enumerate(p_names):
            for v, (d_key, d_copies) in enumerate(d_names):
                key = (locus, p_key, d_key)
                hit = self._graded.get(key)
                if hit is None:
                    result = self.matcher.grade_copies(locus, p_copies, d_copies)
                    verdict = result.tce.verdict if result.tce is not None else "unknown"
                    hit = self._graded[key] = (result.mismatches or 0,
                                               TCE_VERDICTS.index(verdict))
                mm[u, v], tce[u, v] = hit
        return mm, tce


def _names(s: GenotypeSet, col: int, row: npt.NDArray[np.int32]) -> tuple[str, Any]:
    v = s.vocab[col]
    copies = (v.entries[row[0]], v.entries[row[1]])
    return f"{v.names[row[0]]}+{v.names[row[1]]}", copies


def _project(s: GenotypeSet, loci: tuple[str, ...]
             ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64],
                        list[npt.NDArray[np.int32]]]:
    """Genotypes over the asked loci: per locus, ids of distinct locus genotypes, and the
    genotypes merged where they agree on every asked locus."""
    cols = [s.loci.index(locus) for locus in loci]
    index = np.empty((len(s), len(cols)), dtype=np.int64)
    rows = []
    for i, col in enumerate(cols):
        distinct, inverse = np.unique(s.codes[:, col, :], axis=0, return_inverse=True)
        index[:, i] = inverse.ravel()
        rows.append(distinct)
    merged, inverse = np.unique(index, axis=0, return_inverse=True)
    probs = np.bincount(inverse.ravel(), weights=s.probabilities, minlength=len(merged))
    return np.ascontiguousarray(merged), probs.astype(np.float64), rows


def _head(s: GenotypeSet, n: int) -> GenotypeSet:
    return GenotypeSet(s.loci, s.vocab, s.codes[:n], s.probabilities[:n])

