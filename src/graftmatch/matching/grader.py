"""Grading a patient-donor pair, locus by locus: the pure core of matching.

``Matcher(index).match(patient, donor)`` takes two parsed typings and returns an immutable
:class:`MatchResult`. It reads each typing into *slots* (two gene copies per locus), compares the
four patient-donor copy pairs of every locus (:mod:`.grades`), picks the better pairing and
counts directions (:mod:`.kernels`), and adds the DPB1 TCE verdict.

Typing structure: a locus typed with one copy (``A*01:01``) is read as homozygous, as registries
write homozygous typings. DRB3, DRB4 and DRB5 are present on some haplotypes only, so for them
one copy means the other haplotype lacks the gene: that copy is *absent*, and matches like a null
copy. An untyped DRB3/4/5 gene is absent on both haplotypes when the side's DRB1 alleles imply it
(the policy's ``[drb345]``), and stays untyped otherwise. Alternative genotypes (``|``) count as
potential matches: the best genotype is taken, and where the alternatives differ at a locus no
match there is more than potential. Alternatives phased over several loci (``~`` with ``|``) are
chosen jointly for those loci.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from graftmatch.errors import GraftmatchError
from graftmatch.matching import kernels
from graftmatch.matching.dpb1 import TceGroups, mask_label
from graftmatch.matching.grades import (
    Confidence,
    Grader,
    Relation,
    confidence_of,
    match_code,
    permissive_of,
    relation_of,
)
from graftmatch.matching.policy import MatchPolicy, PolicyError, default_policy
from graftmatch.matching.positions import (
    ABSENT_IMPLIED,
    ABSENT_TYPED,
    Position,
    PositionReader,
    SequenceFacts,
    Slot,
)
from graftmatch.matching.result import LocusResult, MatchResult, PositionResult, TceResult
from graftmatch.nomenclature.index import NomenclatureIndex
from graftmatch.typing.model import AlleleList, Typing
from graftmatch.typing.parser import PARALOGUES

#: Joint choices over phased multi-locus genotype lists are enumerated up to this many.
MAX_JOINT_CHOICES = 4096

LocusSlots = tuple[Slot, Slot]
#: One alternative genotype of a ``^`` block: its loci, each with two slots.
Alternative = dict[str, LocusSlots]


@dataclass(frozen=True, slots=True)
class _Graded:
    key: tuple[int, ...]
    result: LocusResult


class Matcher:
    """Grades pairs against one release and policy. Reuse one: positions are cached."""

    def __init__(self, index: NomenclatureIndex, policy: MatchPolicy | None = None) -> None:
        self.index = index
        self.policy = policy or default_policy()
        self.positions = PositionReader(index, self.policy)
        self.grader = Grader(SequenceFacts(index))
        self.tce = TceGroups(index, self.policy)
        self._known_loci = set(index.loci)
        self._check_policy()

    # -- reading typings into slots ------------------------------------------------------
    def slots(self, copies: Sequence[AlleleList]) -> LocusSlots:
        """The two slots of one locus from its typed copies (one copy reads as homozygous, or
        for DRB3/4/5 as that copy and an absent one)."""
        first = self.positions.position(copies[0])
        if len(copies) > 1:
            second = self.positions.position(copies[1])
        elif first.locus in PARALOGUES:
            second = self.positions.absent(first.locus, ABSENT_TYPED)
        else:
            second = first
        return self._pair(first, second)

    @staticmethod
    def _pair(first: Position, second: Position) -> LocusSlots:
        act_first = second if first.null and not second.null else first
        act_second = first if second.null and not first.null else second
        return Slot(first, act_first), Slot(second, act_second)

    def _absent(self, locus: str, how: str) -> LocusSlots:
        absent = self.positions.absent(locus, how)
        return self._pair(absent, absent)

    def blocks(self, typing: Typing) -> list[list[Alternative]]:
        """Each ``^`` block as its alternative genotypes, each as slots per locus; DRB3/4/5
        genes the DRB1 alleles imply are not there come last, as a block of their own."""
        out = []
        for block in typing.blocks:
            alternatives = []
            for genotype in block:
                copies: dict[str, list[AlleleList]] = {}
                for haplotype in genotype:
                    for alleles in haplotype:
                        copies.setdefault(alleles[0].locus, []).append(alleles)
                alternatives.append({locus: self.slots(c) for locus, c in copies.items()})
            # Alternatives may name different DRB3/4/5 genes (DRB3*01:01+DRB4*01:01 |
            # DRB3*01:01+DRB3*02:02): each states both haplotypes' genes, so a gene another
            # alternative names and this one does not is absent from both of its haplotypes.
            named = {locus for alt in alternatives for locus in alt if locus in PARALOGUES}
            for alt in alternatives:
                for locus in sorted(named - alt.keys()):
                    alt[locus] = self._absent(locus, ABSENT_TYPED)
            out.append(alternatives)
        implied = self._implied_absent(out)
        if implied:
            out.append([{locus: self._absent(locus, ABSENT_IMPLIED) for locus in implied}])
        return out

    def _implied_absent(self, blocks: list[list[Alternative]]) -> list[str]:
        """The untyped DRB3/4/5 genes that no DRB1 copy of any alternative may carry."""
        typed = {locus for block in blocks for locus in block[0]}
        missing = sorted(PARALOGUES - typed)
        if not (missing and self.policy.drb345_from_drb1 and "DRB1" in typed):
            return []
        drb1 = next(block for block in blocks if "DRB1" in block[0])
        possible = frozenset().union(*(self.positions.carried(slot.typed)
                                       for alt in drb1 for slot in alt["DRB1"]))
        return [locus for locus in missing if locus not in possible]

    def _check_policy(self) -> None:
        """The policy's loci must be loci of the release: a policy counting loci no typing
        has would show any pair as "0/0 potential"."""
        named = [("graded_loci", locus) for locus in self.policy.graded_loci]
        named += [("counted_loci", locus) for locus in self.policy.counted_loci]
        named += [("permissive_mismatches", allele.partition("*")[0])
                  for pair in self.policy.permissive_mismatches for allele in pair]
        for key, locus in named:
            if locus not in self._known_loci:
                raise PolicyError(f"{self.policy.source}: '{key}' names {locus!r}, not a locus "
                                  f"of IPD-IMGT/HLA {self.index.release}")

    def check_loci(self, loci: Iterable[str]) -> tuple[str, ...]:
        out = tuple(dict.fromkeys(loci))
        for locus in out:
            if locus not in self._known_loci:
                raise GraftmatchError(f"unknown locus {locus!r} (release {self.index.release})")
        return out

    # -- grading -----------------------------------------------------------------------
    def grade_copies(self, locus: str, patient: Sequence[AlleleList],
                     donor: Sequence[AlleleList]) -> LocusResult:
        """One locus of one patient genotype against one donor genotype (as match prediction
        needs it: each imputed genotype is graded exactly as a typing would be)."""
        return self._grade_genotypes(locus, self.slots(patient), self.slots(donor), False,
                                     True).result

    def match(self, patient: Typing, donor: Typing, loci: Sequence[str] | None = None,
              graded: Sequence[str] | None = None) -> MatchResult:
        """Grade a pair. ``loci`` are counted (default: the policy's), ``graded`` are graded
        too where both sides carry them (default: the counted loci when ``loci`` is given,
        else the policy's graded loci)."""
        if loci:
            counted = self.check_loci(loci)
            graded = self.check_loci((*counted, *(graded or ())))
        else:
            counted = self.policy.counted_loci
            graded = tuple(dict.fromkeys((*self.policy.counted_loci, *self.policy.graded_loci)))
        p_blocks, d_blocks = self.blocks(patient), self.blocks(donor)
        typed_p = {locus for block in p_blocks for locus in block[0]}
        typed_d = {locus for block in d_blocks for locus in block[0]}
        both = [locus for locus in graded if locus in typed_p and locus in typed_d]
        results = self._grade_loci(both, p_blocks, d_blocks, set(counted))
        by_locus = {r.locus: r for r in results}
        shown = [locus for locus in graded if locus in by_locus or locus in counted]
        loci_results = tuple(
            by_locus.get(locus) or LocusResult(locus, typed=False, counted=locus in counted)
            for locus in shown
        )
        return self._summarise(loci_results, counted)

    def _grade_loci(self, loci: list[str], p_blocks: list[list[Alternative]],
                    d_blocks: list[list[Alternative]], counted: set[str]) -> list[LocusResult]:
        wanted = set(loci)

        def joint(blocks: list[list[Alternative]]) -> list[list[Alternative]]:
            return [b for b in blocks if len(b) > 1 and len(wanted & set(b[0])) > 1]

        joint_blocks = joint(p_blocks) + joint(d_blocks)
        choices = 1
        for block in joint_blocks:
            choices *= len(block)
        if choices > MAX_JOINT_CHOICES:
            raise GraftmatchError(
                f"the typings list {choices} phased multi-locus genotype combinations; at most "
                f"{MAX_JOINT_CHOICES} are graded jointly")

        best: tuple[tuple[tuple[int, ...], ...], list[LocusResult]] | None = None
        for choice in itertools.product(*joint_blocks):
            fixed = {id(block): alt for block, alt in zip(joint_blocks, choice, strict=True)}
            graded = [self._grade_locus(locus,
                                        self._alternatives(locus, p_blocks, fixed),
                                        self._alternatives(locus, d_blocks, fixed),
                                        locus in counted)
                      for locus in loci]
            # The counted loci choose the alternatives; loci only graded break ties, so
            # grading more loci never changes a count.
            key = (_summed(g.key for g in graded if g.result.counted),
                   _summed(g.key for g in graded))
            if best is None or key > best[0]:
                best = (key, [g.result for g in graded])
        return best[1] if best else []

    @staticmethod
    def _alternatives(locus: str, blocks: list[list[Alternative]],
                      fixed: dict[int, Alternative]) -> tuple[list[LocusSlots], bool]:
        """The genotypes to try at ``locus``, and whether the typing leaves it ambiguous
        (distinct unphased genotypes there, whichever one the joint choice fixed)."""
        for block in blocks:
            if locus in block[0]:
                distinct = {frozenset((alt[locus][0].typed.text, alt[locus][1].typed.text))
                            for alt in block}
                chosen = fixed.get(id(block))
                return ([chosen[locus]] if chosen else [alt[locus] for alt in block],
                        len(distinct) > 1)
        raise AssertionError(locus)  # callers grade only loci typed on this side

    def _grade_locus(self, locus: str, p_alts: tuple[list[LocusSlots], bool],
                     d_alts: tuple[list[LocusSlots], bool], counted: bool) -> _Graded:
        ambiguous = p_alts[1] or d_alts[1]
        best: _Graded | None = None
        for p, d in itertools.product(p_alts[0], d_alts[0]):
            graded = self._grade_genotypes(locus, p, d, ambiguous, counted)
            if best is None or graded.key > best.key:
                best = graded
        assert best is not None
        return best

    def _grade_genotypes(self, locus: str, p: LocusSlots, d: LocusSlots, ambiguous: bool,
                         counted: bool) -> _Graded:
        codes = [[match_code(p[i], d[j]) for j in (0, 1)] for i in (0, 1)]
        if ambiguous:  # the genotype itself is one of several: no match is more than potential
            codes = [[min(c & 3, 1) | (c & ~3) for c in row] for row in codes]
        cross, mm, gvh, hvg, potential, antigen, allele, unknown, permissive = kernels.orient(
            codes[0][0], codes[0][1], codes[1][0], codes[1][1])
        pairs = ((0, 1), (1, 0)) if cross else ((0, 0), (1, 1))
        positions = []
        for i, j in pairs:
            code = codes[i][j]
            conf = Confidence(confidence_of(code))
            positions.append(PositionResult(
                patient=p[i].typed.text,
                donor=d[j].typed.text,
                grade=self.grader.grade(p[i], d[j]),
                confidence=conf,
                mismatch=Relation(relation_of(code)) if conf is Confidence.MISMATCH else None,
                permissive=conf is Confidence.MISMATCH and permissive_of(code),
                patient_absence=p[i].typed.absence,
                donor_absence=d[j].typed.absence,
            ))
        tce = self._tce(p, d, mm > 0) if locus == "DPB1" else None
        result = LocusResult(
            locus=locus, typed=True, counted=counted, mismatches=mm, gvh_mismatches=gvh,
            hvg_mismatches=hvg, antigen_mismatches=antigen, allele_mismatches=allele,
            unknown_mismatches=unknown, potential_matches=potential,
            permissive_mismatches=permissive,
            confidence=min(pos.confidence for pos in positions),
            orientation="cross" if cross else "direct", positions=tuple(positions), tce=tce)
        return _Graded((2 - mm, -antigen, -unknown, -potential), result)

    def _tce(self, p: LocusSlots, d: LocusSlots, mismatched: bool) -> TceResult:
        p_low = kernels.lowest_groups(self.tce.mask(p[0].acting), self.tce.mask(p[1].acting))
        d_low = kernels.lowest_groups(self.tce.mask(d[0].acting), self.tce.mask(d[1].acting))
        verdict = kernels.tce_verdict(p_low, d_low, mismatched)
        return TceResult(mask_label(p_low), mask_label(d_low), kernels.TCE_VERDICTS[verdict])

    def _summarise(self, loci: tuple[LocusResult, ...], counted: Sequence[str]) -> MatchResult:
        typed = [r for r in loci if r.counted and r.typed]
        untyped = tuple(r.locus for r in loci if r.counted and not r.typed)
        total = sum(r.mismatches or 0 for r in typed)
        confidence = min([r.confidence for r in typed]
                         + ([Confidence.POTENTIAL] if untyped else []),
                         default=Confidence.POTENTIAL)
        other = sum(r.mismatches or 0 for r in typed if r.locus != "DPB1")
        dpb1 = next((r for r in typed if r.locus == "DPB1"), None)
        tce = dpb1.tce.verdict if dpb1 is not None and dpb1.tce is not None else "unknown"
        category = kernels.CATEGORIES[kernels.category(
            other, (dpb1.mismatches or 0) if dpb1 else 0, kernels.TCE_VERDICTS.index(tce),
            int(confidence))]
        return MatchResult(
            level=self.policy.level,
            release=self.index.release,
            loci=loci,
            counted_loci=tuple(counted),
            total_mismatches=total,
            match_count=f"{2 * len(typed) - total}/{2 * len(typed)}",
            gvh_mismatches=sum(r.gvh_mismatches or 0 for r in typed),
            hvg_mismatches=sum(r.hvg_mismatches or 0 for r in typed),
            antigen_mismatches=sum(r.antigen_mismatches or 0 for r in typed),
            untyped_loci=untyped,
            confidence=confidence,
            category=category,
        )


def _summed(keys: Iterable[tuple[int, ...]]) -> tuple[int, ...]:
    """Locus keys summed field by field (empty for no locus)."""
    return tuple(sum(k) for k in zip(*keys, strict=True))
