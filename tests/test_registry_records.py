"""Registry files as a registry data manager sees them: what loads, with which values, and
which records are refused with which line, field and reason; and the synthetic registry."""

from __future__ import annotations

import gzip
import json
import re
from datetime import date

import pytest

from graftmatch.prediction.frequencies import read_frequency_set
from graftmatch.prediction.haplotypes import HaplotypeTable
from graftmatch.registry.files import Accepted, Rejected, read_records
from graftmatch.registry.records import (
    Abo,
    Action,
    Cmv,
    CordRecord,
    Deletion,
    DonorRecord,
    Kind,
    RecordError,
    Rh,
    Sex,
    Status,
)
from graftmatch.registry.synthetic import generate_registry
from graftmatch.typing.parser import TypingReader
from tests.test_frequencies import CAU

HEADER = ("type,id,registry,bank,hla,birth_date,age,sex,abo,rh,cmv,population,status,updated,"
          "tnc_1e7,cd34_1e5,volume_ml\n")
GOOD = (
    "donor,D1,DKMS,,A*01:01+A*02:01^B*08:01+B*07:02^DRB1*03:01+DRB1*15:01,,34,F,A+,,pos,CAU,"
    "temporarily unavailable,2024-03-01,,,\n"
    "donor, D2 ,NMDP,,A1+A2^B8+B7^DR17+DR15,1990-05-17,,male,0 Rh-,,neg,,,,,,\n"
    "cord,C1,,CBB-9,A*01:01+A*02:01^B*08:01+B*07:02^DRB1*03:01+DRB1*15:01,,,,AB pos,,,AFA,"
    "reserved,,150,32.5,24.5\n"
)


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def test_a_good_file_loads_with_typed_values(tmp_path, reader):
    results = list(read_records(_write(tmp_path, "r.csv", HEADER + GOOD), reader))
    assert all(isinstance(r, Accepted) for r in results)
    assert [(r.line, r.kind, r.action) for r in results] == [
        (2, Kind.DONOR, Action.UPSERT), (3, Kind.DONOR, Action.UPSERT),
        (4, Kind.CORD, Action.UPSERT)]
    d1, d2, c1 = (r.record for r in results)
    assert d1 == DonorRecord(id="D1", registry="DKMS", hla=d1.hla, age=34, sex=Sex.F,
                             abo=Abo.A, rh=Rh.POSITIVE, cmv=Cmv.POSITIVE, population="CAU",
                             status=Status.TEMPORARILY_UNAVAILABLE, updated=date(2024, 3, 1))
    assert (d2.id, d2.birth_date, d2.age, d2.sex, d2.abo, d2.rh, d2.cmv, d2.status) == (
        "D2", date(1990, 5, 17), None, "M", "O", "-", "negative", "available")
    assert c1 == CordRecord(id="C1", bank="CBB-9", hla=c1.hla, abo=Abo.AB, rh=Rh.POSITIVE,
                            population="AFA", status=Status.RESERVED, tnc_1e7=150.0,
                            cd34_1e5=32.5, volume_ml=24.5)
    # Without a reader nothing is parsed, and serology is kept as written.
    plain = list(read_records(tmp_path / "r.csv"))
    assert len(plain) == 3
    assert plain[1].record.hla == "A1+A2^B8+B7^DR17+DR15"


def test_bad_records_are_rejected_and_the_good_ones_kept(tmp_path, reader):
    rows = [
        "donor,D1,DKMS,,A*01:01+A*02:01,,12,F,,,,,,,,,",          # line 2: too young
        "donor,,DKMS,,A*01:01+A*02:01,,30,F,,,,,,,,,",            # 3: no id
        "donor,D3,DKMS,,A*01:01+A*02:01,,30,X,,,,,,,,,",          # 4: sex X
        "cord,C1,,CBB,A*01:01+A*02:01,,,,,,,,,,-5,,",             # 5: negative TNC
        "donor,D5,DKMS,,A*01:01+A*99:99,,30,F,,,,,,,,,",          # 6: unknown allele
        "donor,D6,DKMS,,A*01:01+A*02:01,,30,F,A+,-,,,,,,,",       # 7: A+ but Rh -
        "donor,D7,DKMS,,A*01:01+A*02:01,,,F,,,,,,,,,",            # 8: neither age nor birth date
        "donor,D8,DKMS,,A*01:01+A*02:01,1990-02-30,,F,,,,,,,,,",  # 9: no such date
        "donor,D9,DKMS,,A*01:01+A*02:01,,30,F,,,,,,,150,,",       # 10: a cord field on a donor
        "donor,D10,DKMS,,A*01:01+A*02:01,,30,F,,,,,,,,",          # 11: a cell short
        "mouse,D11,DKMS,,A*01:01+A*02:01,,30,F,,,,,,,,,",         # 12: no such type
        "donor,D12,DKMS,,A*01:01+A*02:01,,30,F,,,,,,,,,",         # 13: good
    ]
    path = _write(tmp_path, "donors.csv", HEADER + "\n".join(rows) + "\n")
    results = list(read_records(path, reader))
    rejected = [r for r in results if isinstance(r, Rejected)]
    assert [(r.line, r.error.field, r.error.value) for r in rejected] == [
        (2, "age", "12"), (3, "id", ""), (4, "sex", "X"), (5, "tnc_1e7", "-5"),
        (6, "hla", "A*01:01+A*99:99"), (7, "rh", "-"), (8, "age", ""),
        (9, "birth_date", "1990-02-30"), (10, "tnc_1e7", "150"), (11, "record", ""),
        (12, "type", "mouse")]
    messages = [str(r.error).removeprefix(f"{path} ") for r in rejected]
    assert messages == [
        "line 2, field 'age': '12' is below 18 (adult donors are listed from 18 to 60 years; "
        "limits.toml (built in) [donor_age])",
        "line 3, field 'id': is required but missing",
        "line 4, field 'sex': 'X' must be 'F', 'M' or 'U'",
        "line 5, field 'tnc_1e7': '-5' must be above 0 (total nucleated cells in units of "
        "10^7: 150 means 1.5 x 10^9 cells)",
        "line 6, field 'hla': 'A*01:01+A*99:99' cannot be read: unknown allele in "
        "IPD-IMGT/HLA 3.58.0: 'A*99:99' at position 9",
        "line 7, field 'rh': '-' contradicts the blood group 'A+'",
        "line 8, field 'age': missing: give the donor's age or birth_date",
        "line 9, field 'birth_date': '1990-02-30' is not a date (write YYYY-MM-DD)",
        "line 10, field 'tnc_1e7': '150' is not a field of a donor record",
        "line 11, field 'record': has 16 cells but the header has 17",
        "line 12, field 'type': 'mouse' must be 'donor' or 'cord'",
    ]
    assert [(r.line, r.record.id) for r in results if isinstance(r, Accepted)] == [(13, "D12")]
    assert rejected[0].error.to_dict()["line"] == 2
    # Without a reader the typing is not checked, so the unknown allele passes.
    assert isinstance(list(read_records(path))[4], Accepted)


def test_an_unknown_column_stops_the_file_naming_it(tmp_path):
    path = _write(tmp_path, "r.csv", "id,registry,hla,age,colour\nD1,DKMS,A*01:01,30,blue\n")
    with pytest.raises(RecordError, match=r"line 1, field 'colour': unknown column") as info:
        list(read_records(path))
    assert (info.value.line, info.value.field) == (1, "colour")
    with pytest.raises(RecordError, match="no 'id' column"):
        list(read_records(_write(tmp_path, "n.csv", "registry,hla\nDKMS,A*01:01\n")))
    with pytest.raises(RecordError, match="is empty"):
        list(read_records(_write(tmp_path, "e.csv", "\n\n")))


def test_json_lines_gzipped_and_json_arrays(tmp_path, reader):
    lines = [
        {"id": 1001, "registry": "NMDP", "hla": "A*01:01+A*02:01", "age": 25, "abo": "B-",
         "cmv": "+", "population": None},
        {"type": "cord", "id": "C7", "bank": "CBB", "hla": "A*01:01+A*02:01", "tnc_1e7": 99.5},
        {"id": "D3", "registry": "NMDP", "hla": "A*01:01+A*02:01", "age": 71},
        {"id": "D4", "registry": "NMDP", "hla": "A*01:01", "age": 40, "shoe_size": 44},
    ]
    text = "\n".join(json.dumps(x) for x in lines[:2]) + "\n\n" + "\n".join(
        json.dumps(x) for x in lines[2:]) + "\nnot json\n"
    results = list(read_records(_write(tmp_path, "r.jsonl.gz", text), reader))
    first, cord = results[0].record, results[1].record
    assert isinstance(first, DonorRecord) and (first.id, first.abo, first.rh, first.cmv) == (
        "1001", "B", "-", "positive")
    assert isinstance(cord, CordRecord) and cord.tnc_1e7 == 99.5 and cord.cd34_1e5 is None
    assert [(r.line, str(r.error).split(", ", 1)[1]) for r in results
            if isinstance(r, Rejected)] == [
        (4, "field 'age': '71' is above 60 (adult donors are listed from 18 to 60 years; "
            "limits.toml (built in) [donor_age])"),
        (5, "field 'shoe_size': unknown field (the fields are type, action, id, hla, abo, rh, "
            "population, status, updated, registry, birth_date, age, sex, cmv, bank, tnc_1e7, "
            "cd34_1e5, volume_ml)"),
        (6, "field 'record': 'not json' is not JSON (Expecting value: line 1 column 1 (char "
            "0))")]
    array = _write(tmp_path, "r.json", json.dumps(lines[:3]))
    results = list(read_records(array))
    assert [r.line for r in results] == [1, 2, 3]
    error = results[2].error
    assert str(error) == (f"{array} record 3, field 'age': '71' is above 60 (adult donors are "
                          "listed from 18 to 60 years; limits.toml (built in) [donor_age])")


def test_a_deletion_needs_only_the_id(tmp_path):
    path = _write(tmp_path, "d.csv",
                  "id,action,type,registry,bank\nD1,delete,,,\nC1,DELETE,cord,,CBB\n,delete,,,\n")
    results = list(read_records(path))
    assert [(r.line, r.kind, r.action, r.record) for r in results[:2]] == [
        (2, Kind.DONOR, Action.DELETE, Deletion(id="D1")),
        (3, Kind.CORD, Action.DELETE, Deletion(id="C1", bank="CBB"))]
    assert str(results[2].error).endswith("line 4, field 'id': is required but missing")


@pytest.fixture(scope="module")
def synthetic(index, tmp_path_factory):
    reader = TypingReader(index)
    population, _ = read_frequency_set(CAU, reader).select("CAU")
    table = HaplotypeTable.compile(population, reader)
    folder = tmp_path_factory.mktemp("synthetic")
    out = folder / "registry.csv.gz"
    meta = generate_registry(out, reader, table, donors=2000, cords=300, seed=7)
    return reader, table, out, meta


def test_a_synthetic_registry_reads_back_whole(synthetic):
    reader, _, out, meta = synthetic
    results = list(read_records(out, reader))
    assert all(isinstance(r, Accepted) for r in results)  # every typing parses
    records = [r.record for r in results]
    donors = [r for r in records if isinstance(r, DonorRecord)]
    cords = [r for r in records if isinstance(r, CordRecord)]
    assert (len(donors), len(cords)) == (2000, 300)
    assert {d.registry for d in donors} == {"SYNTHETIC-1", "SYNTHETIC-2", "SYNTHETIC-3"}
    assert {c.bank for c in cords} == {"SYNTHETIC-CBB-1", "SYNTHETIC-CBB-2", "SYNTHETIC-CBB-3"}
    assert all(r.id.startswith("SYN-") and r.population == "CAU" for r in records)
    assert all(d.age is not None and 18 <= d.age <= 60 for d in donors)
    assert all(50 <= c.tnc_1e7 <= 250 for c in cords)
    female = sum(d.sex == "F" for d in donors) / len(donors)
    o_pos = sum((d.abo, d.rh) == ("O", "+") for d in donors) / len(donors)
    assert 0.5 < female < 0.6 and 0.32 < o_pos < 0.42
    side = json.loads((out.parent / "registry.csv.gz.meta.json").read_text())
    assert side == meta and side["synthetic"] is True and "NOT real" in side["source"]
    assert (side["donors"], side["cords"], side["seed"], side["frequency_set"],
            side["release"]) == (2000, 300, 7, "CAU", "3.58.0")


def _resolution(gl: str) -> str:
    loci = gl.count("^") + 1
    if "*" not in gl:
        return "serology"
    if ":XX" in gl:
        return "xx"
    if "/" in gl:
        return "intermediate"
    return "high" if loci == 5 else "abdrb1-high" if loci == 3 else "other"


def test_the_synthetic_resolution_mix(synthetic):
    _, _, out, _ = synthetic
    results = list(read_records(out))
    donors = [r.record.hla for r in results if r.kind is Kind.DONOR]
    shares = {k: sum(_resolution(gl) == k for gl in donors) / len(donors)
              for k in ("high", "intermediate", "xx", "serology", "abdrb1-high")}
    expected = {"high": 0.35, "intermediate": 0.30, "xx": 0.20, "serology": 0.10,
                "abdrb1-high": 0.05}
    assert all(abs(shares[k] - expected[k]) < 0.04 for k in expected), shares
    assert all(re.fullmatch(r"(A|B|DR)\d+\+(A|B|DR)\d+", block) or ":XX" in block
               for gl in donors if _resolution(gl) == "serology" for block in gl.split("^"))
    cords = [r.record.hla for r in results if r.kind is Kind.CORD]
    assert all(gl.startswith("A*") and "^B*" in gl and "^DRB1*" in gl for gl in cords)
    assert 0.6 < sum("^C*" in gl for gl in cords) / len(cords) < 0.9


def test_a_synthetic_registry_is_the_same_for_the_same_seed(synthetic, tmp_path):
    reader, table, out, _ = synthetic
    again = tmp_path / "again.csv.gz"
    generate_registry(again, reader, table, donors=2000, cords=300, seed=7)
    assert again.read_bytes() == out.read_bytes()
    other = tmp_path / "other.csv"
    generate_registry(other, reader, table, donors=2000, cords=300, seed=8)
    assert other.read_bytes() != gzip.decompress(out.read_bytes())
    assert other.read_text().splitlines()[0] == (
        "type,id,registry,bank,hla,age,sex,abo,rh,cmv,population,status,updated,tnc_1e7,"
        "cd34_1e5,volume_ml")


def test_a_large_synthetic_registry_is_drawn_in_blocks_with_consecutive_ids(synthetic,
                                                                             tmp_path,
                                                                             monkeypatch):
    """Registries of tens of millions are drawn a block at a time (bounded memory); ids run on
    across blocks."""
    from graftmatch.registry import synthetic as module

    reader, table, _, _ = synthetic
    monkeypatch.setattr(module, "BLOCK", 700)
    out = tmp_path / "blocks.csv"
    generate_registry(out, reader, table, donors=2000, cords=300, seed=7)
    ids = [r.record.id for r in read_records(out, reader)]
    assert ids == ([f"SYN-D{i:07d}" for i in range(1, 2001)]
                   + [f"SYN-C{i:07d}" for i in range(1, 301)])
