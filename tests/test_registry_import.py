"""Importing registry files as a registry data manager does, carelessly or with damaged files:
records apply in file order, nothing is lost or merged silently, every record that is not
stored is counted and listed with its line, and a damaged file leaves the registry unchanged
or holding exactly its good records."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graftmatch.errors import GraftmatchError
from graftmatch.registry.files import Accepted, Rejected, read_records
from graftmatch.registry.store import Registry, RegistryError
from graftmatch.typing.parser import TypingReader
from tests.conftest import REPO
from tests.test_frequencies import CAU

GL = "A*01:01+A*02:01^B*08:01+B*07:02^DRB1*03:01+DRB1*15:01"
GL2 = "A*03:01+A*11:01^B*08:01+B*44:02^DRB1*03:01+DRB1*04:01"
HEADER = "type,action,id,registry,bank,hla,birth_date,age,sex,tnc_1e7\n"


def _registry(tmp_path: Path, index) -> Registry:
    return Registry.create(tmp_path / "reg", release=index.release, frequency_set=str(CAU),
                           population="CAU")


def _file(tmp_path: Path, name: str, rows: list[str], header: str = HEADER) -> Path:
    path = tmp_path / name
    path.write_text(header + "".join(f"{row}\n" for row in rows))
    return path


def _stored(reg: Registry) -> dict[str, tuple[str, object]]:
    """ext_id -> (source, age) of every stored record."""
    return {r["ext_id"]: (r["source"], r["age"]) for r in reg.iter_records()}


def test_a_file_that_deletes_a_donor_and_adds_it_again_ends_with_the_donor_present(
        tmp_path, index, reader):
    reg = _registry(tmp_path, index)
    reg.import_file(_file(tmp_path, "a.csv", [f"donor,,D1,REG1,,{GL},,30,F,"]), reader)
    changes = _file(tmp_path, "b.csv", [
        "donor,delete,D1,REG1,,,,,,",
        f"donor,upsert,D1,REG1,,{GL},,31,F,",     # re-added: present, with the new age
        f"donor,upsert,D2,REG1,,{GL},,40,M,",
        "donor,delete,D2,REG1,,,,,,"])            # added, then deleted: absent
    report = reg.import_file(changes, reader)
    assert _stored(reg) == {"D1": ("REG1", 31)}
    assert (report.accepted, report.deleted, report.rejected) == (2, 2, 0)


def test_a_stray_quote_rejects_its_own_line_and_the_rows_after_it_load(tmp_path, reader):
    rows = [f"donor,,D{i},REG1,,{GL},,30,F," for i in range(1, 201)]
    rows[4] = f'donor,,D5,REG1,,"{GL},,30,F,'   # line 6: the quote is never closed
    path = _file(tmp_path, "r.csv", rows)
    results = list(read_records(path, reader))
    rejected = [r for r in results if isinstance(r, Rejected)]
    assert [(r.line, r.error.field) for r in rejected] == [(6, "record")]
    assert str(rejected[0].error) == (
        f"{path} line 6, field 'record': a quoted field runs past the end of the line (a "
        "stray '\"'?): no field of a registry record holds a line break")
    accepted = [r.record.id for r in results if isinstance(r, Accepted)]
    assert accepted == [f"D{i}" for i in range(1, 201) if i != 5]
    # The same for a header whose quote is never closed: the file is refused, naming line 1.
    bad_header = _file(tmp_path, "h.csv", rows[:3], header='"type,id,registry,hla,age\n')
    with pytest.raises(GraftmatchError, match=r"line 1, field 'record': a quoted field runs "):
        list(read_records(bad_header))


def test_when_reports_cannot_be_written_nothing_is_imported_and_the_rerun_imports(
        tmp_path, index, reader):
    reg = _registry(tmp_path, index)
    (reg.path / "reports").write_text("a file where the reports folder should be")
    source = _file(tmp_path, "r.csv", [f"donor,,D1,REG1,,{GL},,30,F,",
                                       f"donor,,D2,REG1,,{GL},,12,F,"])
    with pytest.raises(RegistryError, match=r"cannot write the list of rejected records in "
                       rf"{reg.path / 'reports'}: .*nothing was imported"):
        reg.import_file(source, reader)
    assert (reg.count(), reg.meta()["data_version"]) == ({}, "0")
    (reg.path / "reports").unlink()
    report = reg.import_file(source, reader)  # not "already imported": it was not
    assert (report.already_imported, report.accepted, report.rejected) == (False, 1, 1)
    assert report.error_report is not None
    with open(report.error_report, newline="") as handle:
        assert list(csv.reader(handle)) == [
            ["line", "field", "value", "reason"],
            ["3", "age", "12", "is below 18 (adult donors are listed from 18 to 60 years; "
                               "limits.toml (built in) [donor_age])"]]


def test_a_resent_old_snapshot_says_which_import_it_was_and_again_applies_it(
        tmp_path, index, reader):
    from typer.testing import CliRunner

    from graftmatch.interfaces.cli import app

    reg = _registry(tmp_path, index)
    snapshot = _file(tmp_path, "snapshot.csv", [f"donor,,D1,REG1,,{GL},,30,F,"])
    first = reg.import_file(snapshot, reader)
    reg.import_file(_file(tmp_path, "later.csv", ["donor,delete,D1,REG1,,,,,,"]), reader)
    again = reg.import_file(snapshot, reader)
    assert again.already_imported and again.previous is not None
    assert (again.previous.path, again.previous.data_version, again.later_imports) == (
        str(snapshot), first.data_version, 1)
    assert _stored(reg) == {}
    redone = reg.import_file(snapshot, reader, again=True)
    assert (redone.already_imported, redone.accepted, redone.data_version) == (False, 1, 3)
    assert _stored(reg) == {"D1": ("REG1", 30)}
    # The command says when, what, and how to apply it on purpose.
    reg.import_file(_file(tmp_path, "later2.csv", ["donor,delete,D1,,,,,,,"]), reader)
    result = CliRunner().invoke(app, ["registry", "import", str(snapshot), "--registry",
                                      str(reg.path)])
    finished = reg.journal()[-2].finished
    said = " ".join(result.stdout.split())
    assert said.startswith(f"{snapshot} was already imported on {finished:%Y-%m-%d %H:%M} "
                           f"UTC (as {snapshot}, data version 3); 1 later import has "
                           "changed records since. Records unchanged: to apply this file "
                           "again on purpose, run the import with --again")
    assert _stored(reg) == {}


def test_implausible_birth_dates_ages_and_cell_counts_are_refused_with_their_source(
        tmp_path, reader):
    today = date.today()
    young = today.replace(year=today.year - 5).isoformat()
    rows = [
        f"donor,,D1,REG1,,{GL},{young},,F,",       # line 2: aged 5
        f"donor,,D2,REG1,,{GL},1066-10-14,,F,",     # 3: aged 960
        f"donor,,D3,REG1,,{GL},0001-01-01,,F,",     # 4
        f"donor,,D4,REG1,,{GL},,61,F,",             # 5: past the 61st birthday
        f"cord,,C1,,BANK1,{GL},,,,1e300",           # 6: a unit of 10^307 cells
        f"cord,,C2,,BANK1,{GL},,,,inf",             # 7
        f"cord,,C3,,BANK1,{GL},,,,nan",             # 8
        f"donor,,D5,REG1,,{GL},,60,F,",             # 9: good
        f"cord,,C4,,BANK1,{GL},,,,150",             # 10: good
    ]
    results = list(read_records(_file(tmp_path, "r.csv", rows), reader))
    source = "limits.toml (built in)"
    assert [(r.line, r.error.field, r.error.value, r.error.reason) for r in results
            if isinstance(r, Rejected)] == [
        (2, "birth_date", young, f"gives an age of 5 on {today}: adult donors are listed "
                                 f"from 18 to 60 years ({source} [donor_age])"),
        (3, "birth_date", "1066-10-14",
         f"gives an age of {today.year - 1067 + ((today.month, today.day) >= (10, 14))} on "
         f"{today}: adult donors are listed from 18 to 60 years ({source} [donor_age])"),
        (4, "birth_date", "0001-01-01",
         f"gives an age of {today.year - 1} on {today}: adult donors are listed from 18 to "
         f"60 years ({source} [donor_age])"),
        (5, "age", "61", f"is above 60 (adult donors are listed from 18 to 60 years; {source} "
                         "[donor_age])"),
        (6, "tnc_1e7", "1e300", "is above 1000 (total nucleated cells in units of 10^7: 150 "
                                f"means 1.5 x 10^9 cells; {source} [tnc_1e7])"),
        (7, "tnc_1e7", "inf", "is not a finite number (total nucleated cells in units of "
                              "10^7: 150 means 1.5 x 10^9 cells)"),
        (8, "tnc_1e7", "nan", "is not a finite number (total nucleated cells in units of "
                              "10^7: 150 means 1.5 x 10^9 cells)")]
    assert [r.record.id for r in results if isinstance(r, Accepted)] == ["D5", "C4"]
    # JSON's own non-numbers are refused by field too.
    lines = tmp_path / "r.jsonl"
    lines.write_text('{"type": "cord", "id": "C5", "bank": "B", "hla": "A*01:01", '
                     '"tnc_1e7": Infinity}\n{"type": "cord", "id": "C6", "bank": "B", '
                     '"hla": "A*01:01", "tnc_1e7": 1e400}\n')
    assert [str(r.error).split(", ", 1)[1] for r in read_records(lines)] == [
        "field 'record': '{\"type\": \"cord\", \"id\": \"C5\", \"bank\": \"B\", \"hla\": "
        "\"A*01:01...' is not JSON (Infinity is not a JSON number)",
        "field 'record': '{\"type\": \"cord\", \"id\": \"C6\", \"bank\": \"B\", \"hla\": "
        "\"A*01:01...' is not JSON (1e400 is not a finite number)"]


def test_a_sites_limits_file_moves_the_ranges_and_a_bad_one_is_refused_by_key(
        tmp_path, reader):
    from graftmatch.registry.limits import LimitsError, load_limits

    text = (REPO / "src/graftmatch/registry/limits.toml").read_text()
    site = tmp_path / "site-limits.toml"
    site.write_text(text.replace("max = 60", "max = 65", 1))
    rows = [f"donor,,D1,REG1,,{GL},,63,F,"]
    path = _file(tmp_path, "r.csv", rows)
    assert isinstance(next(read_records(path, reader)), Rejected)
    assert isinstance(next(read_records(path, reader, load_limits(site))), Accepted)
    for old, new, message in (
            ("max = 60", "max = 10", r"\[donor_age\]: 'min' = 18 is above 'max' = 10"),
            ("max = 1000", "max = inf", r"\[tnc_1e7\]: 'max' = inf should be a finite number"),
            ("max = 1000", 'max = "lots"', r"\[tnc_1e7\]: 'max' = 'lots' should be a number"),
            ("[volume_ml]", "[volume]", r"'volume_ml' is missing")):
        site.write_text(text.replace(old, new, 1))
        with pytest.raises(LimitsError, match=rf"{site}: {message}"):
            load_limits(site)


def test_search_json_never_prints_infinity_or_nan():
    from graftmatch.services.common import json_text

    assert json_text({"a": [1.5, None]}) == '{"a": [1.5, null]}'
    with pytest.raises(GraftmatchError, match=r"the output holds a number JSON cannot carry "
                       r"at cords\[0\]\.tnc_per_kg \(inf\)"):
        json_text({"cords": [{"id": "C1", "tnc_per_kg": math.inf}]})


def test_a_deletion_naming_an_unknown_id_or_the_wrong_registry_is_counted_and_reported(
        tmp_path, index, reader):
    reg = _registry(tmp_path, index)
    reg.import_file(_file(tmp_path, "a.csv", [f"donor,,D1,REG1,,{GL},,30,F,",
                                              f"donor,,D2,REG1,,{GL},,30,F,"]), reader)
    report = reg.import_file(_file(tmp_path, "b.csv", [
        "donor,delete,D1,REG2,,,,,,",    # line 2: D1 is in REG1
        "donor,delete,D9,REG1,,,,,,",    # 3: no such donor
        "donor,delete,D2,,,,,,,",        # 4: deleted (no registry named: any registry)
        "donor,delete,D2,REG1,,,,,,",    # 5: already deleted on line 4
        "cord,delete,D1,,BANK1,,,,,"]), reader)  # 6: D1 is a donor, not a cord unit
    assert (report.deleted, report.not_deleted, report.rejected) == (1, 4, 0)
    assert _stored(reg) == {"D1": ("REG1", 30)}
    assert report.error_report is not None
    with open(report.error_report, newline="") as handle:
        assert list(csv.reader(handle))[1:] == [
            ["2", "id", "D1", "names no donor D1 of registry REG2 (D1 is in REG1): nothing "
                              "deleted"],
            ["3", "id", "D9", "names no donor D9 of registry REG1: nothing deleted"],
            ["5", "id", "D2", "names no donor D2 of registry REG1: nothing deleted"],
            ["6", "id", "D1", "names no cord unit D1 of bank BANK1: nothing deleted"]]


def test_a_100_mb_hla_value_refuses_its_record_and_messages_stay_short(tmp_path, index,
                                                                       reader):
    reg = _registry(tmp_path, index)
    huge = "A*01:01" + "/A*01:01" * (100 * 2**20 // 8)
    path = tmp_path / "r.csv"
    with path.open("w") as handle:
        handle.write(HEADER)
        handle.write(f"donor,,D1,REG1,,{GL},,30,F,\n")
        handle.write(f"donor,,D2,REG1,,{huge},,30,F,\n")
        handle.write(f"donor,,D3,REG1,,{GL},,30,F,\n")
    started = time.monotonic()
    report = reg.import_file(path, reader)
    assert time.monotonic() - started < 60
    assert (report.accepted, report.rejected) == (2, 1)
    assert report.first_errors == [
        f"{path} line 3, field 'record': the line is longer than 1,000,000 characters "
        "(limits.toml (built in) [text]): not read"]
    assert os.path.getsize(report.error_report) < 1000
    # A field over its own limit, on a line within the line limit, refuses that record.
    long_hla = "A*01:01" + "/A*01:01" * 20_000
    lines = [f"donor,,D4,REG1,,{long_hla},,30,F,", f"donor,,D5,REG1,,{GL},,30,F,"]
    results = list(read_records(_file(tmp_path, "s.csv", lines), reader))
    error = results[0].error
    assert (error.field, len(error.value), error.reason) == (
        "hla", 80 + len(" ... (160,007 characters)"),
        "is 160,007 characters long (at most 100,000, limits.toml (built in) [text])")
    assert error.value.endswith("A*01:01/ ... (160,007 characters)")
    assert isinstance(results[1], Accepted)


def test_error_report_cells_that_start_a_formula_are_neutralised(tmp_path, index, reader):
    reg = _registry(tmp_path, index)
    source = _file(tmp_path, "r.csv", [
        f"donor,,D1,REG1,,{GL},,-3,F,",
        f"donor,,D2,REG1,,{GL},,=1+2,F,",
        f"donor,,D3,REG1,,{GL},,30,@SUM(1),",
        "donor,delete,+D4,REG1,,,,,,",
        f"donor,,D5,REG1,,{GL},,30,F,"])
    report = reg.import_file(source, reader)
    with open(report.error_report, newline="") as handle:
        assert [row[:3] for row in csv.reader(handle)][1:] == [
            ["2", "age", "'-3"], ["3", "age", "'=1+2"], ["4", "sex", "'@SUM(1)"],
            ["5", "id", "'+D4"]]
    # What the command prints is left as written.
    assert report.first_errors[0] == f"{source} line 2, field 'age': '-3' is below 18 (adult " \
        "donors are listed from 18 to 60 years; limits.toml (built in) [donor_age])"


def test_typings_no_record_uses_are_dropped_after_deletions_and_updates(tmp_path, index,
                                                                         reader):
    from sqlalchemy import select

    from graftmatch.registry.store import typings_table

    reg = _registry(tmp_path, index)
    third = "A*24:02+A*24:02^B*08:01+B*44:02^DRB1*03:01+DRB1*04:01"
    reg.import_file(_file(tmp_path, "a.csv", [f"donor,,D1,REG1,,{GL},,30,F,",
                                              f"donor,,D2,REG1,,{GL2},,30,F,",
                                              f"donor,,D3,REG1,,{third},,30,F,"]), reader)
    reg.import_file(_file(tmp_path, "b.csv", ["donor,delete,D1,REG1,,,,,,",
                                              f'donor,,D2,REG1,,"{third}",,30,F,']), reader)

    with reg.engine.connect() as conn:
        assert list(conn.execute(select(typings_table.c.gl)).scalars()) == [third]


def test_a_duplicate_id_in_one_file_is_reported_and_counted_once(tmp_path, index, reader):
    reg = _registry(tmp_path, index)
    report = reg.import_file(_file(tmp_path, "r.csv", [
        f"donor,,D1,REG1,,{GL},,30,F,",
        f"donor,,D2,REG1,,{GL},,30,F,",
        f"donor,,D1,REG1,,{GL},,41,F,",      # line 4: repeats line 2; the later line is kept
        f"donor,,D1,REG2,,{GL},,50,F,"]), reader)   # another registry's D1: no repeat
    assert (report.accepted, report.duplicates) == (3, 1)
    assert sorted((r["source"], r["ext_id"], r["age"]) for r in reg.iter_records()) == [
        ("REG1", "D1", 41), ("REG1", "D2", 30), ("REG2", "D1", 50)]
    with open(report.error_report, newline="") as handle:
        assert list(csv.reader(handle))[1:] == [
            ["4", "id", "D1", "repeats the donor of line 2 (D1 of REG1): this later line is "
                              "what is stored"]]


def test_duplicates_are_found_across_batches(tmp_path, index, reader, monkeypatch):
    from graftmatch.registry import store

    monkeypatch.setattr(store, "BATCH", 3)
    reg = _registry(tmp_path, index)
    rows = [f"donor,,D{i},REG1,,{GL},,30,F," for i in range(1, 8)] + [
        f"donor,,D2,REG1,,{GL},,44,F,", "donor,delete,D3,REG1,,,,,,",
        f"donor,,D3,REG1,,{GL},,45,F,"]   # deleted, then added: no repeat
    report = reg.import_file(_file(tmp_path, "r.csv", rows), reader)
    assert (report.accepted, report.duplicates, report.deleted) == (8, 1, 1)
    assert _stored(reg)["D2"] == ("REG1", 44) and _stored(reg)["D3"] == ("REG1", 45)
    assert len(_stored(reg)) == 7


def test_import_reads_records_from_standard_input(tmp_path):
    source = _file(tmp_path, "r.csv", [f"donor,,D1,REG1,,{GL},,30,F,"])
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-m", "graftmatch", "registry", "import", "/dev/stdin",
               "--registry", str(tmp_path / "reg"), "--hf", str(CAU), "--population", "CAU"]
    with source.open("rb") as stdin:
        done = subprocess.run(command, stdin=stdin, capture_output=True, text=True, env=env,
                              check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "/dev/stdin: 1 record loaded, 0 deleted, 0 rejected"
    assert _stored(Registry(tmp_path / "reg")) == {"D1": ("REG1", 30)}
    with pytest.raises(RegistryError, match=f"{tmp_path} is a folder, not a file of records"):
        Registry(tmp_path / "reg").import_file(tmp_path, TypingReader(_index()))


def _index():
    from graftmatch.nomenclature.release import load_index

    return load_index()


def test_a_new_allele_placeholder_is_not_called_a_mac(reader):
    from graftmatch.errors import TypingError

    for typing in ("A*01:NEW", "A*01:NEW+A*02:01", "A*01:01:NEW"):
        with pytest.raises(TypingError) as info:
            reader.parse(typing)
        assert info.value.reason == "an allele not yet named (NEW) cannot be interpreted"


def test_an_empty_registries_or_kinds_list_is_refused_by_name(tmp_path):
    from typer.testing import CliRunner

    from graftmatch.interfaces.cli import app

    for option, value in (("--registries", ","), ("--registries", "REG1,,REG2"),
                          ("--kinds", " , ")):
        result = CliRunner().invoke(app, ["search", "--registry", str(tmp_path),
                                          "--patient", GL, option, value])
        assert result.exit_code == 1
        assert " ".join(result.stderr.split()) == (
            f"error: {option} {value!r}: an empty name; give names separated by commas")


@pytest.mark.parametrize(("value", "shown"), [
    ("D\x001", "U+0000, a control character"), ("D\n1", "U+000A, a line break"),
    ("D\r1", "U+000D, a line break"), ("D\u202e1", "U+202E, a bidirectional control"),
    ("D\u20661", "U+2066, a bidirectional control"), ("D\u20281", "U+2028, a line break")])
def test_ids_with_nul_line_breaks_or_bidirectional_overrides_are_refused_by_field(
        tmp_path, value, shown):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"id": value, "registry": "REG1", "hla": GL, "age": 30}) + "\n"
                    + json.dumps({"id": "D2", "registry": f"R{value}", "hla": GL, "age": 30})
                    + "\n")
    first, second = read_records(path)
    assert (first.error.field, first.error.reason) == (
        "id", f"holds {shown} at position 2: names must be plain text")
    assert second.error.field == "registry"


# -- fuzzing ---------------------------------------------------------------------------------
_GOOD = [(f"ID-{i:02d}-{(i * 37) % 100:02d}", gl, 20 + i) for i, gl in
         enumerate([GL, GL2] * 6)]
_CSV = "type,id,registry,hla,age,sex\n" + "".join(
    f"donor,{ident},REG1,{gl},{age},F\n" for ident, gl, age in _GOOD)
_JSONL = "".join(json.dumps({"id": ident, "registry": "REG1", "hla": gl, "age": age,
                             "sex": "F"}) + "\n" for ident, gl, age in _GOOD)
_BYTES = [b'"', b",", b"\n", b"\r", b"{", b"}", b":", b"\x00", b"\xff", b"\xe2\x80\xae",
          b"Z", b"9", b"-", b" ", b"\\", b"=", b"\xc3\xa9", b"\t", b"[", b"e300"]
_MUTATION = st.tuples(st.floats(0, 1), st.sampled_from(["insert", "replace", "delete"]),
                      st.sampled_from(_BYTES))


def _mutate(data: bytes, mutations) -> bytes:
    for where, how, what in mutations:
        at = min(int(where * len(data)), len(data) - 1)
        if how == "insert":
            data = data[:at] + what + data[at:]
        elif how == "replace":
            data = data[:at] + what + data[at + 1:]
        else:
            data = data[:at] + data[at + 1:]
    return data


def _records(reg: Registry) -> dict[str, tuple[object, ...]]:
    """ext_id -> (source, typing, age, sex) of every stored record."""
    rows = reg.rows(r["row"] for r in reg.iter_records())
    return {r["ext_id"]: (r["source"], r["gl"], r["age"], r["sex"]) for r in rows.values()}


def _good(results) -> dict[str, tuple[object, ...]]:
    return {r.record.id: (r.record.registry, r.record.hla, r.record.age, r.record.sex.value)
            for r in results if isinstance(r, Accepted)}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(layout=st.sampled_from(["csv", "jsonl"]),
       mutations=st.lists(_MUTATION, min_size=1, max_size=4))
def test_mutated_registry_files_leave_the_registry_unchanged_or_holding_exactly_the_good_records(
        tmp_path_factory, index, layout, mutations):
    """A mutated CSV or JSON Lines file either is refused whole (the registry as it was) or
    adds exactly the records its lines hold each on their own: every line the mutations did
    not touch is stored as written, and no record is made of more than one line."""
    reader = TypingReader(index)
    tmp = tmp_path_factory.mktemp("fuzz")
    reg = _registry(tmp, index)
    reg.import_file(_file(tmp, "base.csv", [f"donor,,BASE-1,REG1,,{GL},,30,F,"]), reader)
    before = _records(reg)
    original = _CSV if layout == "csv" else _JSONL
    data = _mutate(original.encode(), mutations)
    path = tmp / f"mutated.{layout}"
    path.write_bytes(data)
    try:
        report = reg.import_file(path, reader)
    except GraftmatchError:
        assert (_records(reg), reg.meta()["data_version"]) == (before, "1")
        return
    lines = list(io.StringIO(data.decode("utf-8-sig"), newline=""))
    first = next(i for i, line in enumerate(lines) if line.strip())
    start = lines[first].lstrip()[0]
    alone = tmp / "alone"
    expected = dict(before)
    if start == "[":  # a JSON array is read whole
        expected.update(_good(read_records(path, reader)))
    else:
        # Read alone after a header, or after a JSON line (``{}``, itself refused) that keeps
        # the file JSON Lines whatever the line starts with.
        header = "{}\n" if start == "{" else lines[first]
        for line in lines[first + (0 if start == "{" else 1):]:
            alone.write_text(header + line, newline="")
            expected.update(_good(read_records(alone, reader)))
    assert _records(reg) == expected
    assert report.accepted == len(expected) - len(before)
    header_kept = layout == "jsonl" or lines[first] == original.splitlines(keepends=True)[0]
    for line in original.splitlines(keepends=True)[1 if layout == "csv" else 0:]:
        if header_kept and line in lines[first:]:
            ident = (json.loads(line)["id"] if layout == "jsonl" else line.split(",")[1])
            assert _records(reg)[ident][0] == "REG1", line
