"""Comparing one patient position with one donor position: grade, confidence, mismatch kind.

The grades and confidences follow the WMDA framework for matching programs [11 Bochtler, Bone
Marrow Transplant 2011] as Atlas implements it [17 Anthony Nolan Atlas 4.1, 2024]; see
docs/adr/0004-match-grading.md for each rule and where graftmatch departs.

Two outputs per comparison:

* :func:`match_code`: a small integer (confidence and mismatch kind) that is all the counts
  need. The batch engine tabulates it once per pair of distinct positions.
* :meth:`Grader.grade`: the descriptive grade a coordinator reads (gDNA ... mismatch).
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

from graftmatch.matching.positions import ABSENT_IMPLIED, Position, SequenceFacts, Slot


class Grade(StrEnum):
    """Match grades, best first."""

    GDNA = "gdna"  # same allele, full genomic sequence known
    CDNA = "cdna"  # same allele (or first three fields), full coding sequence known
    PROTEIN = "protein"  # same first two fields: same protein, full sequence known
    G_GROUP = "g-group"  # same ARD nucleotide sequence
    P_GROUP = "p-group"  # same ARD protein
    NULL_GDNA = "null-gdna"  # both copies the same null allele, full genomic sequence known
    NULL_CDNA = "null-cdna"  # both copies the same null allele (or 3 fields), full cDNA known
    NULL_PARTIAL = "null-partial"  # both copies the same null protein, sequence partly known
    NULL_MISMATCH = "null-mismatch"  # both null, different alleles: still a match, as neither
    # copy is expressed, so neither can be a T-cell target
    ASSOCIATED = "associated"  # same antigen, associated antigens kept apart (WMDA SI1)
    SPLIT = "split"  # same split antigen (SI2)
    BROAD = "broad"  # same broad antigen only (SI3)
    ABSENT = "absent"  # neither copy expressed, and at least one is a DRB3/4/5 copy the
    # haplotype lacks: a match, as for two nulls
    EXPRESSING_VS_NULL = "expressing-vs-null"
    EXPRESSING_VS_ABSENT = "expressing-vs-absent"  # a DRB3/4/5 gene one haplotype lacks
    MISMATCH = "mismatch"


class Confidence(IntEnum):
    """How sure a match is, worst first, so the overall confidence is the minimum."""

    MISMATCH = 0
    POTENTIAL = 1  # matches for some of the alleles the typings allow
    EXACT = 2  # one level group on each side, the same
    DEFINITE = 3  # one allele on each side, matching

    @property
    def label(self) -> str:
        return self.name.lower()


class Relation(IntEnum):
    """For a mismatch: does it change the serological antigen?"""

    ALLELE = 0  # same antigen, other protein
    ANTIGEN = 1
    UNKNOWN = 2  # serology is not defined for one side's alleles

    @property
    def label(self) -> str:
        return self.name.lower()


def encode(confidence: int, relation: int, permissive: int = 0) -> int:
    return confidence | (relation << 2) | (permissive << 4)


def confidence_of(code: int) -> int:
    return code & 3


def relation_of(code: int) -> int:
    return (code >> 2) & 3


def permissive_of(code: int) -> bool:
    """A mismatch of a pair the policy lists as permissive (C*03:03 vs C*03:04)."""
    return bool(code >> 4 & 1)


def match_code(patient: Slot, donor: Slot) -> int:
    """Confidence and, for a mismatch, its kind, packed as ``confidence | relation << 2 |
    permissive << 4``.

    An absence read from DRB1 is only as sure as the DR51/52/53 association, which has
    exceptions: a match with it is potential.
    """
    if patient.typed.null and donor.typed.null:
        p, d = patient.typed, donor.typed
        if ABSENT_IMPLIED in (p.absence, d.absence):
            return encode(Confidence.POTENTIAL, 0)
        return encode(Confidence.DEFINITE if p.single and d.single else Confidence.EXACT, 0)
    p, d = patient.acting, donor.acting
    if p.keys.isdisjoint(d.keys):
        if p.null or d.null:
            relation = Relation.ANTIGEN
        elif not p.antigens or not d.antigens:
            relation = Relation.UNKNOWN
        elif p.antigens.isdisjoint(d.antigens):
            relation = Relation.ANTIGEN
        else:
            relation = Relation.ALLELE
        permissive = any((n, 1 - side) in d.permissive for n, side in p.permissive)
        return encode(Confidence.MISMATCH, relation, int(permissive))
    if p.single and d.single and patient.typed.single and donor.typed.single:
        return encode(Confidence.DEFINITE, 0)
    if len(p.keys) == 1 and p.keys == d.keys:
        return encode(Confidence.EXACT, 0)
    return encode(Confidence.POTENTIAL, 0)


class Grader:
    """Descriptive grades; needs the release's sequence facts and serology."""

    def __init__(self, facts: SequenceFacts) -> None:
        self.facts = facts
        index = facts.index
        self._broad_of = index.broad_of
        self._associated_with = index.associated_with

    def grade(self, patient: Slot, donor: Slot) -> Grade:
        absent = patient.typed.absence or donor.typed.absence
        if patient.typed.null and donor.typed.null:
            return Grade.ABSENT if absent else self._null_grade(patient.typed, donor.typed)
        if patient.typed.null or donor.typed.null:
            # Even when the null or absent copy's expressed partner matches (so nothing is
            # counted), the copies themselves are an expressed allele against a null one
            # [11 WMDA; 17 Atlas].
            return Grade.EXPRESSING_VS_ABSENT if absent else Grade.EXPRESSING_VS_NULL
        p, d = patient.acting, donor.acting
        if p.keys.isdisjoint(d.keys):
            return Grade.MISMATCH
        if p.serology or d.serology:
            return self._serology_grade(p, d) or Grade.P_GROUP
        return self._molecular_grade(p.expressing, d.expressing)

    def _molecular_grade(self, p: frozenset[int], d: frozenset[int]) -> Grade:
        facts = self.facts
        same = p & d
        if any(facts.gdna[i] for i in same):
            return Grade.GDNA
        if any(facts.full[i] for i in same) or self._shared_fields(p, d, 3):
            return Grade.CDNA
        if self._shared_fields(p, d, 2):
            return Grade.PROTEIN
        index = facts.index
        if {index.g_group(i) for i in p} & {index.g_group(i) for i in d}:
            return Grade.G_GROUP
        return Grade.P_GROUP

    def _shared_fields(self, p: frozenset[int], d: frozenset[int], n: int) -> bool:
        """Alleles sharing their first ``n`` fields, both fully sequenced."""
        full = self.facts.full
        ours = {self.facts.fields(i, n) for i in p if full[i]}
        return any(self.facts.fields(i, n) in ours for i in d if full[i])

    def _null_grade(self, p: Position, d: Position) -> Grade:
        facts = self.facts
        same = p.ids & d.ids
        if any(facts.gdna[i] for i in same):
            return Grade.NULL_GDNA
        if any(facts.full[i] for i in same) or self._shared_fields(p.ids, d.ids, 3):
            return Grade.NULL_CDNA
        if same or {facts.fields(i, 2) for i in p.ids} & {facts.fields(i, 2) for i in d.ids}:
            return Grade.NULL_PARTIAL
        return Grade.NULL_MISMATCH

    def _serology_grade(self, p: Position, d: Position) -> Grade | None:
        """SI1, SI2, SI3 in turn: exact antigens, then associated read as their parent, then
        splits read as their broad."""
        serology = self.facts.index.serology

        def exact(pos: Position) -> set[str]:
            if pos.serology:  # the antigens as typed, not every allele they may stand for
                return set(pos.text.split("/"))
            out: set[str] = set()
            for i in pos.expressing:
                assigned = serology[i]
                broads = {self._broad_of[a] for a in assigned if a in self._broad_of}
                out.update(a for a in assigned if a not in broads)
            return out

        si1_p, si1_d = exact(p), exact(d)
        if si1_p & si1_d:
            return Grade.ASSOCIATED
        si2_p = {self._associated_with.get(a, a) for a in si1_p}
        si2_d = {self._associated_with.get(a, a) for a in si1_d}
        if si2_p & si2_d:
            return Grade.SPLIT
        if {self._broad_of.get(a, a) for a in si2_p} & {self._broad_of.get(a, a) for a in si2_d}:
            return Grade.BROAD
        return None
