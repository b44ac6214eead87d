"""The registry and the donor search as a search coordinator relies on them: complete results
(checked against grading every donor by brute force), probabilities equal to the pairwise
prediction, atomic and idempotent imports (a real kill), updates and deletions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from graftmatch.errors import GraftmatchError
from graftmatch.matching.grader import Matcher
from graftmatch.prediction.frequencies import read_frequency_set
from graftmatch.prediction.haplotypes import HaplotypeTable
from graftmatch.prediction.imputation import Imputer
from graftmatch.prediction.match_probability import MatchPredictor
from graftmatch.prediction.settings import default_settings
from graftmatch.registry.index import build_index
from graftmatch.registry.store import Registry, RegistryError
from graftmatch.search.engine import Criteria, Patient, Searcher
from tests.conftest import REPO, read_wmda
from tests.test_frequencies import CAU

HEADER = "type,id,registry,bank,hla,age,sex,abo,cmv,status,tnc_1e7,cd34_1e5\n"


def _csv(path: Path, donors: list[tuple[str, str]], *, cords_every: int = 7) -> Path:
    lines = [HEADER]
    for i, (ident, gl) in enumerate(donors):
        if i % cords_every == 0:
            lines.append(f'cord,C-{ident},,BANK1,"{gl}",,,O+,,available,{60 + i % 150},'
                         f'{1 + i % 9}\n')
        else:
            status = "reserved" if i % 50 == 1 else "available"
            lines.append(f'donor,{ident},REG{1 + i % 2},,"{gl}",{18 + i % 40},'
                         f'{"FM"[i % 2]},A+,{"pos" if i % 3 else "neg"},{status},,\n')
    path.write_text("".join(lines))
    return path


@pytest.fixture(scope="module")
def table(index):
    from graftmatch.typing.parser import TypingReader

    reader = TypingReader(index)
    population, _ = read_frequency_set(CAU, reader).select("CAU")
    return HaplotypeTable.compile(population, reader)


@pytest.fixture(scope="module")
def registry(tmp_path_factory, index, table):
    from graftmatch.typing.parser import TypingReader

    reader = TypingReader(index)
    folder = tmp_path_factory.mktemp("registry")
    source = _csv(folder.parent / "records.csv", read_wmda("don.gl.txt.gz")[:600])
    reg = Registry.create(folder, release=index.release, frequency_set=str(CAU),
                          population="CAU")
    report = reg.import_file(source, reader)
    assert (report.accepted, report.rejected) == (600, 0)
    build_index(reg, reader, table, default_settings())
    return reg


def _brute_force(reader, patient: str, donors, loci, limit, per_locus=None) -> set[str]:
    matcher = Matcher(reader.index)
    typing = reader.parse(patient)
    found = set()
    for ident, gl in donors:
        result = matcher.match(typing, reader.parse(gl), loci)
        if result.total_mismatches <= limit and all(
                (r.mismatches or 0) <= (per_locus or {}).get(r.locus, 2) for r in result.loci):
            found.add(ident)
    return found


@pytest.mark.parametrize("max_mm", [0, 1, 2, 3])
def test_search_finds_exactly_the_donors_brute_force_grading_finds(registry, reader, table,
                                                                    max_mm):
    searcher = Searcher(registry, reader, table)
    records = read_wmda("don.gl.txt.gz")[:600]
    donors = [(ident, gl) for i, (ident, gl) in enumerate(records)
              if i % 7 and i % 50 != 1]  # adult donors, available
    cords = [(f"C-{ident}", gl) for i, (ident, gl) in enumerate(records) if i % 7 == 0]
    for patient_id, patient in read_wmda("pat.gl.txt.gz")[:6]:
        result = searcher.search(Patient(patient), Criteria(max_mismatches=max_mm))
        searcher.attach_records([*result.donors, *result.cords])
        found = {c.record["ext_id"] for c in result.donors}
        assert found == _brute_force(reader, patient, donors, Criteria.loci, max_mm), patient_id
        expected_cords = _brute_force(reader, patient, cords, ("A", "B", "C", "DRB1"), 2)
        # Cords below the dose floors are dropped by rule (no weight given: none are).
        assert {c.record["ext_id"] for c in result.cords} == expected_cords, patient_id


def test_alternative_genotypes_on_either_side_never_hide_a_donor(tmp_path, index, reader,
                                                                  table):
    """Typings listing alternative genotypes ('|') are screened by every reading."""
    records = read_wmda("don.gl.txt.gz")[:200]
    alt_donor = ("ALT1", "A*01:01+A*02:01|A*03:01+A*11:01^B*08:01+B*44:02"
                         "^DRB1*03:01+DRB1*04:01")
    reg = Registry.create(tmp_path / "reg", release=index.release, frequency_set=str(CAU),
                          population="CAU")
    reg.import_file(_csv(tmp_path / "r.csv", [*records, alt_donor], cords_every=10**6),
                    reader)
    build_index(reg, reader, table, default_settings())
    searcher = Searcher(reg, reader, table)
    donors = [(ident, gl) for i, (ident, gl) in enumerate([*records, alt_donor])
              if i % 10**6 and i % 50 != 1]
    for patient in ("A*03:01+A*11:01^B*08:01+B*44:02^DRB1*03:01+DRB1*04:01",
                    "A*24:02+A*24:02|A*03:01+A*11:01^B*08:01+B*44:02^DRB1*03:01+DRB1*04:01",
                    read_wmda("pat.gl.txt.gz")[0][1].replace(
                        "^C*", "|A*03:01+A*11:01^C*", 1)):
        for max_mm, per_locus in ((0, {}), (2, {}), (2, {"A": 0})):
            result = searcher.search(Patient(patient), Criteria(
                loci=("A", "B", "DRB1"), max_mismatches=max_mm, per_locus=per_locus,
                kinds=("donor",)))
            searcher.attach_records(result.donors)
            assert {c.record["ext_id"] for c in result.donors} == _brute_force(
                reader, patient, donors, ("A", "B", "DRB1"), max_mm, per_locus), (
                patient, max_mm, per_locus)


def test_search_refuses_unknown_criteria_by_name(registry, reader, table):
    searcher = Searcher(registry, reader, table)
    for patient, criteria, message in (
            (Patient("A*01:01+A*02:01", cmv="maybe"), Criteria(), "patient CMV 'maybe'"),
            (Patient("A*01:01+A*02:01"), Criteria(kinds=("sibling",)), "donor type 'sibling'"),
            (Patient("A*01:01+A*02:01", weight_kg=-3), Criteria(), "weight -3"),
            (Patient("A*01:01+A*02:01"), Criteria(per_locus={"DRB1": 3}), "DRB1=3"),
            (Patient("A*01:01+A*02:01"), Criteria(per_locus={"DRB9": 0}), "'DRB9'"),
            (Patient("A*01:01+A*02:01"), Criteria(sources=("REG9",)), "'REG9'")):
        with pytest.raises(GraftmatchError, match=message):
            searcher.search(patient, criteria)


def test_probabilities_equal_the_pairwise_prediction(registry, reader, table):
    searcher = Searcher(registry, reader, table)
    patient = read_wmda("pat.gl.txt.gz")[1][1]
    result = searcher.search(Patient(patient), Criteria(max_mismatches=3, kinds=("donor",)))
    searcher.attach_records(result.donors[:10])
    imputer = Imputer(table)
    predictor = MatchPredictor(Matcher(reader.index))
    p = imputer.impute(reader.parse(patient))
    for c in result.donors[:10]:
        expected = predictor.predict(p, imputer.impute(reader.parse(c.record["gl"])))
        # The index keeps each typing's 500 likeliest genotypes (float32) and reports the rest
        # as truncated mass: equal up to that mass.
        assert c.p_mismatches == pytest.approx(list(expected.p_mismatches),
                                               abs=c.truncated_mass + 1e-5)
        assert sum(c.p_mismatches) == pytest.approx(1 - c.truncated_mass, abs=1e-4)


def test_ranking_puts_fewer_mismatches_then_younger_donors_first(registry, reader, table):
    searcher = Searcher(registry, reader, table)
    result = searcher.search(Patient(read_wmda("pat.gl.txt.gz")[2][1]),
                             Criteria(max_mismatches=3))
    searcher.attach_records(result.donors)
    bands = [0 if c.age < 33 else 1 if c.age < 43 else 2 if c.age < 53 else 3
             for c in result.donors]
    keys = [(c.core_mismatches, -int(c.p_core_match / 0.1 + 1e-9), c.core_mismatches
             - sum(locus.get("permissive_mismatches") or 0 for locus in c.loci.values()), band)
            for c, band in zip(result.donors, bands, strict=True)]
    assert keys == sorted(keys)
    assert [c.rank for c in result.donors] == list(range(1, len(result.donors) + 1))


def test_import_twice_changes_nothing_and_updates_apply(tmp_path, index, reader, table):
    reg = Registry.create(tmp_path / "reg", release=index.release, frequency_set=str(CAU),
                          population="CAU")
    donors = read_wmda("don.gl.txt.gz")[:30]
    source = _csv(tmp_path / "a.csv", donors)
    first = reg.import_file(source, reader)
    again = reg.import_file(source, reader)
    assert again.already_imported and again.data_version == first.data_version
    update = tmp_path / "b.csv"
    update.write_text("type,action,id,registry,hla,age\n"
                      f'donor,upsert,{donors[1][0]},REG2,"{donors[1][1]}",55\n'
                      f"donor,delete,{donors[2][0]},REG1,,\n")
    report = reg.import_file(update, reader)
    assert (report.accepted, report.deleted) == (1, 1)
    counts = reg.count()
    assert counts == {"donor": 30 - 5 - 1, "cord": 5}  # 5 cords (every 7th), one deleted
    rows = [r for r in reg.iter_records() if r["ext_id"] == donors[1][0]]
    assert len(rows) == 1 and rows[0]["age"] == 55


def test_a_stale_index_is_refused_with_the_fix(tmp_path, index, reader, table):
    reg = Registry.create(tmp_path / "reg", release=index.release, frequency_set=str(CAU),
                          population="CAU")
    reg.import_file(_csv(tmp_path / "a.csv", read_wmda("don.gl.txt.gz")[:20]), reader)
    with pytest.raises(RegistryError, match="registry refresh"):
        Searcher(reg, reader, table)


IMPORT_SCRIPT = """
import sys
from pathlib import Path
from graftmatch.nomenclature.release import load_index
from graftmatch.registry.store import Registry
from graftmatch.typing.parser import TypingReader
reg = Registry(Path(sys.argv[1]))
said = []
def progress(n):
    if not said:  # the first 1,000 records are in the open transaction
        said.append(n)
        print("importing", flush=True)
reg.import_file(Path(sys.argv[2]), TypingReader(load_index()), progress)
print("finished", flush=True)
"""


def test_a_killed_import_leaves_the_registry_as_it_was(tmp_path, index, reader):
    reg = Registry.create(tmp_path / "reg", release=index.release, frequency_set=str(CAU),
                          population="CAU")
    reg.import_file(_csv(tmp_path / "small.csv", read_wmda("don.gl.txt.gz")[:10]), reader)
    before = (reg.count(), reg.meta()["data_version"])
    big = _csv(tmp_path / "big.csv", [(f"X{i}", gl) for i, (_, gl) in
                                      enumerate(read_wmda("don.gl.txt.gz") * 4)])
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", IMPORT_SCRIPT, str(reg.path), str(big)],
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "importing"
    proc.send_signal(signal.SIGKILL)  # 1,000 of 40,000 records into the transaction
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert (reg.count(), reg.meta()["data_version"]) == before
    report = reg.import_file(big, reader)  # running it again finishes the job
    assert report.accepted == 40_000 and not report.already_imported
    assert reg.count()["donor"] + reg.count()["cord"] == 10 + 40_000


def test_ranking_follows_the_guideline_order_for_donors_and_cord_dose(tmp_path, index, reader,
                                                                      table):
    """Same HLA, different donors: the age band, then CMV, ABO and sex decide (ranking.toml);
    cords go by HLA-and-dose group, then target dose, and units below the single-unit floor
    come only in double-unit pairs, offered when no single unit reaches the target."""
    same = ("A*01:01+A*02:01^B*08:01+B*44:02^C*07:01+C*05:01^DRB1*03:01+DRB1*04:01"
            "^DQB1*02:01+DQB1*03:01")
    one_mm = same.replace("A*02:01", "A*03:01")
    rows = [  # id, hla, age, sex, abo+rh, cmv / cords: id, hla, tnc_1e7
        ("donor", "OLD", same, 50, "M", "O+", "neg", ""),
        ("donor", "CMVPOS", same, 25, "M", "O+", "pos", ""),
        ("donor", "FEMALE", same, 25, "F", "O+", "neg", ""),
        ("donor", "ABO-B", same, 25, "M", "B+", "neg", ""),
        ("donor", "BEST", same, 25, "M", "O+", "neg", ""),
        ("donor", "ONE-MM", one_mm, 20, "M", "O+", "neg", ""),
        ("cord", "C60", same, "", "", "", "", 60),
        ("cord", "C120", same, "", "", "", "", 120),
        ("cord", "C20", same, "", "", "", "", 20),
        ("cord", "C40", same, "", "", "", "", 40),
        ("cord", "C200-1MM", one_mm, "", "", "", "", 200),
    ]
    lines = [HEADER] + [
        f'{kind},{ident},{"REG1" if kind == "donor" else ""},{"BANK1" if kind == "cord" else ""}'
        f',"{gl}",{age},{sex},{abo},{cmv},available,{tnc},\n'
        for kind, ident, gl, age, sex, abo, cmv, tnc in rows]
    (tmp_path / "r.csv").write_text("".join(lines))
    reg = Registry.create(tmp_path / "reg", release=index.release, frequency_set=str(CAU),
                          population="CAU")
    reg.import_file(tmp_path / "r.csv", reader)
    build_index(reg, reader, table, default_settings())
    searcher = Searcher(reg, reader, table)

    def ids(candidates):
        searcher.attach_records(candidates)
        return [c.record["ext_id"] for c in candidates]

    result = searcher.search(Patient(same, weight_kg=20, cmv="negative", abo="A", sex="M"),
                             Criteria(max_mismatches=1))
    assert ids(result.donors) == ["BEST", "FEMALE", "ABO-B", "CMVPOS", "OLD", "ONE-MM"]
    assert [c.rank for c in result.donors] == [1, 2, 3, 4, 5, 6]
    # 20 kg: TNC/kg 3.0, 6.0 (group 1), 1.0 (below 1.5: dropped), 2.0 (below the single floor
    # 2.5: pairs only), and 10.0 with a mismatch (group 2).
    assert ids(result.cords) == ["C120", "C60", "C200-1MM"]
    assert [c.tnc_per_kg for c in result.cords] == [6.0, 3.0, 10.0]
    assert [c.dose_group for c in result.cords] == [1, 1, 2]
    assert result.double_cords == []
    # 50 kg: 1.2, 0.4 and 0.8 are dropped, 2.4 is pairs only; no single unit reaches 5.0, so
    # the pair is offered.
    result = searcher.search(Patient(same, weight_kg=50), Criteria(max_mismatches=1))
    assert ids(result.cords) == ["C200-1MM"]
    assert [(ids([a])[0], ids([b])[0]) for a, b in result.double_cords] == [("C120",
                                                                             "C200-1MM")]


def test_cli_search_honours_per_locus_limits_and_registries(registry):
    """``graftmatch search`` as a coordinator runs it: a per-locus limit and a registry
    filter narrow the list; a malformed limit or an unknown registry is refused by name."""
    from typer.testing import CliRunner

    from graftmatch.interfaces.cli import app

    patient = read_wmda("pat.gl.txt.gz")[0][1]

    def search(*extra: str):
        return CliRunner().invoke(app, ["search", "--registry", str(registry.path), "--patient",
                                        patient, "--max-mismatches", "3", "--limit", "1000",
                                        "--kinds", "donor", "--json", *extra])

    def drb1(d):  # an untyped DRB1 is a potential match
        return d["loci"]["DRB1"].get("mismatches", 0)

    everyone = json.loads(search().stdout)["donors"]
    assert {drb1(d) for d in everyone} >= {0, 1}
    strict = json.loads(search("--per-locus", "DRB1=0").stdout)["donors"]
    assert strict and all(drb1(d) == 0 for d in strict)
    assert {d["id"] for d in strict} == {d["id"] for d in everyone if drb1(d) == 0}
    aged = json.loads(search("--age", "6", "--weight", "18").stdout)["patient"]
    assert (aged["typing"], aged["age"], aged["weight_kg"]) == (patient, 6, 18)
    reg2 = json.loads(search("--registries", "REG2").stdout)["donors"]
    assert reg2 and {d["source"] for d in reg2} == {"REG2"}
    assert {d["id"] for d in reg2} == {d["id"] for d in everyone if d["source"] == "REG2"}
    bad = search("--per-locus", "DRB1=zero")
    assert bad.exit_code != 0 and "--per-locus entry 1 'DRB1=zero'" in bad.stdout
    unknown = search("--registries", "NOPE")
    assert unknown.exit_code != 0 and "registry or bank 'NOPE'" in unknown.stdout


def test_alleles_the_frequency_set_lacks_are_indexed_by_name(tmp_path, index, reader, table):
    """A donor typed exactly with an allele the set does not list (A*80:01) keeps it in the
    index, and a patient with the same typing sees a certain 10/10."""
    rare = ("A*01:01+A*80:01^B*08:01+B*44:02^C*07:01+C*05:01^DRB1*03:01+DRB1*04:01"
            "^DQB1*02:01+DQB1*03:01")
    assert "A*80:01" not in table.vocab[table.loci.index("A")].names
    lines = [HEADER, f'donor,RARE,REG1,,"{rare}",30,M,O+,neg,available,,\n',
             f'donor,COMMON,REG1,,"{rare.replace("A*80:01", "A*02:01")}",30,M,O+,neg,'
             'available,,\n']
    (tmp_path / "r.csv").write_text("".join(lines))
    reg = Registry.create(tmp_path / "reg", release=index.release, frequency_set=str(CAU),
                          population="CAU")
    reg.import_file(tmp_path / "r.csv", reader)
    build_index(reg, reader, table, default_settings(), workers=2)
    searcher = Searcher(reg, reader, table)
    assert "A*01:01+A*80:01" in searcher.index.info["locus_genotypes"][table.loci.index("A")]
    result = searcher.search(Patient(rare), Criteria(max_mismatches=0, kinds=("donor",)))
    searcher.attach_records(result.donors)
    assert [(c.record["ext_id"], c.p_mismatches[0]) for c in result.donors] == [("RARE", 1.0)]



LOW_RES = "A*01:01+A*24:02^B*08:01+B*07:02^DRB1*03:01+DRB1*15:01"  # C, DQB1 imputed
EXACT = ("A*01:01+A*24:02^B*08:01+B*07:02^C*07:01+C*07:02^DRB1*03:01+DRB1*15:01"
         "^DQB1*02:01+DQB1*06:02")


def _cli(*args: str):
    from typer.testing import CliRunner

    from graftmatch.interfaces.cli import app

    return CliRunner().invoke(app, list(args))


def _population_registry(tmp_path, registry_population: str) -> str:
    """Donors of one HLA stating AFA, CAU or no population (and an exactly typed AFA donor),
    in a registry imputed with the CAU set, which has no AFA."""
    tmp_path.mkdir(exist_ok=True)
    rows = [("AFA-1", LOW_RES, "AFA"), ("CAU-1", LOW_RES, "CAU"), ("UNSTATED", LOW_RES, ""),
            ("AFA-EXACT", EXACT, "AFA")]
    source = tmp_path / "r.csv"
    source.write_text("type,id,registry,hla,age,population,status\n" + "".join(
        f'donor,{ident},REG1,"{gl}",30,{population},available\n'
        for ident, gl, population in rows))
    folder = str(tmp_path / "reg")
    result = _cli("registry", "import", str(source), "--registry", folder, "--hf", str(CAU),
                  "--population", registry_population)
    assert result.exit_code == 0, result.output
    return folder


def _search(folder: str, *extra: str):
    return _cli("search", "--registry", folder, "--patient", LOW_RES, "--kinds", "donor",
                *extra)


def test_afa_donors_imputed_with_the_registrys_cau_frequencies_are_population_substituted(
        tmp_path):
    folder = _population_registry(tmp_path, "CAU")
    doc = json.loads(_search(folder, "--json").stdout)
    donors = {d["id"]: d for d in doc["donors"]}
    assert {i: (d["imputation"], d["imputation_confidence"]) for i, d in donors.items()} == {
        "AFA-1": ("population-substituted", "lowered"), "CAU-1": ("ok", "normal"),
        "UNSTATED": ("ok", "normal"),  # stands for the registry's CAU
        # Exact at every locus: no frequencies were read, so nothing was substituted.
        "AFA-EXACT": ("ok", "normal")}
    assert "imputation population-substituted (lowered confidence): stated population AFA, " \
           "imputed with population CAU" in donors["AFA-1"]["reasons"]
    assert not any("imputation" in r for r in donors["CAU-1"]["reasons"])
    # The same typing, the same probabilities: only the confidence differs.
    assert donors["AFA-1"]["p_mismatches"] == donors["CAU-1"]["p_mismatches"]
    assert (doc["patient_imputation"]["status"], doc["patient_imputation"]["confidence"]) == (
        "ok", "normal")
    table = " ".join(_search(folder).stdout.split())
    assert "REG1:AFA-1: imputation population-substituted (lowered confidence): stated " \
           "population AFA, imputed with population CAU" in table


def test_a_patient_searched_as_afa_in_a_cau_only_set_is_population_substituted(tmp_path):
    folder = _population_registry(tmp_path, "CAU")
    patient = json.loads(_search(folder, "--population", "AFA", "--json").stdout)[
        "patient_imputation"]
    assert (patient["status"], patient["confidence"]) == ("population-substituted", "lowered")
    assert patient["reasons"] == ["frequencies of another population than asked for: "
                                  "population 'AFA' is not in the set; using the set's only "
                                  "population 'CAU'"]
    table = _search(folder, "--population", "AFA").stdout
    assert "patient imputation population-substituted (lowered confidence)" in table


def test_records_without_a_population_stand_for_the_registrys_own(tmp_path):
    """A registry declared AFA, imputed with the CAU set (its only population): records
    stating nothing are taken as AFA donors imputed with CAU frequencies too; with neither
    the record's nor the registry's population known nothing is flagged."""
    donors = {d["id"]: d["imputation"] for d in json.loads(
        _search(_population_registry(tmp_path / "afa", "AFA"), "--json").stdout)["donors"]}
    assert donors == {"AFA-1": "population-substituted", "UNSTATED": "population-substituted",
                      "CAU-1": "ok", "AFA-EXACT": "ok"}
    unknown = _population_registry(tmp_path / "unknown", "")
    donors = {d["id"]: d["imputation"] for d in json.loads(
        _search(unknown, "--json").stdout)["donors"]}
    assert donors["UNSTATED"] == "ok" and donors["AFA-1"] == "population-substituted"
    stats = json.loads(_cli("registry", "stats", "--registry", unknown, "--json").stdout)
    assert stats["index"]["population_substituted_records"] == 2  # AFA-1 and AFA-EXACT


def test_a_donor_with_a_null_the_set_lacks_keeps_c_linked_to_b_in_the_index(tmp_path, index,
                                                                            reader, table):
    """The imputer adds A*24:09N to the set's haplotypes (its own A vocabulary): the index
    recodes it by name, and the search gives the pairwise prediction's P(C match)."""
    null = LOW_RES.replace("A*24:02", "A*24:09N")
    (tmp_path / "r.csv").write_text(HEADER + f'donor,NULL,REG1,,"{null}",30,M,O+,neg,'
                                             'available,,\n')
    reg = Registry.create(tmp_path / "reg", release=index.release, frequency_set=str(CAU),
                          population="CAU")
    reg.import_file(tmp_path / "r.csv", reader)
    build_index(reg, reader, table, default_settings(), workers=2)
    searcher = Searcher(reg, reader, table)
    result = searcher.search(Patient(LOW_RES), Criteria(max_mismatches=1, kinds=("donor",)))
    searcher.attach_records(result.donors)
    [donor] = result.donors
    imputer = Imputer(table)
    expected = MatchPredictor(Matcher(reader.index)).predict(
        imputer.impute(reader.parse(LOW_RES)), imputer.impute(reader.parse(null)))
    assert donor.imputation == "unrepresented"
    c_match = next(lp.p[0] for lp in expected.per_locus if lp.locus == "C")
    assert donor.p_locus["C"][0] == pytest.approx(c_match, abs=donor.truncated_mass + 1e-5)
    assert c_match > 0.98  # 0.990; 0.05 when A~C~B went locus by locus


def test_an_index_of_an_older_layout_is_refused_and_refresh_rebuilds_it(tmp_path):
    folder = _population_registry(tmp_path, "CAU")
    reg = Registry(Path(folder))
    info_path = Path(folder) / reg.meta()["index_folder"] / "index.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "layout": 1}))  # as an older graftmatch wrote it
    reg.set_meta(index_layout="1")
    refused = _search(folder, "--json")
    assert refused.exit_code != 0 and "run 'graftmatch registry refresh'" in refused.stdout
    assert "search index built" in _cli("registry", "refresh", "--registry", folder).stdout
    assert _search(folder, "--json").exit_code == 0


#: Donors alike at A, B, DRB1 groups but differing in DRB4 (DR53) and DRB5 (DR51) presence.
DR_DONORS = [
    ("DR53", "A*01:01+A*02:01^B*08:01+B*44:02^DRB1*04:01+DRB1*03:01^DRB4*01:01"),
    ("NO-DR53", "A*01:01+A*02:01^B*08:01+B*44:02^DRB1*03:01+DRB1*15:01^DRB5*01:01"),
    ("DR53-DR51", "A*01:01+A*02:01^B*08:01+B*44:02^DRB1*04:01+DRB1*15:01^DRB4*01:01"
                  "^DRB5*01:01"),
    ("DR53-UNTYPED", "A*01:01+A*02:01^B*08:01+B*44:02^DRB1*04:01+DRB1*03:01"),
    ("DR53-TWICE", "A*01:01+A*02:01^B*08:01+B*44:02^DRB1*04:01+DRB1*07:01"
                   "^DRB4*01:01+DRB4*01:03:01:02N"),
    ("NO-DRB345", "A*01:01+A*02:01^B*08:01+B*44:02^DRB1*01:01+DRB1*08:01"),
    ("ALTERNATIVES", "A*01:01+A*02:01^B*08:01+B*44:02^DRB1*03:01+DRB1*04:01"
                     "^DRB3*01:01+DRB4*01:01|DRB3*01:01+DRB3*02:02"),
]


def test_patient_with_dr53_sees_donors_by_drb4_and_drb5_presence(tmp_path, index, reader,
                                                                 table):
    """Every candidate is graded at DRB3/4/5 as the pair grader grades it (counted only when
    asked for), and a search counting DRB4, DRB5 finds exactly what grading every donor finds."""
    records = [*read_wmda("don.gl.txt.gz")[:90], *DR_DONORS]  # none of DR_DONORS reserved
    reg = Registry.create(tmp_path / "reg", release=index.release, frequency_set=str(CAU),
                          population="CAU")
    reg.import_file(_csv(tmp_path / "r.csv", records, cords_every=10**6), reader)
    build_index(reg, reader, table, default_settings())
    searcher = Searcher(reg, reader, table)
    assert searcher.loci[-3:] == ("DRB3", "DRB4", "DRB5")
    donors = [(ident, gl) for i, (ident, gl) in enumerate(records) if i % 50 != 1]
    matcher = Matcher(reader.index)
    for patient in ("A*01:01+A*02:01^B*08:01+B*44:02^DRB1*04:01+DRB1*03:01^DRB4*01:01",
                    "A*01:01+A*02:01^B*08:01+B*44:02^DRB1*04:01+DRB1*03:01^DRB4*01:01"
                    "|DRB4*01:01+DRB4*01:02"):
        loci = ("A", "B", "DRB1", "DRB4", "DRB5")
        for max_mm, per_locus in ((0, {}), (1, {}), (2, {}), (2, {"DRB4": 0})):
            result = searcher.search(Patient(patient), Criteria(
                loci=loci, max_mismatches=max_mm, per_locus=per_locus, kinds=("donor",)))
            searcher.attach_records(result.donors)
            assert {c.record["ext_id"] for c in result.donors} == _brute_force(
                reader, patient, donors, loci, max_mm, per_locus), (patient, max_mm, per_locus)
        result = searcher.search(Patient(patient), Criteria(max_mismatches=4,
                                                            kinds=("donor",)))
        searcher.attach_records(result.donors)
        ours = {c.record["ext_id"]: c for c in result.donors}
        assert {ident for ident, _ in DR_DONORS} <= set(ours)
        for ident, gl in DR_DONORS:
            c = ours[ident]
            expected = matcher.match(reader.parse(patient), reader.parse(gl),
                                     ["DRB3", "DRB4", "DRB5"])
            for r in expected.loci:
                # As in `graftmatch match`: a locus graded but not counted is listed when
                # both sides carry it.
                got = c.loci.get(r.locus, {"typed": False})
                assert got["typed"] == r.typed, (ident, r.locus)
                if r.typed:
                    assert (got["mismatches"], got["gvh_mismatches"], got["hvg_mismatches"],
                            got["confidence"]) == (r.mismatches, r.gvh_mismatches,
                                                   r.hvg_mismatches, r.confidence.label)
        # By hand, for the plainly typed patient: the donor lacking DR53 is a GvH mismatch at
        # DRB4 and an HvG one at DRB5; DRB4 untyped on the donor is not graded.
        if "|" not in patient:
            no_dr53 = ours["NO-DR53"].loci
            assert (no_dr53["DRB4"]["gvh_mismatches"], no_dr53["DRB4"]["hvg_mismatches"],
                    no_dr53["DRB5"]["hvg_mismatches"]) == (1, 0, 1)
            assert "DRB4" not in ours["DR53-UNTYPED"].loci
            assert ours["DR53"].loci["DRB4"]["mismatches"] == 0
