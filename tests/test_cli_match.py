"""``graftmatch match`` as a coordinator or a lab runs it: one pair, then files of typings.

Validation cases read: Given patient ..., donor ..., then the count, category and direction a
search coordinator would expect.
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import threading

import polars as pl
import pytest
from typer.testing import CliRunner

from graftmatch.interfaces.cli import app

runner = CliRunner()

PATIENT = ("A*01:01+A*02:01^B*08:01+B*44:02^C*07:01+C*05:01^DRB1*03:01+DRB1*04:01"
           "^DQB1*02:01+DQB1*03:02")
DONOR_C_HOMOZYGOUS = ("A*01:01+A*02:01^B*08:01+B*44:02^C*07:01+C*07:01^DRB1*03:01+DRB1*04:01"
                      "^DQB1*02:01+DQB1*03:02")


def run(*args: str):
    return runner.invoke(app, ["match", *args])


def test_given_a_donor_homozygous_at_c_then_9_of_10_with_a_gvh_antigen_mismatch():
    result = run("--patient", PATIENT, "--donor", DONOR_C_HOMOZYGOUS, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["match_count"], doc["total_mismatches"], doc["category"]) == ("9/10", 1,
                                                                             "mismatch")
    c = doc["loci"]["C"]
    assert (c["mismatches"], c["gvh_mismatches"], c["hvg_mismatches"],
            c["antigen_mismatches"]) == (1, 1, 0, 1)
    assert [(p["grade"], p["confidence"]) for p in c["positions"]] == [("gdna", "exact"),
                                                                       ("mismatch", "mismatch")]


def test_given_8_of_8_loci_then_the_count_is_over_8():
    doc = json.loads(run("--patient", PATIENT, "--donor", DONOR_C_HOMOZYGOUS, "--loci",
                         "A,B,C,DRB1", "--json").stdout)
    assert doc["match_count"] == "7/8" and list(doc["loci"]) == ["A", "B", "C", "DRB1"]


def test_given_dpb1_then_the_tce_verdict_is_reported():
    doc = json.loads(run("--patient", "DPB1*04:01+DPB1*02:01", "--donor",
                         "DPB1*04:01+DPB1*03:01", "--loci", "DPB1", "--json").stdout)
    assert doc["loci"]["DPB1"]["tce"] == "non-permissive-hvg"


def test_table_output_names_the_count_and_the_level():
    result = run("--patient", PATIENT, "--donor", DONOR_C_HOMOZYGOUS)
    assert result.exit_code == 0
    assert "9/10 at A, B, C, DRB1, DQB1: mismatch" in result.stdout
    assert "P group level" in result.stdout and "C*05:01" in result.stdout


def test_bad_typing_names_the_side_token_and_position():
    result = run("--patient", PATIENT, "--donor", "A*01:01+A*99:99", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["error"].startswith("donor typing: unknown allele")
    assert (doc["token"], doc["position"]) == ("A*99:99", 9)


def test_mode_errors_are_clear():
    assert "either --patient" in run().stderr
    assert "both --patient and --donor" in run("--patient", PATIENT).stderr
    result = run("--patient", PATIENT, "--donor", PATIENT, "--loci", "A,QQ")
    assert result.exit_code == 1 and "unknown locus 'QQ'" in result.stderr


def _files(tmp_path):
    patients = tmp_path / "patients.txt"
    patients.write_text(f"P1%{PATIENT}\nP2%A*03:01+A*03:01^B*07:02+B*07:02^DRB1*15:01\n")
    donors = tmp_path / "donors.csv"
    donors.write_text(f"id,gl\nD1,{DONOR_C_HOMOZYGOUS}\nD2,A*03:01+A*02:01^B*07:02+B*08:01\n"
                      "D3,A2+A1^B8+B44^DR17+DR4\n")
    return patients, donors


def test_batch_all_pairs_to_csv(tmp_path):
    patients, donors = _files(tmp_path)
    out = tmp_path / "out.csv"
    result = run("--patients", str(patients), "--donors", str(donors), "--out", str(out),
                 "--summary", "A,B")
    assert result.exit_code == 0, result.stderr
    table = pl.read_csv(out)
    assert table.height == 6
    first = table.row(0, named=True)
    assert (first["patient"], first["donor"], first["match_count"], first["C_gvh"],
            first["C_hvg"]) == ("P1", "D1", "9/10", 1, 0)
    p2d2 = table.filter((pl.col("patient") == "P2") & (pl.col("donor") == "D2")).row(
        0, named=True)
    # P2 is homozygous A*03:01 and B*07:02: D2 carries one of each plus another allele.
    assert (p2d2["A_mismatches"], p2d2["A_gvh"], p2d2["A_hvg"]) == (1, 0, 1)
    assert p2d2["untyped_loci"] == "C;DRB1;DQB1" and p2d2["match_count"] == "2/4"
    assert "graded 6 pairs" in result.stdout and "total mismatches over A, B" in result.stdout


def test_batch_pairs_file_to_jsonl(tmp_path):
    patients, donors = _files(tmp_path)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("patient,donor\nP1,D3\n")
    out = tmp_path / "out.jsonl"
    result = run("--patients", str(patients), "--donors", str(donors), "--pairs", str(pairs),
                 "--out", str(out))
    assert result.exit_code == 0, result.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert (doc["patient"], doc["donor"], doc["match_count"]) == ("P1", "D3", "6/6")
    assert doc["category"] == "potential"  # serological donor: matches are only potential
    assert doc["loci"]["C"]["mismatches"] is None and doc["untyped_loci"] == "C;DQB1"


def test_batch_errors_name_file_line_and_field(tmp_path):
    patients, donors = _files(tmp_path)
    donors.write_text("id,gl\nD1,A*01:01\nD2,A*01:01+A*01:999\n")
    out = tmp_path / "out.csv"
    result = run("--patients", str(patients), "--donors", str(donors), "--out", str(out))
    assert result.exit_code == 1
    assert "donors.csv line 3, typing of D2" in result.stderr
    assert "'A*01:999' at position 9" in result.stderr
    assert not out.exists()  # nothing half-written

    donors.write_text("id,gl\nD1,A*01:01\nD1,A*02:01\n")
    assert "line 3, id: 'D1' already used on line 2" in run(
        "--patients", str(patients), "--donors", str(donors)).stderr

    donors.write_text("id,gl\nD1,A*01:01\n")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("P1,D1\nP1,D9\n")
    result = run("--patients", str(patients), "--donors", str(donors), "--pairs", str(pairs),
                 "--out", str(out))
    assert result.exit_code == 1 and "pairs.csv line 2, donor: 'D9'" in result.stderr
    assert not out.exists()


def test_a_site_policy_is_checked_and_used(tmp_path):
    from importlib import resources

    text = resources.files("graftmatch.matching").joinpath("policy.toml").read_text()
    bad = tmp_path / "site.toml"
    bad.write_text(text.replace('level = "P"', 'level = "X"'))
    result = run("--patient", PATIENT, "--donor", PATIENT, "--policy", str(bad))
    assert result.exit_code == 1
    assert f"{bad}: 'level' = 'X'; expected one of P, G" in result.stderr
    # A site counting 8/8 by default (NMDP/CIBMTR) instead of 10/10:
    site = tmp_path / "nmdp.toml"
    site.write_text(text.replace('counted_loci = ["A", "B", "C", "DRB1", "DQB1"]',
                                 'counted_loci = ["A", "B", "C", "DRB1"]'))
    doc = json.loads(run("--patient", PATIENT, "--donor", DONOR_C_HOMOZYGOUS, "--policy",
                         str(site), "--json").stdout)
    assert doc["match_count"] == "7/8" and doc["loci"]["DQB1"]["counted"] is False


def test_summary_over_loci_not_graded_is_a_clear_error(tmp_path):
    patients, donors = _files(tmp_path)
    result = run("--patients", str(patients), "--donors", str(donors), "--no-pairs",
                 "--summary", "A,DPB1")
    assert result.exit_code == 1
    assert "summary loci DPB1 are not graded in this batch" in result.stderr


def test_a_typing_file_with_a_corrupt_gzip_stream_is_named(tmp_path):
    data = bytearray(gzip.compress(f"P1%{PATIENT}\n".encode() * 1000))
    data[12:30] = b"\xff" * 18
    path = tmp_path / "patients.txt.gz"
    path.write_bytes(bytes(data))
    result = run("--patients", str(path), "--donors", str(path))
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: cannot read {path}: Error -3 while decompressing "
                                     "data: invalid code lengths set")


def test_given_out_a_device_like_dev_null_then_it_stays_a_device(tmp_path):
    device = tmp_path / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a second /dev/null
    except PermissionError:
        pytest.skip("creating a device needs root")
    patients, donors = _files(tmp_path)
    result = run("--patients", str(patients), "--donors", str(donors), "--out", str(device))
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(device.stat().st_mode) and device.stat().st_rdev == os.makedev(1, 3)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_given_out_a_fifo_then_the_rows_go_through_it(tmp_path):
    fifo = tmp_path / "rows.fifo"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    patients, donors = _files(tmp_path)
    result = run("--patients", str(patients), "--donors", str(donors), "--out", str(fifo))
    reader.join(timeout=30)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    lines = received[0].splitlines()
    assert len(lines) == 7 and lines[0].startswith("patient,donor,match_count,")


def test_given_out_a_folder_then_a_clear_error_before_grading(tmp_path):
    patients, donors = _files(tmp_path)
    result = run("--patients", str(patients), "--donors", str(donors), "--out", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {tmp_path} is a folder: name a file to write"


def test_given_out_a_link_to_a_file_then_the_file_is_replaced_and_the_link_kept(tmp_path):
    patients, donors = _files(tmp_path)
    (tmp_path / "results").mkdir()
    target = tmp_path / "results" / "latest.csv"
    target.write_text("old\n")
    link = tmp_path / "latest.csv"
    link.symlink_to(target)
    result = run("--patients", str(patients), "--donors", str(donors), "--out", str(link))
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and link.resolve() == target
    assert target.read_text().splitlines()[0].startswith("patient,donor,match_count,")


TEN_MISMATCHES = "A*03:01+A*11:01^B*07:02+B*35:01^C*04:01+C*06:02^DRB1*15:01+DRB1*13:01" \
                 "^DQB1*06:02+DQB1*06:03"


@pytest.mark.parametrize(("edit", "message"), [
    (('counted_loci = ["A", "B", "C", "DRB1", "DQB1"]', 'counted_loci = ["a", "b"]'),
     "'counted_loci' = ['a', 'b'] should be a list of distinct loci as the release writes "
     'them, e.g. ["A", "B", "C", "DRB1"]'),
    (('counted_loci = ["A", "B", "C", "DRB1", "DQB1"]', 'counted_loci = ["A", "QQ"]'),
     "'counted_loci' names 'QQ', not a locus of IPD-IMGT/HLA 3.58.0"),
    (('permissive_mismatches = [["C*03:03", "C*03:04"]]',
      'permissive_mismatches = [["Q*03:03", "Q*03:04"]]'),
     "'permissive_mismatches' names 'Q', not a locus of IPD-IMGT/HLA 3.58.0"),
    (('level = "P"', 'level = "P"\ncounted = ["A"]'),
     "unknown key 'counted'; known: antigen_mismatch_level, counted_loci, dpb1_tce, drb345, "
     "graded_loci, level, mixed_null_lists, permissive_mismatches"),
    (("use_inferred = true", "use_inferred = true\nuse_infered = false"),
     "[dpb1_tce]: unknown key 'use_infered'; known: assignment, group_2a, use_inferred"),
    (("read_absence_from_drb1 = true", "read_absence_from_drb1 = true\nabsent = false"),
     "[drb345]: unknown key 'absent'; known: carriers, read_absence_from_drb1"),
])
def test_a_site_policy_counting_loci_a_and_b_is_refused_not_read_as_0_of_0(tmp_path, edit,
                                                                             message):
    from importlib import resources

    text = resources.files("graftmatch.matching").joinpath("policy.toml").read_text()
    assert edit[0] in text
    site = tmp_path / "site.toml"
    site.write_text(text.replace(edit[0], edit[1], 1))
    result = run("--patient", PATIENT, "--donor", TEN_MISMATCHES, "--policy", str(site))
    assert result.exit_code == 1
    where = f"{site} " if message.startswith("[") else f"{site}: "
    assert result.stderr.strip() == f"error: {where}{message}"


DRB345_ALTERNATIVES = "A*01:01+A*02:01^DRB3*01:01+DRB4*01:01|DRB4*01:01+DRB5*01:01"


def test_given_drb345_alternatives_then_one_pair_is_graded_not_a_key_error():
    doc = json.loads(run("--patient", DRB345_ALTERNATIVES, "--donor", DRB345_ALTERNATIVES,
                         "--json").stdout)
    assert doc["label"] == "2/2 at A; untyped B, C, DRB1, DQB1: potential"
    doc = json.loads(run("--patient", DRB345_ALTERNATIVES, "--donor", DRB345_ALTERNATIVES,
                         "--loci", "A,DRB3,DRB4,DRB5", "--json").stdout)
    assert (doc["match_count"], doc["total_mismatches"], doc["category"]) == ("8/8", 0,
                                                                             "potential")
    assert {locus: r["confidence"] for locus, r in doc["loci"].items()} == {
        "A": "exact", "DRB3": "potential", "DRB4": "exact", "DRB5": "potential"}


def test_given_drb345_alternatives_in_files_then_the_batch_grades_them_as_one_pair_does(
        tmp_path):
    people = tmp_path / "people.txt"
    people.write_text(f"P1%{DRB345_ALTERNATIVES}\nP2%A*01:01+A*02:01^DRB4*01:01+DRB5*01:01\n")
    out = tmp_path / "out.csv"
    result = run("--patients", str(people), "--donors", str(people), "--loci",
                 "A,DRB3,DRB4,DRB5", "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = pl.read_csv(out).select("patient", "donor", "match_count", "total_mismatches",
                                   "untyped_loci").rows()
    assert rows == [("P1", "P1", "8/8", 0, ""), ("P1", "P2", "6/6", 0, "DRB3"),
                    ("P2", "P1", "6/6", 0, "DRB3"), ("P2", "P2", "6/6", 0, "DRB3")]
    default = run("--patients", str(people), "--donors", str(people))
    assert default.exit_code == 0, default.output
    assert default.stdout.splitlines()[1].startswith("P1,P1,2/2,0,0,0,0,0,potential,potential,")
