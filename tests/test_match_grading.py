"""Match grading, case by case, with the expected values worked out from the rules.

Rules: DOMAIN.md section 2 and docs/adr/0004-match-grading.md. Each case says which rule it
checks. Allele facts used (IPD-IMGT/HLA 3.58.0): A*01:01:01:01, A*01:01:01:03 and A*01:01:02
are fully sequenced gDNA in P group A*01:01P; A*01:103 (partial cDNA) shares G group
A*01:01:01G with A*01:01:01:01, and A*01:01:02 is its own G group; A*24:09N and A*01:16N are
fully sequenced nulls, A*01:15N a partially sequenced one; A*02:01 and A*02:05 are both A2;
DPB1 TCE (V2): *09:01 and *17:01 group 1, *03:01 and *14:01 group 2, *01:01, *02:01, *04:01
group 3, *06:01 "2a" (V1: 3), *08:01 "2a$" (inferred); *61:01N and *64:01N are nulls.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graftmatch.errors import GraftmatchError
from graftmatch.matching.grader import Matcher
from graftmatch.matching.grades import Confidence, Grade, Relation
from graftmatch.matching.policy import default_policy


@pytest.fixture(scope="module")
def matcher(index):
    return Matcher(index)


@pytest.fixture(scope="module")
def grade(matcher, index):
    from graftmatch.typing.parser import TypingReader

    reader = TypingReader(index)

    def run(patient: str, donor: str, loci=None, m=None):
        return (m or matcher).match(reader.parse(patient), reader.parse(donor), loci)
    return run


def locus(grade, patient: str, donor: str, name: str = "A", m=None):
    return grade(patient, donor, [name], m).locus(name)


# -- counts, orientation and direction (DOMAIN 2.2) -----------------------------------------
def test_homozygous_patient_is_a_host_versus_graft_only_mismatch(grade):
    r = locus(grade, "A*01:01+A*01:01", "A*01:01+A*02:01")
    assert (r.mismatches, r.gvh_mismatches, r.hvg_mismatches) == (1, 0, 1)


def test_homozygous_donor_is_a_graft_versus_host_only_mismatch(grade):
    r = locus(grade, "A*01:01+A*02:01", "A*01:01+A*01:01")
    assert (r.mismatches, r.gvh_mismatches, r.hvg_mismatches) == (1, 1, 0)


def test_both_homozygous_for_different_alleles_counts_two_each_way(grade):
    r = locus(grade, "A*01:01+A*01:01", "A*02:01+A*02:01")
    assert (r.mismatches, r.gvh_mismatches, r.hvg_mismatches) == (2, 2, 2)


def test_cross_orientation_is_found(grade):
    r = locus(grade, "A*01:01+A*02:01", "A*02:01+A*01:01")
    assert (r.mismatches, r.orientation) == (0, "cross")
    assert [(p.patient, p.donor) for p in r.positions] == [("A*01:01", "A*01:01"),
                                                         ("A*02:01", "A*02:01")]


def test_single_copy_reads_as_homozygous(grade):
    r = locus(grade, "A*01:01", "A*01:01+A*02:01")
    assert (r.mismatches, r.gvh_mismatches, r.hvg_mismatches) == (1, 0, 1)


# -- antigen versus allele mismatches (DOMAIN 2.3) ------------------------------------------
def test_same_antigen_other_protein_is_an_allele_mismatch(grade):
    r = locus(grade, "A*02:01+A*01:01", "A*02:05+A*01:01")
    assert (r.mismatches, r.allele_mismatches, r.antigen_mismatches) == (1, 1, 0)
    assert r.positions[0].mismatch is Relation.ALLELE


def test_other_antigen_is_an_antigen_mismatch(grade):
    r = locus(grade, "A*02:01+A*01:01", "A*03:01+A*01:01")
    assert (r.allele_mismatches, r.antigen_mismatches) == (0, 1)


def test_splits_of_one_broad_are_different_antigens(grade):
    r = locus(grade, "A*23:01+A*01:01", "A*24:02+A*01:01")
    assert r.antigen_mismatches == 1


def test_c0303_vs_c0304_is_an_antigen_mismatch_under_the_wmda_split_reading(grade):
    r = locus(grade, "C*03:03+C*07:01", "C*03:04+C*07:01", "C")
    assert (r.mismatches, r.antigen_mismatches, r.allele_mismatches) == (1, 1, 0)


def test_dq7_vs_dq8_is_an_allele_mismatch_when_the_site_reads_antigens_at_broad_level(
        grade, index):
    broad = Matcher(index, dataclasses.replace(default_policy(), antigen_mismatch_level="broad"))
    for name, patient, donor in (("DQB1", "DQB1*03:01+DQB1*06:02", "DQB1*03:02+DQB1*06:02"),
                                 ("C", "C*03:03+C*07:01", "C*03:04+C*07:01")):
        r = locus(grade, patient, donor, name, m=broad)
        assert (r.mismatches, r.antigen_mismatches, r.allele_mismatches) == (1, 0, 1), name
        assert r.positions[0].mismatch is Relation.ALLELE
    # Different broads stay antigen mismatches: DQ2 vs DQ3.
    r = locus(grade, "DQB1*02:01+DQB1*06:02", "DQB1*03:02+DQB1*06:02", "DQB1", m=broad)
    assert r.antigen_mismatches == 1


def test_c0303_vs_c0304_is_a_permissive_mismatch_that_still_counts(grade):
    """CIBMTR: C*03:03 vs C*03:04 survives like 8/8 (Fernandez-Vina, Blood 2014;123:1270),
    but the donor is still 7/8."""
    r = locus(grade, "C*03:03+C*07:01", "C*03:04+C*07:01", "C")
    assert (r.mismatches, r.permissive_mismatches) == (1, 1)
    assert [p.permissive for p in r.positions] == [True, False]
    assert r.to_dict()["positions"][0]["permissive"] is True
    # Other C mismatches, an ambiguous C*03:XX and a site policy without the rule: not so.
    assert locus(grade, "C*03:03+C*07:01", "C*04:01+C*07:01", "C").permissive_mismatches == 0
    assert locus(grade, "C*03:03+C*07:01", "C*03:XX+C*07:01", "C").mismatches == 0
    assert locus(grade, "C*03:XX+C*07:01", "C*03:04+C*07:01", "C").mismatches == 0


def test_a_site_policy_may_drop_the_permissive_c_rule(grade, index):
    none = Matcher(index, dataclasses.replace(default_policy(), permissive_mismatches=()))
    r = locus(grade, "C*03:03+C*07:01", "C*03:04+C*07:01", "C", m=none)
    assert (r.mismatches, r.permissive_mismatches) == (1, 0)


def test_policy_refuses_a_permissive_pair_that_is_not_two_alleles_of_one_locus():
    from graftmatch.config import packaged
    from graftmatch.matching.policy import PolicyError, parse_policy

    text = packaged("graftmatch.matching", "policy.toml")
    for bad in ('[["C*03:03", "B*03:04"]]', '[["C*03:03"]]', '[["C*03", "C*03:04"]]'):
        edited = text.replace('permissive_mismatches = [["C*03:03", "C*03:04"]]',
                              f"permissive_mismatches = {bad}")
        with pytest.raises(PolicyError, match="'permissive_mismatches' entry 1"):
            parse_policy(edited, "site.toml")
    with pytest.raises(PolicyError, match="'antigen_mismatch_level' = 'serotype'"):
        parse_policy(text.replace('antigen_mismatch_level = "split"',
                                  'antigen_mismatch_level = "serotype"'), "site.toml")


def test_dpb1_mismatch_kind_is_unknown_without_serology(grade):
    r = locus(grade, "DPB1*04:01+DPB1*02:01", "DPB1*04:01+DPB1*03:01", "DPB1")
    assert r.unknown_mismatches == 1 and r.positions[1].mismatch is Relation.UNKNOWN


# -- molecular grades, best first (DOMAIN 2.4) ----------------------------------------------
@pytest.mark.parametrize(("patient", "donor", "expected"), [
    ("A*01:01:01:01", "A*01:01:01:01", Grade.GDNA),  # same allele, full gDNA
    ("A*01:01:01:01", "A*01:01:01:03", Grade.CDNA),  # same 3 fields, full sequences
    ("A*01:01:01:01", "A*01:01:02", Grade.PROTEIN),  # same 2 fields
    ("A*01:01:01:01", "A*01:103", Grade.G_GROUP),  # same G group, other protein
    ("A*01:01:02", "A*01:103", Grade.P_GROUP),  # same ARD protein only
    ("A*01:01:01:01", "A*02:01:01:01", Grade.MISMATCH),
])
def test_molecular_grades(grade, patient, donor, expected):
    r = locus(grade, patient, donor)
    assert {p.grade for p in r.positions} == {expected}


def test_g_level_policy_makes_a_p_only_match_a_mismatch(grade, index):
    strict = Matcher(index, dataclasses.replace(default_policy(), level="G"))
    assert locus(grade, "A*01:01:02", "A*01:103", m=strict).mismatches == 2
    assert locus(grade, "A*01:01:01:01", "A*01:103", m=strict).mismatches == 0


# -- null alleles --------------------------------------------------------------------------
def test_null_copy_acts_as_its_expressed_partner(grade):
    # Patient expresses A*01:01 only; so does the homozygous donor: no target either way.
    r = locus(grade, "A*01:01+A*24:09N", "A*01:01+A*01:01")
    assert (r.mismatches, r.gvh_mismatches, r.hvg_mismatches) == (0, 0, 0)


def test_a_null_allele_against_an_expressed_one_is_graded_expressing_vs_null_not_gdna(grade):
    """Nothing is counted (the null's partner matches), but the copies are not the same allele:
    A*24:09N faces A*01:01 [11 WMDA framework; 17 Atlas]."""
    r = locus(grade, "A*01:01+A*24:09N", "A*01:01+A*01:01")
    assert [(p.patient, p.donor, p.grade) for p in r.positions] == [
        ("A*01:01", "A*01:01", Grade.GDNA), ("A*24:09N", "A*01:01", Grade.EXPRESSING_VS_NULL)]
    assert r.positions[1].mismatch is None


def test_expressed_allele_against_a_null_is_host_versus_graft(grade):
    r = locus(grade, "A*01:01+A*24:09N", "A*01:01+A*24:02")
    assert (r.mismatches, r.gvh_mismatches, r.hvg_mismatches) == (1, 0, 1)
    assert r.positions[1].grade is Grade.EXPRESSING_VS_NULL
    assert r.positions[1].mismatch is Relation.ANTIGEN


def test_donor_null_is_graft_versus_host(grade):
    r = locus(grade, "A*01:01+A*24:02", "A*01:01+A*24:09N")
    assert (r.mismatches, r.gvh_mismatches, r.hvg_mismatches) == (1, 1, 0)


@pytest.mark.parametrize(("patient_null", "donor_null", "expected"), [
    ("A*24:09N", "A*24:09N", Grade.NULL_GDNA),
    ("A*01:15N", "A*01:15N", Grade.NULL_PARTIAL),
    ("A*24:09N", "A*01:16N", Grade.NULL_MISMATCH),
])
def test_shared_null_copies_match_with_null_grades(grade, patient_null, donor_null, expected):
    r = locus(grade, f"A*01:01+{patient_null}", f"A*02:01+{donor_null}")
    assert r.mismatches == 1  # the expressed copies differ; the two nulls match
    null_position = next(p for p in r.positions if p.patient == patient_null)
    assert null_position.grade is expected and null_position.confidence is Confidence.DEFINITE


def test_null_members_of_an_allele_list_are_read_as_expressing(grade, index):
    r = locus(grade, "A*01:01/A*01:16N+A*02:01", "A*01:01+A*02:01")
    assert r.mismatches == 0 and r.confidence is Confidence.EXACT
    keep = Matcher(index, dataclasses.replace(default_policy(), mixed_null_lists="keep"))
    assert locus(grade, "A*01:01/A*01:16N+A*02:01", "A*01:01+A*02:01", m=keep).confidence \
        is Confidence.POTENTIAL


# -- confidence ----------------------------------------------------------------------------
def test_confidence_levels(grade):
    assert locus(grade, "A*01:01:01:01+A*02:01:01:01",
                 "A*01:01:01:01+A*02:01:01:01").confidence is Confidence.DEFINITE
    assert locus(grade, "A*01:01+A*02:01", "A*01:01+A*02:01").confidence is Confidence.EXACT


def test_xx_donor_is_a_potential_not_a_definite_match(grade):
    r = locus(grade, "A*02:01+A*01:01", "A*02:XX+A*01:01")
    assert r.mismatches == 0 and r.potential_matches == 1
    assert [p.confidence for p in r.positions] == [Confidence.POTENTIAL, Confidence.EXACT]


def test_alternative_genotypes_never_give_more_than_potential(grade):
    r = locus(grade, "A*01:01+A*02:01|A*01:01+A*03:01", "A*01:01+A*02:01")
    assert r.mismatches == 0 and r.potential_matches == 2


def test_phased_alternatives_are_chosen_jointly_over_loci(grade):
    # Either A*01:01~B*08:01 + A*02:01~B*44:02 or A*01:01~B*44:02 + A*02:01~B*08:01: both
    # phases give the same unphased loci, so both loci match, and nothing is uncertain.
    result = grade("A*01:01~B*08:01+A*02:01~B*44:02|A*01:01~B*44:02+A*02:01~B*08:01",
                   "A*01:01+A*02:01^B*08:01+B*44:02", ["A", "B"])
    assert result.total_mismatches == 0 and result.category == "exact"
    # Here no genotype matches both loci of the donor: one locus must mismatch.
    result = grade("A*01:01~B*08:01+A*03:01~B*07:02|A*02:01~B*44:02+A*03:01~B*07:02",
                   "A*01:01+A*03:01^B*44:02+B*07:02", ["A", "B"])
    assert result.total_mismatches == 1


# -- serology (WMDA SI1-SI3) -----------------------------------------------------------------
@pytest.mark.parametrize(("patient", "donor", "expected", "mismatches"), [
    ("A2", "A*02:01", Grade.ASSOCIATED, 0),  # the antigen itself
    ("A*02:03", "A2", Grade.SPLIT, 0),  # A203 is associated with A2
    ("A9", "A*24:02", Grade.BROAD, 0),  # A24 is a split of A9
    ("A23", "A*24:02", Grade.MISMATCH, 2),
])
def test_serology_grades(grade, patient, donor, expected, mismatches):
    r = locus(grade, patient, donor)
    assert r.mismatches == mismatches
    assert {p.grade for p in r.positions} == {expected}
    if not mismatches:
        assert r.confidence is Confidence.POTENTIAL


# -- DPB1 T-cell epitopes (DOMAIN 2.5) ---------------------------------------------------------
@pytest.mark.parametrize(("patient", "donor", "verdict", "groups"), [
    ("DPB1*04:01+DPB1*02:01", "DPB1*04:01+DPB1*02:01", "permissive", ("3", "3")),  # matched
    ("DPB1*04:01+DPB1*02:01", "DPB1*04:01+DPB1*01:01", "permissive", ("3", "3")),
    ("DPB1*04:01+DPB1*02:01", "DPB1*04:01+DPB1*03:01", "non-permissive-hvg", ("3", "2")),
    ("DPB1*04:01+DPB1*09:01", "DPB1*04:01+DPB1*02:01", "non-permissive-gvh", ("1", "3")),
    ("DPB1*03:01+DPB1*09:01", "DPB1*14:01+DPB1*17:01", "permissive", ("1", "1")),
    # a null borrows its partner's group: the donor shows group 3 only
    ("DPB1*04:01+DPB1*09:01", "DPB1*04:01+DPB1*61:01N", "non-permissive-gvh", ("1", "3")),
    # two nulls: nothing to compare
    ("DPB1*04:01+DPB1*09:01", "DPB1*61:01N+DPB1*64:01N", "unknown", ("1", "")),
    # "2a" reads as group 2 (V2): against group 3, the donor's is more immunogenic
    ("DPB1*04:01+DPB1*02:01", "DPB1*04:01+DPB1*06:01", "non-permissive-hvg", ("3", "2")),
    # an ambiguous typing whose readings disagree (group 2 or 3)
    ("DPB1*04:01+DPB1*02:01", "DPB1*04:01+DPB1*03:01/DPB1*05:01", "unknown", ("3", "2/3")),
])
def test_dpb1_tce_verdicts(grade, patient, donor, verdict, groups):
    tce = locus(grade, patient, donor, "DPB1").tce
    assert (tce.verdict, tce.patient_groups, tce.donor_groups) == (verdict, *groups)


def test_dpb1_tce_policy_options(grade, index):
    v1 = Matcher(index, dataclasses.replace(default_policy(), tce_assignment="V1"))
    # DPB1*06:01 is group 3 under V1: same as the patient's
    assert locus(grade, "DPB1*04:01+DPB1*02:01", "DPB1*04:01+DPB1*06:01", "DPB1",
                 m=v1).tce.verdict == "permissive"
    no_inferred = Matcher(index, dataclasses.replace(default_policy(), tce_use_inferred=False))
    # DPB1*08:01 is only inferred ("2a$"): without inferred values its group is unknown
    assert locus(grade, "DPB1*04:01+DPB1*02:01", "DPB1*04:01+DPB1*08:01", "DPB1").tce.verdict \
        == "non-permissive-hvg"
    assert locus(grade, "DPB1*04:01+DPB1*02:01", "DPB1*04:01+DPB1*08:01", "DPB1",
                 m=no_inferred).tce.verdict == "unknown"


# -- totals and categories ----------------------------------------------------------------------
PATIENT = ("A*01:01+A*02:01^B*08:01+B*44:02^C*07:01+C*05:01^DRB1*03:01+DRB1*04:01"
           "^DQB1*02:01+DQB1*03:02^DPB1*04:01+DPB1*02:01")


def _donor(c: str = "C*07:01+C*05:01", dpb1: str = "DPB1*04:01+DPB1*02:01") -> str:
    return (f"A*01:01+A*02:01^B*08:01+B*44:02^{c}^DRB1*03:01+DRB1*04:01"
            f"^DQB1*02:01+DQB1*03:02^{dpb1}")


def test_match_counts_over_the_loci_asked_for(grade):
    donor = _donor(c="C*07:01+C*07:01")
    assert grade(PATIENT, donor, ["A", "B", "C", "DRB1"]).match_count == "7/8"
    result = grade(PATIENT, donor)  # default: 10/10 loci, DPB1 graded but not counted
    assert (result.match_count, result.category) == ("9/10", "mismatch")
    assert result.locus("DPB1").counted is False
    full = grade(PATIENT, donor, ["A", "B", "C", "DRB1", "DQB1", "DPB1"])
    assert (full.match_count, full.gvh_mismatches, full.hvg_mismatches,
            full.antigen_mismatches) == ("11/12", 1, 0, 1)


def test_permissive_dpb1_mismatch_category(grade):
    loci = ["A", "B", "C", "DRB1", "DQB1", "DPB1"]
    permissive = grade(PATIENT, _donor(dpb1="DPB1*04:01+DPB1*01:01"), loci)
    assert (permissive.match_count, permissive.category) == ("11/12", "permissive-mismatch")
    strict = grade(PATIENT, _donor(dpb1="DPB1*04:01+DPB1*03:01"), loci)
    assert strict.category == "mismatch"
    assert grade(PATIENT, _donor(), loci).category == "exact"


def test_untyped_loci_are_listed_and_make_the_match_potential(grade):
    result = grade(PATIENT, "A*01:01+A*02:01^B*08:01+B*44:02^DRB1*03:01+DRB1*04:01")
    assert result.match_count == "6/6"
    assert result.untyped_loci == ("C", "DQB1")
    assert result.category == "potential"
    assert not result.locus("C").typed


def test_unknown_locus_is_refused(grade):
    with pytest.raises(GraftmatchError, match="unknown locus 'XYZ'"):
        grade("A*01:01", "A*01:01", ["A", "XYZ"])


def test_result_is_immutable_and_json_ready(grade):
    result = grade(PATIENT, _donor())
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.total_mismatches = 3  # type: ignore[misc]
    doc = result.to_dict()
    assert doc["match_count"] == "10/10"
    assert set(doc["loci"]["A"]) >= {"mismatches", "gvh_mismatches", "hvg_mismatches",
                                     "antigen_mismatches", "positions", "confidence"}
    assert doc["loci"]["DPB1"]["tce"] == "permissive"


# -- DRB3/4/5: genes some haplotypes lack (DOMAIN 2.1; policy.toml [drb345]) ---------------------
# DRB1*01, *08, *10 haplotypes carry none of DRB3/4/5, *15/*16 carry DRB5 (DR51), *03, *11-*14
# DRB3 (DR52), *04, *07, *09 DRB4 (DR53). One typed DRB3/4/5 copy: the other haplotype lacks it.
DRB345 = ["DRB3", "DRB4", "DRB5"]


def _counts(r):
    return (r.mismatches, r.gvh_mismatches, r.hvg_mismatches)


def test_patient_dr53_donor_without_drb4_is_a_gvh_mismatch_at_drb4(grade):
    # Patient DRB4*01:01 + absent (acting as DRB4*01:01); donor absent + absent (its DRB1*03 and
    # *15 carry no DRB4). The patient's absent copy matches both absent donor copies, its
    # DRB4*01:01 neither: 1 mismatch, which the donor lacks (GvH 1); every donor copy is matched
    # by a patient copy (HvG 0).
    r = locus(grade, "DRB1*04:01+DRB1*03:01^DRB4*01:01",
              "DRB1*03:01+DRB1*15:01^DRB5*01:01", "DRB4")
    assert _counts(r) == (1, 1, 0)
    assert [(p.patient, p.donor, p.grade, p.confidence) for p in r.positions] == [
        ("DRB4*01:01", "DRB4 absent (by DRB1)", Grade.EXPRESSING_VS_ABSENT, Confidence.MISMATCH),
        ("DRB4 absent", "DRB4 absent (by DRB1)", Grade.ABSENT, Confidence.POTENTIAL)]
    assert r.positions[0].mismatch is Relation.ANTIGEN
    assert [(p.patient_absence, p.donor_absence) for p in r.positions] == [
        (None, "implied-by-drb1"), ("typed", "implied-by-drb1")]


def test_donor_only_drb5_is_an_hvg_mismatch(grade):
    # The mirror image: patient absent + absent (DRB1*04, *03: no DRB5), donor DRB5*01:01 + absent.
    result = grade("DRB1*04:01+DRB1*03:01^DRB4*01:01", "DRB1*03:01+DRB1*15:01^DRB5*01:01",
                   ["DRB1", *DRB345])
    assert _counts(result.locus("DRB5")) == (1, 0, 1)
    assert not result.locus("DRB3").typed  # both sides carry DRB1*03 and type no DRB3
    assert (result.match_count, result.untyped_loci) == ("3/6", ("DRB3",))  # 3 loci typed
    assert (result.gvh_mismatches, result.hvg_mismatches) == (2, 2)  # DRB1 1/1, DRB4, DRB5


def test_one_copy_drb4_is_that_allele_and_an_absent_copy_not_homozygous(grade):
    # Read as homozygous, patient DRB4*01:01 against a donor lacking DRB4 would be 2 mismatches
    # each way; as DRB4*01:01 + absent it is 1, GvH only (first DRB4 test). Against a donor with
    # two DR53 haplotypes (DRB4*01:01 + DRB4*01:02, other P groups): the patient's absent copy
    # acts as DRB4*01:01, so only the donor's DRB4*01:02 is unmatched: 1 mismatch, HvG 1, GvH 0.
    two = locus(grade, "DRB1*04:01+DRB1*01:01^DRB4*01:01",
                "DRB1*04:01+DRB1*07:01^DRB4*01:01+DRB4*01:02", "DRB4")
    assert _counts(two) == (1, 0, 1)
    one = locus(grade, "DRB1*04:01+DRB1*01:01^DRB4*01:01", "DRB1*04:01+DRB1*01:01^DRB4*01:01",
                "DRB4")
    assert _counts(one) == (0, 0, 0) and one.confidence is Confidence.EXACT
    assert [p.grade for p in one.positions] == [Grade.GDNA, Grade.ABSENT]
    assert one.positions[1].confidence is Confidence.DEFINITE  # typed on both sides


def test_absent_against_absent_is_a_potential_match_when_read_from_drb1(grade):
    result = grade("DRB1*01:01+DRB1*08:01", "DRB1*10:01+DRB1*01:01", DRB345)
    for name in DRB345:
        r = result.locus(name)
        assert _counts(r) == (0, 0, 0) and r.potential_matches == 2
        assert r.confidence is Confidence.POTENTIAL
        assert {p.grade for p in r.positions} == {Grade.ABSENT}
    assert (result.match_count, result.category) == ("6/6", "potential")


def test_drb3_untyped_when_drb1_implies_it_but_it_is_not_typed(grade):
    r = locus(grade, "DRB1*03:01+DRB1*01:01", "DRB1*03:01+DRB1*01:01^DRB3*01:01", "DRB3")
    assert not r.typed


@pytest.mark.parametrize(("patient", "absent"), [
    ("DRB1*03:01/DRB1*04:01+DRB1*01:01", {"DRB5"}),  # a list spanning DR52 and DR53
    ("DRB1*01:01+DRB1*04:01|DRB1*01:01+DRB1*15:01", {"DRB3"}),  # alternatives: DR53 or DR51
    ("DRB1*04:XX+DRB1*07:01", {"DRB3", "DRB5"}),  # an XX code within one group
    ("DR17+DR1", {"DRB4", "DRB5"}),  # serology
    ("A*01:01+A*02:01", set()),  # DRB1 untyped: nothing is implied
])
def test_absence_is_read_from_drb1_only_where_every_reading_agrees(grade, patient, absent):
    result = grade(patient, "DRB1*01:01+DRB1*08:01", DRB345)
    assert {r.locus for r in result.loci if r.typed} == absent


def test_absence_from_drb1_follows_the_policy(grade, index):
    off = Matcher(index, dataclasses.replace(default_policy(), drb345_from_drb1=False))
    assert not locus(grade, "DRB1*01:01+DRB1*08:01", "DRB1*01:01+DRB1*08:01", "DRB5",
                     m=off).typed
    # A site's exception, longer than the group entry: DRB1*14:54 haplotypes read as carrying no
    # DRB3 (an invented rule, to show the longest prefix decides).
    carriers = (*default_policy().drb345_carriers, ("DRB1*14:54", frozenset()))
    site = Matcher(index, dataclasses.replace(default_policy(), drb345_carriers=carriers))
    assert locus(grade, "DRB1*14:54+DRB1*01:01", "DRB1*01:01+DRB1*08:01", "DRB3", m=site).typed
    assert not locus(grade, "DRB1*14:01+DRB1*01:01", "DRB1*01:01+DRB1*08:01", "DRB3",
                     m=site).typed


def test_alternatives_naming_different_drb345_genes_read_the_others_as_absent(grade):
    # The second alternative puts DRB3 on both haplotypes, so it has no DRB4; the alternatives
    # differ at DRB4, so its match (with the first) is potential.
    result = grade("DRB1*03:01+DRB1*04:01^DRB3*01:01+DRB4*01:01|DRB3*01:01+DRB3*02:02",
                   "DRB1*03:01+DRB1*04:01^DRB3*01:01+DRB4*01:01", DRB345)
    drb4 = result.locus("DRB4")
    assert _counts(drb4) == (0, 0, 0) and drb4.confidence is Confidence.POTENTIAL
    assert _counts(result.locus("DRB3")) == (0, 0, 0)


@pytest.mark.parametrize(("table", "message"), [
    ('"DRB1*1454" = []', "key 'DRB1\\*1454' should be a DRB1 allele"),
    ('"DRB3*01" = []', "key 'DRB3\\*01'"),
    ('"DRB1*14:54" = ["DRB6"]',
     "'DRB1\\*14:54' = \\['DRB6'\\] should be a list of distinct loci"),
    ('"DRB1*14:54" = ["DRB3", "DRB3"]', "'DRB1\\*14:54' = \\['DRB3', 'DRB3'\\]"),
    ('"DRB1*14:54" = "DRB3"', "'DRB1\\*14:54' = 'DRB3'"),
])
def test_drb345_carriers_are_checked_entry_by_entry(table, message):
    from graftmatch.config import packaged
    from graftmatch.matching.policy import PolicyError, parse_policy

    text = packaged("graftmatch.matching", "policy.toml").replace(
        '"DRB1*09" = ["DRB4"]', table)
    with pytest.raises(PolicyError, match=r"site\.toml \[drb345\.carriers\]: " + message):
        parse_policy(text, "site.toml")


def test_a_policy_without_the_drb345_section_is_refused():
    from graftmatch.config import packaged
    from graftmatch.matching.policy import PolicyError, parse_policy

    text = packaged("graftmatch.matching", "policy.toml").replace(
        "read_absence_from_drb1 = true", "")
    with pytest.raises(PolicyError, match=r"\[drb345\]: 'read_absence_from_drb1' is missing"):
        parse_policy(text, "site.toml")


_DRB1 = ("DRB1*01:01", "DRB1*03:01", "DRB1*04:01", "DRB1*07:01", "DRB1*08:01", "DRB1*15:01",
         "DRB1*03:01/DRB1*04:01", "DRB1*13:XX")
_PARALOGUE_ALLELES = {"DRB3": ("DRB3*01:01", "DRB3*02:02"),
                      "DRB4": ("DRB4*01:01", "DRB4*01:02", "DRB4*01:03:01:02N"),
                      "DRB5": ("DRB5*01:01", "DRB5*02:02")}


@st.composite
def dr_typing(draw):
    """DRB1 (or none) and 0, 1 or 2 copies of each of DRB3, DRB4, DRB5."""
    blocks = []
    if draw(st.booleans()):
        blocks.append("+".join(draw(st.lists(st.sampled_from(_DRB1), min_size=1, max_size=2))))
    for alleles in _PARALOGUE_ALLELES.values():
        copies = draw(st.lists(st.sampled_from(alleles), max_size=2))
        if copies:
            blocks.append("+".join(copies))
    return "^".join(blocks) or "A*01:01"


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(patient=dr_typing(), donor=dr_typing())
def test_swapping_patient_and_donor_swaps_gvh_and_hvg_at_drb345(grade, patient, donor):
    forward, backward = grade(patient, donor, DRB345), grade(donor, patient, DRB345)
    for name in DRB345:
        f, b = forward.locus(name), backward.locus(name)
        assert f.typed == b.typed, name
        if f.typed:
            assert (f.mismatches, f.gvh_mismatches, f.hvg_mismatches) == (
                b.mismatches, b.hvg_mismatches, b.gvh_mismatches), name
