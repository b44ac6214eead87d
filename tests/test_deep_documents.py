"""A JSON or TOML document nested 200,000 levels deep, as a hostile or broken exporter may send
one, is refused with an error naming the file, wherever graftmatch reads JSON or TOML."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from graftmatch.errors import GraftmatchError
from graftmatch.interfaces.cli import app
from graftmatch.registry.files import Rejected, read_records
from graftmatch.search.ranking import RankingError, load_ranking

runner = CliRunner()
DEEP = "[" * 200_000


def test_given_a_registry_json_lines_record_nested_200000_deep_then_that_line_is_rejected(
        tmp_path):
    path = tmp_path / "reg.jsonl"
    path.write_text('{"id": "D1", "hla": "A*01:01+A*02:01"}\n' + DEEP + "\n")
    results = list(read_records(path))
    assert isinstance(results[1], Rejected)
    assert (results[1].line, results[1].error.field) == (2, "record")
    assert "nested too deeply" in str(results[1].error)


def test_given_a_registry_json_array_nested_200000_deep_then_the_file_is_refused(tmp_path):
    path = tmp_path / "reg.json"
    path.write_text(DEEP)
    with pytest.raises(GraftmatchError, match=r"reg\.json.*is not JSON \(nested too deeply"):
        list(read_records(path))


def test_given_a_typing_file_line_nested_200000_deep_then_the_error_names_file_and_line(
        tmp_path):
    donors = tmp_path / "donors.jsonl"
    donors.write_text('{"id": "D1", "gl": "A*01:01+A*02:01"}\n{"id": ' + DEEP + "\n")
    result = runner.invoke(app, ["match", "--patients", str(donors), "--donors", str(donors)])
    assert result.exit_code == 1
    assert f"{donors} line 2, line: not JSON: nested too deeply" in result.stderr


def test_given_a_frequency_json_nested_200000_deep_then_the_error_names_the_file(tmp_path):
    path = tmp_path / "hf.json"
    path.write_text('{"haplotypes": ' + DEEP)
    result = runner.invoke(app, ["hf", "info", str(path)])
    assert result.exit_code == 1
    assert f"{path}, file: not JSON: nested too deeply" in result.stderr


def test_given_a_site_policy_nested_200000_deep_then_the_error_names_the_file(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text("level = " + DEEP)
    result = runner.invoke(app, ["match", "--patient", "A*01:01", "--donor", "A*01:01",
                                 "--policy", str(path)])
    assert result.exit_code == 1
    assert f"{path}: not valid TOML: nested too deeply" in result.stderr


def test_given_imputation_settings_and_a_ranking_nested_200000_deep_then_both_are_refused(
        tmp_path):
    settings = tmp_path / "imputation.toml"
    settings.write_text("min_posterior = " + DEEP)
    result = runner.invoke(app, ["impute", "--hf", str(tmp_path / "none.csv"), "--settings",
                                 str(settings), "A*01:01"])
    assert result.exit_code == 1
    assert f"{settings}: not valid TOML: nested too deeply" in result.stderr
    ranking = tmp_path / "ranking.toml"
    ranking.write_text("x = " + "{ a = " * 100_000)
    with pytest.raises(RankingError, match="not valid TOML: nested too deeply"):
        load_ranking(ranking)


def test_given_an_imported_mac_list_damaged_to_200000_levels_then_it_says_import_it_again(
        tmp_path):
    from graftmatch.nomenclature.mac import MacError, load_mac_table, mac_store_path

    store = mac_store_path(tmp_path)
    store.parent.mkdir(parents=True)
    store.write_text(DEEP)
    with pytest.raises(MacError, match=r"is damaged \(nested too deeply.*import the MAC "
                                       r"file again"):
        load_mac_table(tmp_path)
