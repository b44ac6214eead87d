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
