"""The locus rules as small integer functions: one definition for one pair and for millions.

Typings are unphased, so a locus compares the patient's two copies with the donor's two copies
in both pairings, direct (p1-d1, p2-d2) and cross (p1-d2, p2-d1), and keeps the better
[11 Bochtler 2011]. The pair grader calls these functions as plain Python; the batch engine
compiles the very same functions with numba (``register_jitable`` leaves them plain Python
when called from Python). They therefore use only integers and tuples.

A comparison code is ``confidence | relation << 2 | permissive << 4`` (see
:mod:`graftmatch.matching.grades`): confidence 0 = mismatch, 1 potential, 2 exact, 3 definite;
relation (for mismatches) 0 = allele-level, 1 = antigen-level, 2 = unknown; permissive 1 for a
mismatch of a pair the policy lists as permissive.
"""

from __future__ import annotations

from numba.extending import register_jitable

#: TCE verdict codes (:data:`TCE_VERDICTS` names them).
PERMISSIVE = 0
NON_PERMISSIVE_GVH = 1
NON_PERMISSIVE_HVG = 2
TCE_UNKNOWN = 3
TCE_VERDICTS = ("permissive", "non-permissive-gvh", "non-permissive-hvg", "unknown")
#: Overall categories by code: codes 1-3 are the confidence of a full match
#: [17 Atlas 2024: Definite, Exact, Potential, PermissiveMismatch, Mismatch].
CATEGORIES = ("mismatch", "potential", "exact", "definite", "permissive-mismatch")


@register_jitable
def _pairing(a: int, b: int) -> tuple[int, int, int, int, int, int, int]:
    """Score one pairing of two comparisons: matches, then tie-breakers."""
    matches = 0
    potential = 0
    antigen = 0
    unknown = 0
    confidence = 0
    permissive = 0
    for code in (a, b):
        c = code & 3
        if c > 0:
            matches += 1
            confidence += c
            if c == 1:
                potential += 1
        else:
            r = (code >> 2) & 3
            if r == 1:
                antigen += 1
            elif r == 2:
                unknown += 1
            permissive += (code >> 4) & 1
    return (matches, potential, antigen, unknown, confidence, 2 - matches - antigen - unknown,
            permissive)


@register_jitable
def orient(c11: int, c12: int, c21: int, c22: int) -> tuple[int, int, int, int, int, int, int,
                                                             int, int]:
    """Grade one locus from the four comparisons ``c_ij`` (patient copy i, donor copy j).

    Returns ``(cross, mismatches, gvh, hvg, potential, antigen, allele, unknown, permissive)``:
    whether the cross pairing won; mismatches of the better pairing (most matches; then fewer
    antigen-level and unknown mismatches, fewer potential matches, higher confidence);
    graft-versus-host mismatches (patient copies the donor lacks); host-versus-graft mismatches
    (donor copies the patient lacks); matches that are only potential; the mismatches at
    antigen level, at allele level, and of unknown kind; and the mismatches the policy lists
    as permissive.
    """
    d = _pairing(c11, c22)
    x = _pairing(c12, c21)
    d_key = (d[0], -d[2], -d[3], -d[1], d[4])
    x_key = (x[0], -x[2], -x[3], -x[1], x[4])
    cross = 1 if x_key > d_key else 0
    best = x if cross else d
    m11 = (c11 & 3) > 0
    m12 = (c12 & 3) > 0
    m21 = (c21 & 3) > 0
    m22 = (c22 & 3) > 0
    gvh = (0 if (m11 or m12) else 1) + (0 if (m21 or m22) else 1)
    hvg = (0 if (m11 or m21) else 1) + (0 if (m12 or m22) else 1)
    return cross, 2 - best[0], gvh, hvg, best[1], best[2], best[5], best[3], best[6]


@register_jitable
def lowest_groups(mask1: int, mask2: int) -> int:
    """The TCE groups a genotype's most immunogenic copy may have, from its two copies' possible
    groups (bit g set = group g possible). The lowest group number is the most immunogenic
    [49 Zino, Blood 2004]."""
    out = 0
    for g1 in range(1, 4):
        if mask1 & (1 << g1):
            for g2 in range(1, 4):
                if mask2 & (1 << g2):
                    out |= 1 << min(g1, g2)
    return out


@register_jitable
def tce_verdict(patient_lowest: int, donor_lowest: int, mismatched: bool) -> int:
    """DPB1 TCE verdict [17 Atlas 2024, after IPD-IMGT/HLA's DPB1 TCE calculator].

    Same lowest group: permissive; donor's lower (more immunogenic): non-permissive in the
    host-versus-graft direction; donor's higher: non-permissive graft-versus-host. Matching
    DPB1 alleles are permissive. An empty set (unassigned allele, two nulls) or an ambiguity
    whose readings disagree gives unknown.
    """
    if not mismatched:
        return PERMISSIVE
    verdict = -1
    for p in range(1, 4):
        if not patient_lowest & (1 << p):
            continue
        for d in range(1, 4):
            if not donor_lowest & (1 << d):
                continue
            v = PERMISSIVE if d == p else (NON_PERMISSIVE_HVG if d < p else NON_PERMISSIVE_GVH)
            if verdict == -1:
                verdict = v
            elif verdict != v:
                return TCE_UNKNOWN
    return TCE_UNKNOWN if verdict == -1 else verdict


@register_jitable
def category(other_mismatches: int, dpb1_mismatches: int, tce: int, confidence: int) -> int:
    """Overall category (:data:`CATEGORIES`): a mismatch outside DPB1 is a mismatch; a DPB1
    mismatch alone is permissive or not by TCE; a full match is as sure as its least sure
    position (``confidence``)."""
    if other_mismatches > 0:
        return 0
    if dpb1_mismatches > 0:
        return 4 if tce == PERMISSIVE else 0
    return confidence
