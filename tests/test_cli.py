"""The graftmatch command line, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from graftmatch.interfaces.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_reduce_prints_a_gl_string():
    result = run("hla", "reduce", "A*01:01:01:01+A*24:02:01:01", "--to", "serology")
    assert result.exit_code == 0
    assert result.stdout.strip() == "A1+A9/A24"


def test_reduce_json():
    result = run("hla", "reduce", "B*44:02:01:01", "--to", "P", "--json")
    doc = json.loads(result.stdout)
    assert doc["reduced"] == "B*44:02P" and doc["release"] == "3.58.0"


def test_validate_exit_codes_and_positions():
    assert run("hla", "validate", "A*01:01+A*02:01").exit_code == 0
    bad = run("hla", "validate", "A*01:01+A*01:999", "--json")
    assert bad.exit_code == 1
    assert json.loads(bad.stdout) == {"valid": False, "error": "unknown allele in IPD-IMGT/HLA "
                                      "3.58.0", "token": "A*01:999", "position": 9,
                                      "typing": "A*01:01+A*01:999"}


def test_mac_without_a_list_is_a_clear_error_then_import_mac_enables_it(tmp_path):
    before = run("hla", "validate", "A*01:AB")
    assert before.exit_code == 1 and "import-mac" in before.stderr
    mac = tmp_path / "numer.v3.txt"
    mac.write_text('"LAST UPDATED: 09/30/20"\nCODE\tSUBTYPE\n\nAB\t01/02\n')
    assert run("hla", "import-mac", str(mac)).exit_code == 0
    assert run("hla", "validate", "A*01:AB").exit_code == 0


def test_info_reports_release_counts_and_citation():
    doc = json.loads(run("hla", "info", "--json").stdout)
    assert doc["release"] == "3.58.0"
    assert doc["alleles"] == 41433 and doc["alleles_per_locus"]["A"] == 8472
    assert "Nucleic Acids Research" in doc["citation"]


def test_console_script_runs_the_demo():
    result = subprocess.run([sys.executable, "-m", "graftmatch", "demo", "--donors", "3000",
                             "--cords", "300"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "A*01:01P+A*02:01P^B*08:01P+B*44:02P" in result.stdout
    assert "did you mean A*01:04N?" in result.stdout
    assert "SYNTHETIC registry of 3,000 donors and 300 cord units" in result.stdout
    assert "SYNTHETIC-" in result.stdout and "cord blood units" in result.stdout
