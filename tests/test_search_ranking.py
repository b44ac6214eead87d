"""The order a search coordinator sees: donors and cord units ranked by the published rules of
``ranking.toml`` (issue 11), each case worked out by hand from those rules.

Registries here are tiny and hand-made; every typing is exact, so the probabilities are 0 or 1
and the typing-based counts decide. TCE (V2): DPB1*04:01 and *01:01 group 3, *09:01 group 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graftmatch.interfaces.cli import app
from graftmatch.prediction.settings import default_settings
from graftmatch.registry.index import build_index
from graftmatch.registry.store import Registry
from graftmatch.search.engine import Criteria, Patient, Searcher
from graftmatch.search.ranking import RankingError, parse_ranking
from tests.test_frequencies import CAU

HEADER = "type,id,registry,bank,hla,age,sex,abo,cmv,status,tnc_1e7,cd34_1e5\n"

#: The patient of issue 11, item 1, with DPB1 typed.
P1 = {"A": "A*01:01+A*02:01", "B": "B*08:01+B*07:02", "C": "C*07:01+C*07:02",
      "DRB1": "DRB1*03:01+DRB1*15:01", "DQB1": "DQB1*02:01+DQB1*06:02",
      "DPB1": "DPB1*04:01+DPB1*04:01"}
#: A patient homozygous at A and carrying C*03:03 (issue 11, item 7).
P2 = {**P1, "A": "A*01:01+A*01:01", "C": "C*03:03+C*07:01"}
del P2["DPB1"]


def gl(base: dict[str, str], **change: str) -> str:
    return "^".join({**base, **change}.values())


DONORS = [  # id, typing, age
    ("DQB1-MM-AGE20", gl(P1, DQB1="DQB1*02:01+DQB1*03:01"), 20),
    ("A-MM-AGE19", gl(P1, A="A*01:01+A*03:01"), 19),
    ("DRB1-MM-AGE19", gl(P1, DRB1="DRB1*03:01+DRB1*04:01"), 19),
    ("DPB1-NONPERM-AGE44", gl(P1, DPB1="DPB1*04:01+DPB1*09:01"), 44),
    ("DPB1-PERM-AGE45", gl(P1, DPB1="DPB1*04:01+DPB1*01:01"), 45),
    ("DPB1-NONPERM-AGE30", gl(P1, DPB1="DPB1*04:01+DPB1*09:01"), 30),
    ("SEROLOGY-A-B-ONLY", "A1+A2^B8+B7", 30),
    ("PERMISSIVE-C-AGE50", gl(P2, C="C*03:04+C*07:01"), 50),
    ("HVG-ONLY-A-AGE40", gl(P2, A="A*01:01+A*02:01"), 40),
    ("BIDIRECTIONAL-B-AGE40", gl(P2, B="B*08:01+B*44:02"), 40),
    ("BIDIRECTIONAL-B-AGE20", gl(P2, B="B*08:01+B*44:02"), 20),
]
#: The donors made for patient P1 (the others are P2's).
FIRST_GROUP = {ident for ident, _, _ in DONORS[:7]}
CORDS = [  # id, typing, TNC x10^7
    ("CORD-8of8-TNC32", gl(P1), 32),
    ("CORD-A-MM-TNC120", gl(P1, A="A*01:01+A*03:01"), 120),
    ("CORD-C-MM-TNC120", gl(P1, C="C*07:01+C*04:01"), 120),
    ("CORD-8of8-TNC40", gl(P1), 40),
]


@pytest.fixture(scope="module")
def reader(index):
    from graftmatch.typing.parser import TypingReader

    return TypingReader(index)


@pytest.fixture(scope="module")
def registry(tmp_path_factory, index, reader, table) -> Registry:
    folder = tmp_path_factory.mktemp("ranking")
    lines = [HEADER]
    lines += [f'donor,{ident},REG1,,"{typing}",{age},M,O+,neg,available,,\n'
              for ident, typing, age in DONORS]
    lines += [f'cord,{ident},,BANK1,"{typing}",,,O+,,available,{tnc},\n'
              for ident, typing, tnc in CORDS]
    source = folder / "records.csv"
    source.write_text("".join(lines))
    reg = Registry.create(folder / "reg", release=index.release, frequency_set=str(CAU),
                          population="CAU")
    assert reg.import_file(source, reader).rejected == 0
    build_index(reg, reader, table, default_settings())
    return reg


@pytest.fixture(scope="module")
def table(index, reader):
    from graftmatch.prediction.frequencies import read_frequency_set
    from graftmatch.prediction.haplotypes import HaplotypeTable

    population, _ = read_frequency_set(CAU, reader).select("CAU")
    return HaplotypeTable.compile(population, reader)


def ranked(registry, reader, table, patient: str, kind: str = "donor", **patient_details):
    searcher = Searcher(registry, reader, table)
    result = searcher.search(Patient(patient, **patient_details),
                             Criteria(max_mismatches=2, kinds=(kind,)))
    shown = result.donors if kind == "donor" else result.cords
    searcher.attach_records([*shown, *(u for pair in result.double_cords for u in pair)])
    return result, [c.record["ext_id"] for c in shown]


# -- adult donors --------------------------------------------------------------------------
def test_an_8_of_8_donor_mismatched_only_at_dqb1_ranks_above_younger_donors_mismatched_at_a_or_drb1(
        registry, reader, table):
    _, ids = ranked(registry, reader, table, gl(P1))
    assert ids.index("DQB1-MM-AGE20") < ids.index("A-MM-AGE19")
    assert ids.index("DQB1-MM-AGE20") < ids.index("DRB1-MM-AGE19")


def test_donors_follow_the_guideline_order_8_of_8_then_age_band_then_dpb1_then_dqb1(
        registry, reader, table):
    """8/8 first (DQB1 does not count there); within 8/8 the age band (under 33, 33-42,
    43-52, 53 and over), then DPB1 (matched or permissive first), then the expected DQB1
    mismatches; the serology-typed donor is 8/8 by typing but only P(8/8) 0.45, so it comes
    after the certain 8/8 donors; then the 7/8 donors."""
    _, ids = ranked(registry, reader, table, gl(P1))
    assert [i for i in ids if i in FIRST_GROUP] == [
        "DQB1-MM-AGE20", "DPB1-NONPERM-AGE30", "DPB1-PERM-AGE45", "DPB1-NONPERM-AGE44",
        "SEROLOGY-A-B-ONLY", "A-MM-AGE19", "DRB1-MM-AGE19"]


def test_a_45_year_old_with_permissive_dpb1_outranks_a_44_year_old_with_non_permissive_dpb1(
        registry, reader, table):
    result, ids = ranked(registry, reader, table, gl(P1))
    assert ids.index("DPB1-PERM-AGE45") < ids.index("DPB1-NONPERM-AGE44")
    by_id = {c.record["ext_id"]: c for c in result.donors}
    assert "age 44 (band 43-52)" in by_id["DPB1-NONPERM-AGE44"].reasons
    assert "DPB1 non-permissive-hvg" in by_id["DPB1-NONPERM-AGE44"].reasons
    # Across bands age still decides: a 30-year-old (under 33) before a 45-year-old.
    assert ids.index("DPB1-NONPERM-AGE30") < ids.index("DPB1-PERM-AGE45")


def test_among_7_of_8_donors_a_permissive_c0303_vs_c0304_mismatch_ranks_first(
        registry, reader, table):
    """Dehn 2019 for 7/8 donors: a permissive C*03:03/C*03:04 mismatch first (even at 50
    years), then younger donors, and the homozygous-locus (host-versus-graft only) rule last."""
    result, ids = ranked(registry, reader, table, gl(P2))
    assert [i for i in ids if i not in FIRST_GROUP] == [
        "PERMISSIVE-C-AGE50", "BIDIRECTIONAL-B-AGE20", "HVG-ONLY-A-AGE40",
        "BIDIRECTIONAL-B-AGE40"]
    first = result.donors[0]
    assert first.core_mismatches == 1 and "1 of 1 core mismatch(es) permissive" in first.reasons
    assert first.loci["C"]["permissive_mismatches"] == 1


def test_among_7_of_8_donors_of_one_age_an_hvg_only_mismatch_ranks_before_a_bidirectional_one(
        registry, reader, table):
    result, ids = ranked(registry, reader, table, gl(P2))
    assert ids.index("HVG-ONLY-A-AGE40") < ids.index("BIDIRECTIONAL-B-AGE40")
    hvg = next(c for c in result.donors if c.record["ext_id"] == "HVG-ONLY-A-AGE40")
    assert (hvg.loci["A"]["gvh_mismatches"], hvg.loci["A"]["hvg_mismatches"]) == (0, 1)
    assert "host-versus-graft only (patient homozygous)" in hvg.reasons


def test_among_10_of_10_donors_of_one_age_a_drb5_mismatch_ranks_below_a_drb3_4_5_match(
        tmp_path, index, reader, table):
    """Dehn 2019: fewest DRB3/4/5 mismatches breaks ties among 8/8 donors. The patient carries
    DRB3*01:01 and DRB5*01:01 (one copy each: the other haplotype lacks the gene); DRB4 is
    absent on both sides by their DRB1 (DR52, DR51 groups)."""
    patient = gl(P1) + "^DRB3*01:01^DRB5*01:01"
    rows = [("DRB5-MISMATCH", gl(P1) + "^DRB3*01:01^DRB5*01:02"),
            ("DRB-MATCH", gl(P1) + "^DRB3*01:01^DRB5*01:01")]
    source = tmp_path / "r.csv"
    source.write_text(HEADER + "".join(f'donor,{ident},REG1,,"{typing}",40,M,O+,neg,available,,\n'
                                       for ident, typing in rows))
    reg = Registry.create(tmp_path / "reg", release=index.release, frequency_set=str(CAU),
                          population="CAU")
    reg.import_file(source, reader)
    build_index(reg, reader, table, default_settings())
    result, ids = ranked(reg, reader, table, patient)
    assert ids == ["DRB-MATCH", "DRB5-MISMATCH"]
    second = result.donors[1]
    assert (second.loci["DRB5"]["mismatches"], second.loci["DRB5"]["counted"]) == (1, False)
    assert [p["grade"] for p in second.loci["DRB4"]["positions"]] == ["absent", "absent"]
    assert "1.0 mismatch(es) expected at DQB1, DRB3, DRB4, DRB5" in second.reasons


# -- labels: one rule for search and match -------------------------------------------------
def test_a_donor_typed_at_two_loci_is_shown_4_of_4_potential_not_10_of_10(registry):
    runner = CliRunner()
    found = runner.invoke(app, ["search", "--registry", str(registry.path), "--patient",
                                gl(P1), "--kinds", "donor", "--json"])
    assert found.exit_code == 0, found.stdout
    donor = next(d for d in json.loads(found.stdout)["donors"]
                 if d["id"] == "SEROLOGY-A-B-ONLY")
    assert (donor["match_count"], donor["typed_loci"], donor["untyped_loci"],
            donor["category"]) == ("4/4", ["A", "B"], ["C", "DRB1", "DQB1"], "potential")
    assert donor["match"] == "4/4 at A, B; untyped C, DRB1, DQB1: potential"
    # Grades and confidence by name, as `graftmatch match` gives them.
    assert donor["loci"]["A"]["confidence"] == "potential"
    assert [p["grade"] for p in donor["loci"]["A"]["positions"]] == ["associated", "associated"]
    assert donor["loci"]["C"] == {"typed": False, "counted": True, "confidence": "potential"}
    matched = runner.invoke(app, ["match", "--patient", gl(P1), "--donor", "A1+A2^B8+B7",
                                  "--json"])
    assert json.loads(matched.stdout)["label"] == donor["match"]
    table = runner.invoke(app, ["match", "--patient", gl(P1), "--donor", "A1+A2^B8+B7"])
    assert "4/4 at A, B; untyped C, DRB1, DQB1: potential" in table.stdout


# -- cord blood units ----------------------------------------------------------------------
def test_for_a_20_kg_child_a_7_of_8_unit_at_6_tnc_per_kg_ranks_above_an_8_of_8_unit_at_1_6(
        registry, reader, table):
    """1.6 and 2.0 x10^7/kg are below the single-unit floor of 2.5: not offered alone. The
    two 7/8 units at 6.0 reach the non-malignant target; the HLA-C mismatch goes last."""
    result, ids = ranked(registry, reader, table, gl(P1), kind="cord", weight_kg=20)
    assert ids == ["CORD-A-MM-TNC120", "CORD-C-MM-TNC120"]
    assert [c.tnc_per_kg for c in result.cords] == [6.0, 6.0]
    assert [c.dose_group for c in result.cords] == [2, 2]
    assert "HLA-C mismatch" in result.cords[1].reasons
    assert result.double_cords == []  # a single unit reaches 5.0


def test_a_unit_below_the_single_unit_floor_appears_only_in_a_double_unit_pair(
        registry, reader, table):
    """25 kg: TNC/kg 1.28 (below the double floor 1.5: dropped), 1.6 (double only), 4.8 and
    4.8 (single units, below the 5.0 target, so pairs are offered)."""
    result, ids = ranked(registry, reader, table, gl(P1), kind="cord", weight_kg=25)
    assert ids == ["CORD-A-MM-TNC120", "CORD-C-MM-TNC120"]
    pairs = [(a.record["ext_id"], b.record["ext_id"]) for a, b in result.double_cords]
    assert pairs == [("CORD-8of8-TNC40", "CORD-A-MM-TNC120"),
                     ("CORD-8of8-TNC40", "CORD-C-MM-TNC120"),
                     ("CORD-A-MM-TNC120", "CORD-C-MM-TNC120")]
    assert result.double_cords[0][0].tnc_per_kg == pytest.approx(1.6)


def test_without_a_weight_cords_go_by_hla_and_total_cells(registry, reader, table):
    result, ids = ranked(registry, reader, table, gl(P1), kind="cord")
    assert ids == ["CORD-8of8-TNC40", "CORD-8of8-TNC32", "CORD-A-MM-TNC120",
                   "CORD-C-MM-TNC120"]
    assert "dose not judged (no patient weight or no TNC count)" in result.cords[0].reasons


# -- the rule file -------------------------------------------------------------------------
@pytest.mark.parametrize(("edit", "message"), [
    (("probability_bin = 0.1", "probability_bin = 0"), "'probability_bin' = 0.0 should be above"),
    (("probability_bin = 0.1", "probability_bin = -1"), "'probability_bin' = -1.0"),
    (('order = ["mismatches", "probability", "permissive", "age", "dpb1", "class_ii", '
      '"direction",\n         "cmv", "abo", "sex"]', "order = []"), "'order' = []"),
    (("age_bands = [33, 43, 53]", "age_bands = [43, 33]"), "'age_bands' = [43, 33]"),
    (("single_min_tnc_per_kg = 2.5", "single_min_tnc_per_kg = 1.0"),
     "'double_min_tnc_per_kg_each' = 1.5 is above 'single_min_tnc_per_kg' = 1"),
    (('core_loci = ["A", "B", "C", "DRB1"]', 'core_loci = ["a", "a"]'), "'core_loci'"),
    (('single_floor = "and"', 'single_floor = "maybe"'), "'single_floor' = 'maybe'"),
    (("{ group = 3, mismatches = 2, min_tnc_per_kg = 2.5 },",
      "{ group = 3, mismatches = 5, min_tnc_per_kg = 2.5 },"), "dose_groups[4]"),
    (("max_mismatches = 2", "max_mismatches = 2\nmax_mismatch = 3"), "unknown key"),
    (('\nloci = ["A", "B", "C", "DRB1"]', '\nloci = ["a", "b"]'),
     "site.toml [cord]: 'loci' = ['a', 'b'] should be a list of distinct loci as the release "
     "writes them"),
    (("[cord]", "[cords]\nloci = []\n[cord]"),
     "site.toml: unknown key 'cords'; known: cord, donor"),
])
def test_a_ranking_file_that_cannot_be_applied_as_written_is_refused_by_name(edit, message):
    text = (Path(__file__).parents[1] / "src/graftmatch/search/ranking.toml").read_text()
    assert edit[0] in text
    with pytest.raises(RankingError, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse_ranking(text.replace(edit[0], edit[1], 1), "site.toml")


def test_a_ranking_on_loci_the_search_does_not_grade_is_refused_by_name():
    text = (Path(__file__).parents[1] / "src/graftmatch/search/ranking.toml").read_text()
    ranking = parse_ranking(text.replace('core_loci = ["A", "B", "C", "DRB1"]',
                                         'core_loci = ["A", "B", "C", "DQA1"]'), "site.toml")
    with pytest.raises(RankingError) as caught:
        ranking.check_loci(("A", "B", "C", "DRB1", "DQB1", "DPB1", "DRB3", "DRB4", "DRB5"))
    assert str(caught.value) == ("site.toml: [donor] core_loci names 'DQA1'; the search grades "
                                 "A, B, C, DRB1, DQB1, DPB1, DRB3, DRB4, DRB5")


# -- citations -----------------------------------------------------------------------------
def test_shown_sources_say_kollman_and_barker_studied_malignant_disease(registry):
    found = CliRunner().invoke(app, ["search", "--registry", str(registry.path), "--patient",
                                     gl(P1), "--weight", "20", "--json"])
    ranking = json.loads(found.stdout)["ranking"]
    assert "Kollman, Blood 2016" in ranking["donor_evidence"]
    assert "haematological malignancy" in ranking["donor_evidence"]
    assert "Barker, Blood 2010" in ranking["cord_evidence"]
    assert "malignancy" in ranking["cord_evidence"]
    table = CliRunner().invoke(app, ["search", "--registry", str(registry.path), "--patient",
                                     gl(P1), "--weight", "20"])
    assert "ranking evidence: Dehn, Blood 2019" in " ".join(table.stdout.split())


def test_the_10_of_10_default_cites_the_iei_guideline_and_tce_v2_its_primary_source():
    from graftmatch.config import packaged

    policy = packaged("graftmatch.matching", "policy.toml")
    counted = policy[:policy.index("counted_loci =")]
    counted = counted[counted.rindex("graded_loci ="):]
    assert "Lankester, Bone Marrow Transplant 2021" in counted and "[52" not in counted
    tce = policy[policy.index("[dpb1_tce]"):policy.index('assignment = "V2"')]
    assert "Crivello" in tce and "2015;21:233" in tce and "2016;128:120" in tce
