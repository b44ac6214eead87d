"""``graftmatch impute`` / ``predict`` / ``hf`` as a search coordinator runs them, on a two-
population set small enough to check by hand.

EUR: A*01:01~B*08:01 0.5, A*02:01~B*07:02 0.3, A*01:01~B*07:02 0.2.
AFR: A*01:01~B*08:01 0.1, A*02:01~B*07:02 0.9.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from graftmatch.interfaces.cli import app

runner = CliRunner()

HPF = """hap,pop,freq
A*01:01~B*08:01,EUR,0.5
A*02:01~B*07:02,EUR,0.3
A*01:01~B*07:02,EUR,0.2
A*01:01~B*08:01,AFR,0.1
A*02:01~B*07:02,AFR,0.9
"""


@pytest.fixture
def hpf(tmp_path):
    path = tmp_path / "hpf.csv"
    path.write_text(HPF)
    return str(path)


def invoke(*args: str):
    return runner.invoke(app, list(args))


def probabilities(doc) -> list[float]:
    return [round(g["probability"], 6) for g in doc["genotypes"]]


def test_given_a_donor_typed_at_a_only_then_b_is_imputed(hpf):
    result = invoke("impute", "--hf", hpf, "--population", "EUR", "--json", "A*01:01+A*01:01")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    # EUR: h1h1 0.25, h1h3 0.20, h3h3 0.04 of 0.49.
    assert doc["status"] == "ok" and doc["imputed_loci"] == ["B"]
    assert [g["genotype"] for g in doc["genotypes"]] == [
        "A*01:01+A*01:01^B*08:01+B*08:01", "A*01:01+A*01:01^B*07:02+B*08:01",
        "A*01:01+A*01:01^B*07:02+B*07:02"]
    assert probabilities(doc) == [round(x / 0.49, 6) for x in (0.25, 0.20, 0.04)]


def test_given_an_unknown_population_then_the_pooled_set_is_used_and_said(hpf):
    doc = json.loads(invoke("impute", "--hf", hpf, "--population", "ASI", "--json",
                            "A*01:01+A*01:01").stdout)
    # Pooled (equal weights): h1 0.3, h2 0.6, h3 0.1 -> 0.09, 0.06, 0.01 of 0.16.
    assert doc["population"] == "pooled"
    assert doc["population_steps"] == ["population 'ASI' is not in the set",
                                       "using the pooled set of all 2 populations"]
    assert probabilities(doc) == [0.5625, 0.375, 0.0625]


def test_given_a_mixed_ancestry_then_the_haplotypes_come_from_the_mix(hpf):
    doc = json.loads(invoke("impute", "--hf", hpf, "--population", "EUR:0.5,AFR:0.5",
                            "--json", "A*01:01+A*01:01").stdout)
    assert doc["population"] == "EUR:0.5+AFR:0.5"
    assert probabilities(doc) == [0.5625, 0.375, 0.0625]


@pytest.mark.parametrize(("mix", "message"), [
    ("EUR:inf,EUR:1", "population 'EUR:inf': weight must be a finite number above 0"),
    ("EUR:nan,AFR:1", "population 'EUR:nan': weight must be a finite number above 0"),
    ("EUR:1e-300,AFR:1", "population 'EUR:1e-300': weight is below a millionth of the largest "
                         "(1); leave it out"),
])
def test_given_a_mix_with_an_infinite_or_vanishing_weight_then_the_error_names_it(hpf, mix,
                                                                                   message):
    result = invoke("impute", "--hf", hpf, "--population", mix, "A*01:01+A*01:01")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {message}"


def test_given_weights_of_1e308_then_they_are_read_as_equal_shares(hpf):
    doc = json.loads(invoke("impute", "--hf", hpf, "--population", "EUR:1e308,AFR:1e308",
                            "--json", "A*01:01+A*01:01").stdout)
    assert doc["population"] == "EUR:0.5+AFR:0.5"
    assert probabilities(doc) == [0.5625, 0.375, 0.0625]


def test_predict_json_has_the_mismatch_distribution_and_per_locus_probabilities(hpf):
    result = invoke("predict", "--hf", hpf, "--patient", "A*01:01+A*01:01^B*08:01+B*08:01",
                    "--donor", "A*01:01+A*01:01", "--patient-population", "EUR",
                    "--donor-population", "EUR", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    p = {k: round(v, 6) for k, v in doc["p_mismatches"].items()}
    assert p == {"0": round(0.25 / 0.49, 6), "1": round(0.20 / 0.49, 6),
                 "2": round(0.04 / 0.49, 6), "3": 0.0, "4": 0.0}
    assert {k: round(v, 6) for k, v in doc["loci"]["A"].items()} == {"p0": 1, "p1": 0,
                                                                      "p2": 0}
    assert doc["status"] == "ok" and doc["counted_loci"] == ["A", "B"]
    assert doc["p_permissive_dpb1"] is None  # no DPB1 in the set


def test_predict_table_reads_as_a_match_grade(hpf):
    result = invoke("predict", "--hf", hpf, "--patient", "A*01:01+A*01:01^B*08:01+B*08:01",
                    "--donor", "A*01:01+A*01:01", "--patient-population", "EUR",
                    "--donor-population", "EUR")
    assert result.exit_code == 0
    assert "4/4" in result.stdout and "0.5102" in result.stdout


def test_asking_for_a_locus_the_set_lacks_is_a_clear_error(hpf):
    result = invoke("predict", "--hf", hpf, "--patient", "A*01:01+A*01:01",
                    "--donor", "A*01:01+A*01:01", "--loci", "A,B,DRB1")
    assert result.exit_code == 1
    assert "DRB1 is not in the patient's frequency set (A, B)" in result.stderr


def test_a_bad_frequency_line_is_named(tmp_path):
    path = tmp_path / "hpf.csv"
    path.write_text(HPF.replace("A*01:01~B*07:02,EUR,0.2", "A*01:01~B*07:02,EUR,-0.2"))
    result = invoke("impute", "--hf", str(path), "A*01:01+A*01:01")
    assert result.exit_code == 1
    assert "line 4, frequency: '-0.2' must be at least 1e-12 and at most 1" in result.stderr


def test_a_bad_typing_is_named_with_its_position(hpf):
    result = invoke("impute", "--hf", hpf, "--json", "A*01:01+A*01:999")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert (doc["token"], doc["position"]) == ("A*01:999", 9)


def test_hf_info_and_a_synthetic_set(tmp_path, hpf):
    doc = json.loads(invoke("hf", "info", hpf, "--json").stdout)
    assert doc["populations"] == {"EUR": {"haplotypes": 3, "sum": pytest.approx(1.0)},
                                  "AFR": {"haplotypes": 2, "sum": pytest.approx(1.0)}}
    path = tmp_path / "syn.json.gz"
    result = invoke("hf", "synthetic", str(path), "--haplotypes", "500", "--seed", "3")
    assert result.exit_code == 0 and "SYNTHETIC" in result.stdout
    info = json.loads(invoke("hf", "info", str(path), "--json").stdout)
    assert info["synthetic"] is True and "NOT real" in info["source"]
    assert info["populations"]["SYN"]["haplotypes"] == 500
    assert info["populations"]["SYN"]["sum"] == pytest.approx(1.0)


# -- a population the set lacks lowers confidence ------------------------------------------
PATIENT = "A*01:01+A*24:02^B*08:01+B*07:02^DRB1*03:01+DRB1*15:01"
SUBSTITUTED = ["population 'AFA' is not in the set", "using the set's only population 'CAU'"]


def test_afa_donor_imputed_with_cau_frequencies_is_flagged_population_substituted():
    from tests.test_frequencies import CAU  # the GRIM example set: CAU only

    result = invoke("predict", "--hf", str(CAU), "--patient", PATIENT, "--donor", PATIENT,
                    "--patient-population", "CAU", "--donor-population", "AFA", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    # The prediction is the worse of the two: the donor's; the patient's own is ok.
    assert (doc["status"], doc["confidence"]) == ("population-substituted", "lowered")
    donor, patient = doc["donor"], doc["patient"]
    assert (donor["status"], donor["confidence"]) == ("population-substituted", "lowered")
    assert donor["population"] == "CAU" and donor["population_steps"] == SUBSTITUTED
    assert donor["reasons"] == ["frequencies of another population than asked for: "
                                + "; ".join(SUBSTITUTED)]
    assert (patient["status"], patient["confidence"], patient["reasons"]) == (
        "ok", "normal", [])
    table = invoke("predict", "--hf", str(CAU), "--patient", PATIENT, "--donor", PATIENT,
                   "--donor-population", "AFA").stdout
    assert "status population-substituted (lowered confidence)" in table.splitlines()[0]


def test_impute_with_a_substituted_population_keeps_a_worse_status_and_adds_the_reason(hpf):
    # ASI is not in the set: the pooled set is used. B*44:02 is in neither population, so
    # the status stays "unrepresented" (lower than population-substituted), with both reasons.
    doc = json.loads(invoke("impute", "--hf", hpf, "--population", "ASI", "--json",
                            "A*01:01+A*01:01^B*44:02+B*08:XX").stdout)
    assert (doc["status"], doc["confidence"]) == ("unrepresented", "lowered")
    assert doc["reasons"][0] == ("frequencies of another population than asked for: "
                                 "population 'ASI' is not in the set; using the pooled set "
                                 "of all 2 populations")
    assert any("B*44:02 not in population pooled" in r for r in doc["reasons"])


def test_an_exact_typing_reads_no_frequencies_so_a_substituted_population_leaves_it_ok(hpf):
    doc = json.loads(invoke("impute", "--hf", hpf, "--population", "ASI", "--json",
                            "A*01:01+A*02:01^B*08:01+B*07:02").stdout)
    assert (doc["status"], doc["method"], doc["confidence"]) == ("ok", "typed", "normal")
    assert doc["population_steps"] == ["population 'ASI' is not in the set",
                                       "using the pooled set of all 2 populations"]
