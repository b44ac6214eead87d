"""The application services as a coordinator's jobs run through them, with no command line:
read and reduce a typing, grade a pair, predict, create and import a small registry, search
it. Each result is checked by hand, and against the command that renders the same service:
the CLI's JSON is the service's document."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graftmatch.errors import GraftmatchError, TypingError
from graftmatch.interfaces.cli import app
from graftmatch.registry.store import RegistryError
from graftmatch.search.engine import Criteria, Patient
from graftmatch.services import matching, prediction, registries, search, typings
from graftmatch.services.batch import grade_files
from tests.test_cli_predict import HPF
from tests.test_frequencies import CAU

runner = CliRunner()

PATIENT = ("A*01:01+A*02:01^B*08:01+B*07:02^C*07:01+C*07:02^DRB1*03:01+DRB1*15:01"
           "^DQB1*02:01+DQB1*06:02")
#: The patient with A*02:01 -> A*03:01: one antigen mismatch at A.
A_MISMATCH = PATIENT.replace("A*02:01", "A*03:01")
#: Three antigen mismatches (A, B, DRB1): outside the default two.
FAR = A_MISMATCH.replace("B*07:02", "B*44:02").replace("DRB1*15:01", "DRB1*04:01")
HEADER = "type,id,registry,bank,hla,age,sex,abo,cmv,status,tnc_1e7,cd34_1e5\n"
RECORDS = (HEADER
           + f'donor,D-SAME,REG1,,"{PATIENT}",30,F,A+,neg,available,,\n'
           + f'donor,D-A-MM,REG1,,"{A_MISMATCH}",25,M,O+,pos,available,,\n'
           + f'donor,D-FAR,REG2,,"{FAR}",40,M,O+,neg,available,,\n'
           + f'cord,C-SAME,,BANK1,"{PATIENT}",,,A+,,available,90,40\n')


def cli_json(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_validate_gives_the_typing_as_read_and_the_clis_document():
    checked = typings.validate("B*0801+B*15101")
    doc = checked.to_dict()
    assert (doc["valid"], doc["typing"], doc["loci"], doc["release"]) == (
        True, "B*08:01+B*15:101", ["B"], "3.58.0")
    assert [n["token"] for n in doc["notices"]] == ["B*0801", "B*15101"]
    assert doc == cli_json("hla", "validate", "B*0801+B*15101")


def test_validate_refuses_an_unknown_allele_by_token_and_position():
    with pytest.raises(TypingError) as refused:
        typings.validate("A*01:01+A*01:999")
    assert (refused.value.token, refused.value.position) == ("A*01:999", 9)


def test_reduce_to_each_level_and_a_level_that_does_not_exist():
    four_field = "A*01:01:01:01+A*02:01:01:01"
    assert typings.reduce(four_field, "lgx").reduced == "A*01:01+A*02:01"
    assert typings.reduce(four_field, "serology").reduced == "A1+A2"
    reduction = typings.reduce(four_field, "P")
    assert reduction.to_dict() == cli_json("hla", "reduce", four_field, "--to", "P")
    with pytest.raises(GraftmatchError, match=r"level 'X': expected one of G, P, lgx, "
                       r"serology"):
        typings.reduce(four_field, "X")


def test_grade_pair_counts_one_antigen_mismatch_at_a():
    result = matching.grade_pair(PATIENT, A_MISMATCH)
    assert (result.match_count, result.total_mismatches, result.antigen_mismatches) == (
        "9/10", 1, 1)
    at_a = next(r for r in result.loci if r.locus == "A")
    assert (at_a.mismatches, at_a.gvh_mismatches, at_a.hvg_mismatches) == (1, 1, 1)
    assert result.to_dict() == cli_json("match", "--patient", PATIENT, "--donor", A_MISMATCH)
    assert matching.grade_pair(PATIENT, A_MISMATCH, ["B", "C"]).match_count == "4/4"


def test_grade_pair_says_whose_typing_is_wrong_and_refuses_an_unknown_level():
    with pytest.raises(TypingError, match=r"^donor typing: "):
        matching.grade_pair(PATIENT, "A*01:999+A*01:01")
    with pytest.raises(GraftmatchError, match=r"level 'X': expected one of P, G"):
        matching.grade_pair(PATIENT, PATIENT, level="X")


def test_grade_files_writes_the_rows_and_the_summary(tmp_path):
    patients = tmp_path / "patients.txt"
    patients.write_text(f"P1%{PATIENT}\n")
    donors = tmp_path / "donors.txt"
    donors.write_text(f"D1%{PATIENT}\nD2%{A_MISMATCH}\nD3%{FAR}\n")
    seen: list[tuple[str, int, int | None]] = []
    report = grade_files(patients, donors, output=tmp_path / "out.jsonl",
                         summaries=[["A", "B", "DRB1"]],
                         progress=lambda stage, done, total: seen.append((stage, done, total)))
    assert (report.graded, report.patients, report.donors, report.level) == (3, 1, 3, "P")
    assert report.loci == ("A", "B", "C", "DRB1", "DQB1")
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(r["donor"], r["total_mismatches"]) for r in rows] == [
        ("D1", 0), ("D2", 1), ("D3", 3)]
    assert [(r["mismatches"], r["pairs"]) for r in report.summaries[0].rows()
            if r["pairs"]] == [(0, 1), (1, 1), (3, 1)]
    assert seen[-1] == ("grading pairs", 3, 3)


@pytest.fixture
def hpf(tmp_path) -> Path:
    path = tmp_path / "hpf.csv"
    path.write_text(HPF)
    return path


def test_predict_worked_out_by_hand_and_as_the_cli_prints_it(hpf):
    # Patient A*01:01 hom, B*08:01 hom (EUR h1h1); donor typed at A only: h1h1 0.25, h1h3
    # 0.20, h3h3 0.04 of 0.49, so P(4/4) = 0.25/0.49 and P(one mismatch at B) = 0.20/0.49.
    outcome = prediction.predict("A*01:01+A*01:01^B*08:01+B*08:01", "A*01:01+A*01:01", hpf,
                                 patient_population="EUR", donor_population="EUR")
    doc = outcome.to_dict(5)
    assert {k: round(v, 6) for k, v in doc["p_mismatches"].items()} == {
        "0": round(0.25 / 0.49, 6), "1": round(0.20 / 0.49, 6), "2": round(0.04 / 0.49, 6),
        "3": 0.0, "4": 0.0}
    assert doc["counted_loci"] == ["A", "B"] and doc["status"] == "ok"
    assert doc == cli_json("predict", "--hf", str(hpf), "--patient",
                           "A*01:01+A*01:01^B*08:01+B*08:01", "--donor", "A*01:01+A*01:01",
                           "--patient-population", "EUR", "--donor-population", "EUR")


def test_impute_names_the_fallback_and_tells_the_sets_notices(hpf):
    told: list[str] = []
    outcome = prediction.impute("A*01:01+A*01:01", hpf, "ASI", notify=told.append)
    assert outcome.imputation.population == "pooled"
    assert outcome.imputation.imputed_loci == ("B",)
    assert told == list(outcome.notices)
    assert outcome.to_dict(10) == cli_json("impute", "--hf", str(hpf), "--population", "ASI",
                                           "A*01:01+A*01:01")


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("services")
    source = folder / "records.csv"
    source.write_text(RECORDS)
    stages: set[str] = set()
    imported = registries.import_records(folder / "reg", source, hf=CAU, population="CAU",
                                         progress=lambda stage, done, total: stages.add(stage))
    report = imported.report
    assert (report.accepted, report.rejected, report.deleted) == (4, 0, 0)
    assert imported.index is not None and imported.index_error is None
    assert imported.index.built is not None and imported.index.built.records == 4
    assert imported.index.message.startswith("search index built: 4 records, 3 distinct "
                                             "typings")
    assert stages == {"importing records.csv", "imputing and indexing typings"}
    doc = imported.to_dict()
    assert (doc["import"]["accepted"], doc["index"]["built"]["records"], doc["index_error"]) == (
        4, 4, None)
    return folder / "reg"


def test_a_new_registry_needs_a_frequency_set(tmp_path):
    source = tmp_path / "records.csv"
    source.write_text(RECORDS)
    with pytest.raises(RegistryError, match=r"is new: give --hf"):
        registries.import_records(tmp_path / "reg", source)


def test_stats_and_refresh_of_the_imported_registry(registry):
    stats = registries.registry_stats(registry)
    assert (stats["records"], stats["population"], stats["index_current"]) == (
        {"donor": 3, "cord": 1}, "CAU", True)
    assert stats["index"]["typings"] == 3  # the cord unit's typing is the patient's
    assert stats == cli_json("registry", "stats", "--registry", str(registry))
    assert str(registries.refresh(registry)) == "search index is up to date"


def test_search_ranks_within_the_criteria_and_gives_the_clis_document(registry):
    patient = Patient(PATIENT, weight_kg=18.0, cmv="negative", abo="A", sex="M", age=6)
    outcome = search.search(registry, patient)
    doc = outcome.to_dict()
    assert doc["patient"] == {"typing": PATIENT, "weight_kg": 18.0, "cmv": "negative",
                              "abo": "A", "sex": "M", "age": 6}
    assert (doc["counts"]["records"], doc["counts"]["donors"], doc["counts"]["cords"]) == (
        4, 2, 1)
    assert [(d["rank"], d["id"], d["match_count"], d["mismatches"], d["source"])
            for d in doc["donors"]] == [(1, "D-SAME", "10/10", 0, "REG1"),
                                        (2, "D-A-MM", "9/10", 1, "REG1")]
    assert doc["donors"][0]["p_mismatches"]["0"] == pytest.approx(1.0)
    assert doc["donors"][1]["p_mismatches"]["1"] == pytest.approx(1.0)
    [cord] = doc["cords"]
    assert (cord["id"], cord["tnc_per_kg"], cord["cd34_per_kg"]) == (
        "C-SAME", pytest.approx(90 / 18), pytest.approx(40 / 18))
    assert doc["ranking"]["source"] == "ranking.toml (built in)"
    cli = cli_json("search", "--registry", str(registry), "--patient", PATIENT, "--weight",
                   "18", "--cmv", "negative", "--abo", "A", "--sex", "M", "--age", "6")
    for timed in (doc, cli):
        del timed["seconds"]
    assert doc == cli


def test_one_session_serves_many_patients_and_the_limit_cuts_what_is_shown(registry):
    session = search.open_search(registry)
    wide = search.run_search(session, Patient(PATIENT), Criteria(max_mismatches=4), limit=1)
    assert wide.result.counts["donors"] == 3
    assert [d["id"] for d in wide.to_dict()["donors"]] == ["D-SAME"]
    exact = search.run_search(session, Patient(A_MISMATCH),
                              Criteria(max_mismatches=0, kinds=("donor",)))
    assert [d["id"] for d in exact.to_dict()["donors"]] == ["D-A-MM"]


def test_a_registry_that_is_not_there_is_a_registry_error(tmp_path):
    with pytest.raises(RegistryError, match=r"nowhere"):
        search.search(tmp_path / "nowhere", Patient(PATIENT))


def test_services_print_nothing_and_import_no_interface():
    """The rules of docs/adr/0007: a service is called by the CLI, the API and the pages
    alike, so it neither prints nor depends on any of them."""
    import ast

    import graftmatch.services

    forbidden = ("typer", "rich", "click", "fastapi", "starlette", "graftmatch.interfaces")
    for path in sorted(Path(graftmatch.services.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("print", "input"), f"{path.name} calls {node.func.id}"
