"""Importing registry files as a registry data manager does, carelessly or with damaged files:
records apply in file order, nothing is lost or merged silently, every record that is not
stored is counted and listed with its line, and a damaged file leaves the registry unchanged
or holding exactly its good records."""

from __future__ import annotations

import json
import os
import time
from datetime import date
from pathlib import Path

import pytest
from hypothesis import strategies as st

from graftmatch.errors import GraftmatchError
from graftmatch.registry.files import Accepted, Rejected, read_records
from graftmatch.registry.store import Registry
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
        f"{path} line 3, field 'record': the line has over 1,000,000 characters (at most "
        "1,000,000, limits.toml (built in) [text])"]
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


def _index():
    from graftmatch.nomenclature.release import load_index

    return load_index()


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


