"""The answer to "how well does this donor match this patient?": immutable, JSON-ready."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graftmatch.matching.grades import Confidence, Grade, Relation


@dataclass(frozen=True, slots=True)
class PositionResult:
    """One patient copy against the donor copy it was paired with."""

    patient: str
    donor: str
    grade: Grade
    confidence: Confidence
    #: For a mismatch: antigen-level, allele-level or unknown; None for a match.
    mismatch: Relation | None
    #: A mismatch of a pair the matching policy lists as permissive (C*03:03 vs C*03:04).
    permissive: bool = False
    #: For a DRB3/4/5 copy the haplotype lacks, how that is known: ``typed`` (the locus was
    #: typed with one copy) or ``implied-by-drb1``; None for a typed copy.
    patient_absence: str | None = None
    donor_absence: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"patient": self.patient, "donor": self.donor, "grade": self.grade.value,
                "confidence": self.confidence.label,
                "mismatch": self.mismatch.label if self.mismatch is not None else None,
                "permissive": self.permissive,
                "patient_absence": self.patient_absence, "donor_absence": self.donor_absence}


@dataclass(frozen=True, slots=True)
class TceResult:
    """DPB1 T-cell-epitope comparison: the groups each side's most immunogenic copy may have."""

    patient_groups: str
    donor_groups: str
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return {"patient_groups": self.patient_groups, "donor_groups": self.donor_groups,
                "verdict": self.verdict}


@dataclass(frozen=True, slots=True)
class LocusResult:
    locus: str
    #: False when either side is untyped at the locus: nothing below is known then.
    typed: bool
    counted: bool
    mismatches: int | None = None
    gvh_mismatches: int | None = None
    hvg_mismatches: int | None = None
    antigen_mismatches: int | None = None
    allele_mismatches: int | None = None
    unknown_mismatches: int | None = None
    #: Matches that hold only for some of the alleles the typings allow.
    potential_matches: int | None = None
    #: Mismatches of pairs the policy lists as permissive (still counted).
    permissive_mismatches: int | None = None
    confidence: Confidence = Confidence.POTENTIAL
    orientation: str | None = None
    positions: tuple[PositionResult, ...] = ()
    tce: TceResult | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"typed": self.typed, "counted": self.counted}
        if not self.typed:
            out["confidence"] = Confidence.POTENTIAL.label
            return out
        out.update(
            mismatches=self.mismatches,
            gvh_mismatches=self.gvh_mismatches,
            hvg_mismatches=self.hvg_mismatches,
            antigen_mismatches=self.antigen_mismatches,
            allele_mismatches=self.allele_mismatches,
            unknown_mismatches=self.unknown_mismatches,
            potential_matches=self.potential_matches,
            permissive_mismatches=self.permissive_mismatches,
            confidence=self.confidence.label,
            orientation=self.orientation,
            positions=[p.to_dict() for p in self.positions],
        )
        if self.tce is not None:
            out["tce"] = self.tce.verdict
            out["tce_groups"] = self.tce.to_dict()
        return out


@dataclass(frozen=True, slots=True)
class MatchResult:
    level: str
    release: str
    loci: tuple[LocusResult, ...]
    counted_loci: tuple[str, ...]
    total_mismatches: int
    match_count: str
    gvh_mismatches: int
    hvg_mismatches: int
    antigen_mismatches: int
    untyped_loci: tuple[str, ...]
    confidence: Confidence
    category: str

    def label(self) -> str:
        """The match as one line, the same wherever it is shown (``match``, ``search``): the
        count over the loci typed on both sides, the counted loci left untyped, and the
        category, e.g. ``4/4 at A, B; untyped C, DRB1, DQB1: potential``."""
        typed = [r.locus for r in self.loci if r.counted and r.typed]
        text = f"{self.match_count} at {', '.join(typed) or 'no typed locus'}"
        if self.untyped_loci:
            text += f"; untyped {', '.join(self.untyped_loci)}"
        return f"{text}: {self.category}"

    def locus(self, name: str) -> LocusResult:
        for result in self.loci:
            if result.locus == name:
                return result
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "release": self.release,
            "counted_loci": list(self.counted_loci),
            "match_count": self.match_count,
            "label": self.label(),
            "typed_loci": [r.locus for r in self.loci if r.counted and r.typed],
            "total_mismatches": self.total_mismatches,
            "gvh_mismatches": self.gvh_mismatches,
            "hvg_mismatches": self.hvg_mismatches,
            "antigen_mismatches": self.antigen_mismatches,
            "untyped_loci": list(self.untyped_loci),
            "confidence": self.confidence.label,
            "category": self.category,
            "loci": {r.locus: r.to_dict() for r in self.loci},
        }
