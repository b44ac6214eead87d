"""Haplotype frequency sets: the formats registries and GRIM use, checked line by line."""

from __future__ import annotations

import gzip
import json

import pytest

from graftmatch.errors import GraftmatchError
from graftmatch.prediction.frequencies import POOLED, FrequencyError, read_frequency_set
from tests.conftest import SHARED

CAU = SHARED / "haplotype-frequencies" / "nmdp-py-graph-imputation-example" / "CAU.freqs.gz"
TOP = ("A*01:01", "C*07:01", "B*08:01", "DRB1*03:01", "DQB1*02:01")


def test_grim_example_set(reader):
    hf = read_frequency_set(CAU, reader)
    cau = hf.populations["CAU"]
    assert (len(cau.haplotypes), hf.loci, hf.resolution) == (
        3380, ("A", "C", "B", "DRB1", "DQB1"), "2-field")
    assert cau.total == pytest.approx(0.99669, abs=1e-9)  # the file's own sum
    best = max(range(len(cau.haplotypes)), key=lambda i: cau.frequencies[i])
    assert cau.haplotypes[best] == TOP and cau.frequencies[best] == pytest.approx(0.07408)
    assert hf.notices == ()  # 0.99669 is within the rounding tolerance of 1


def _hpf(tmp_path, rows: str, name: str = "hpf.csv"):
    path = tmp_path / name
    path.write_text("hap,pop,freq\n" + rows)
    return path


def test_hpf_populations_and_the_fallback_chain(tmp_path, reader):
    path = tmp_path / "set.json"
    path.write_text(json.dumps({
        "metadata": {"source": "test set", "licence": "CC0", "synthetic": True,
                     "fallback": {"NAMER": "EURO"}},
        "haplotypes": [
            {"haplotype": "A*01:01~B*08:01", "population": "EURO", "frequency": 0.6},
            {"haplotype": "A*02:01~B*44:02", "population": "EURO", "frequency": 0.4},
            {"haplotype": "A*24:02~B*07:02", "population": "AFA", "frequency": 1.0},
        ]}))
    hf = read_frequency_set(path, reader)
    assert (hf.source, hf.licence, hf.synthetic) == ("test set", "CC0", True)
    assert hf.select("EURO") == (hf.populations["EURO"], ())
    pop, steps = hf.select("NAMER")
    assert pop.name == "EURO" and steps == ("population 'NAMER' is not in the set; using "
                                            "broader 'EURO'",)
    pooled, steps = hf.select("XYZ")
    assert pooled.name == POOLED and "pooled set of all 2 populations" in steps[-1]
    # each population weighs equally: 0.6/2, 0.4/2, 1.0/2
    assert dict(zip(pooled.haplotypes, pooled.frequencies, strict=True)) == pytest.approx({
        ("A*01:01", "B*08:01"): 0.3, ("A*02:01", "B*44:02"): 0.2, ("A*24:02", "B*07:02"): 0.5})


def test_renamed_alleles_are_read_under_their_current_name(tmp_path, reader):
    hf = read_frequency_set(_hpf(tmp_path, "A*02:01:08~B*08:01,X,1.0\n"), reader)
    (hap,) = hf.populations["X"].haplotypes
    assert hap[0] != "A*02:01:08" and hf.notices and hf.notices[0].startswith("line 2:")


@pytest.mark.parametrize(("rows", "message"), [
    ("A*01:01~B*08:01,X,0.5\nA*01:999~B*08:01,X,0.5\n",
     "line 3, haplotype: unknown allele in IPD-IMGT/HLA 3.58.0: 'A*01:999' at position 1"),
    ("A*01:01~B*08:01,X,-0.1\n", "line 2, frequency: '-0.1' must be at least 1e-12"),
    ("A*01:01~B*08:01,X,abc\n", "line 2, frequency: 'abc' is not a number"),
    ("A*01:01~B*08:01,X,0.5\nA*01:01~C*07:01,X,0.5\n",
     "line 3, haplotype: loci A~C differ from the set's A~B"),
    ("A*01:01~B*08:01,X,0.5\nA*01:01~B*08:01,X,0.5\n",
     "line 3, haplotype: 'A*01:01~B*08:01' in population 'X' is already on line 2"),
    ("A*01:XX~B*08:01,X,1\n", "'A*01:XX' is not an allele or allele group"),
    ("A*01:01+A*02:01,X,1\n", "is not one haplotype of single alleles"),
    ("A*01:01~B*08:01,X\n", "line 2, line: expected 3 fields, got 2"),
])
def test_bad_rows_are_refused_with_line_and_field(tmp_path, reader, rows, message):
    with pytest.raises(FrequencyError) as caught:
        read_frequency_set(_hpf(tmp_path, rows), reader)
    assert message in str(caught.value)


def test_sums_far_from_one_are_reported_and_renormalised_only_when_asked(tmp_path, reader):
    path = tmp_path / "EUR.freqs.gz"
    path.write_bytes(gzip.compress(b"A*01:01~B*08:01,1,0.3\nA*02:01~B*44:02,1,0.2\n"))
    hf = read_frequency_set(path, reader)
    assert list(hf.populations) == ["EUR"]  # GRIM: the population is the file's stem
    assert hf.populations["EUR"].total == pytest.approx(0.5)
    assert "frequencies sum to 0.50000; not renormalised" in hf.notices[0]
    fixed = read_frequency_set(path, reader, renormalise=True)
    assert fixed.populations["EUR"].total == pytest.approx(1.0)


def test_json_errors_name_the_entry(tmp_path, reader):
    path = tmp_path / "set.json"
    path.write_text(json.dumps({"haplotypes": [
        {"haplotype": "A*01:01~B*08:01", "population": "X", "frequency": 0.5},
        {"haplotype": "A*01:01~B*08:01", "population": "X", "frequency": 0}]}))
    with pytest.raises(FrequencyError, match=r"set.json haplotypes\[1\], frequency: '0' must"):
        read_frequency_set(path, reader)
    path.write_text(json.dumps({"metadata": {"fallback": ["EURO"]}, "haplotypes": []}))
    with pytest.raises(FrequencyError, match=r"metadata\.fallback"):
        read_frequency_set(path, reader)


def _hfx(tmp_path, rows: str, **changed):
    import zipfile

    path = tmp_path / "cohort.hfx"
    metadata = {"version": "1.0", "metadata": {
        "hfxID": "test-cohort", "frequencyLocation": "file://freqs.csv",
        "outputResolution": [{"locus": "A", "resolution": "2-field"},
                             {"locus": "B", "resolution": "2-field"}],
        "cohortDescription": {"population": [{"name": "EUR"}], "dataSource": "test"},
        "nomenclatureUsed": {"database": "IPD-IMGT/HLA", "version": "3.58.0"},
        "license": "CC-BY-4.0", **changed}}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps(metadata))
        z.writestr("freqs.csv", "haplotype,frequency\n" + rows)
    return path


def test_hfx_bundle_read_with_hfx_tools(tmp_path, reader):
    hf = read_frequency_set(_hfx(tmp_path, "A*01:01~B*08:01,0.6\nA*02:01~B*07:02,0.4\n"),
                            reader)
    assert (hf.loci, hf.resolution, hf.release, hf.licence) == (
        ("A", "B"), "2-field", "3.58.0", "CC-BY-4.0")
    assert hf.source == "HFX test-cohort (test)"
    eur = hf.populations["EUR"]
    assert eur.haplotypes == (("A*01:01", "B*08:01"), ("A*02:01", "B*07:02"))
    assert list(eur.frequencies) == [0.6, 0.4]


def test_hfx_errors_name_the_row_or_the_bundle(tmp_path, reader):
    with pytest.raises(FrequencyError, match=r"frequency row 2, frequency: '-0\.4'"):
        read_frequency_set(_hfx(tmp_path, "A*01:01~B*08:01,0.6\nA*02:01~B*07:02,-0.4\n"),
                           reader)
    broken = tmp_path / "broken.hfx"
    broken.write_bytes(b"not a zip")
    with pytest.raises(FrequencyError, match="HFX bundle"):
        read_frequency_set(broken, reader)


@pytest.mark.parametrize(("changed", "message"), [
    ({"cohortDescription": "EUR"}, 'metadata.cohortDescription: "EUR" should be an object'),
    ({"cohortDescription": {"population": {"name": "EUR"}}},
     'metadata.cohortDescription.population: {"name": "EUR"} should be a list'),
    ({"cohortDescription": {"population": [{"name": 7}]}},
     "metadata.cohortDescription.population[0].name: 7 should be text"),
    ({"outputResolution": "A~B"}, 'metadata.outputResolution: "A~B" should be a list'),
    ({"outputResolution": [["A", "2-field"]]},
     'metadata.outputResolution[0]: ["A", "2-field"] should be an object'),
    ({"nomenclatureUsed": {"version": 3.58}},
     "metadata.nomenclatureUsed.version: 3.58 should be text"),
    ({"hfxID": ["x"]}, 'metadata.hfxID: ["x"] should be text'),
])
def test_given_hfx_metadata_of_the_wrong_type_then_the_error_names_the_field(
        tmp_path, reader, changed, message):
    path = _hfx(tmp_path, "A*01:01~B*08:01,1.0\n", **changed)
    with pytest.raises(FrequencyError) as caught:
        read_frequency_set(path, reader)
    assert str(caught.value) == f"{path}, {message}"


def test_given_a_corrupt_gzip_stream_then_the_error_names_the_file(tmp_path, reader):
    data = bytearray(gzip.compress(b"A*01:01~B*08:01,1,0.5\n" * 1000))
    data[12:30] = b"\xff" * 18
    path = tmp_path / "CAU.freqs.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(GraftmatchError) as caught:
        read_frequency_set(path, reader)
    assert str(caught.value) == (f"cannot read frequency set {path}: Error -3 while "
                                 "decompressing data: invalid code lengths set")


def test_given_a_field_over_128_kb_then_the_error_names_file_and_line(tmp_path, reader):
    path = tmp_path / "hpf.csv"
    path.write_text("hap,pop,freq\nA*01:01~B*08:01,CAU,0.5\n" + "A" * 140_000 + ",CAU,0.5\n")
    with pytest.raises(FrequencyError) as caught:
        read_frequency_set(path, reader)
    assert str(caught.value) == (f"{path} line 3, line: field larger than field limit "
                                 "(131072)")


def test_given_frequencies_of_1e_300_then_the_row_is_refused_not_imputed_as_nothing(
        tmp_path, reader):
    path = tmp_path / "hpf.csv"
    path.write_text("hap,pop,freq\nA*01:01~B*08:01,CAU,0.5\nA*02:01~B*44:02,CAU,1e-300\n")
    with pytest.raises(FrequencyError) as caught:
        read_frequency_set(path, reader)
    assert str(caught.value) == (f"{path} line 3, frequency: '1e-300' must be at least 1e-12 "
                                 "and at most 1")


@pytest.mark.parametrize(("metadata", "message"), [
    ({"synthetic": "false"}, 'metadata.synthetic: "false" should be true or false'),
    ({"release": 3.58}, "metadata.release: 3.58 should be text"),
    ({"source": ["GRIM"]}, 'metadata.source: ["GRIM"] should be text'),
])
def test_json_metadata_of_the_wrong_type_is_refused_naming_the_field(tmp_path, reader, metadata,
                                                                     message):
    path = tmp_path / "hf.json"
    path.write_text(json.dumps({"metadata": metadata, "haplotypes": [
        {"haplotype": "A*01:01~B*08:01", "population": "EUR", "frequency": 1.0}]}))
    with pytest.raises(FrequencyError) as caught:
        read_frequency_set(path, reader)
    assert str(caught.value) == f"{path}, {message}"


def test_given_a_gzip_bomb_as_frequency_set_then_reading_stops_at_the_limit(tmp_path, reader,
                                                                            monkeypatch):
    from graftmatch.prediction import frequencies

    monkeypatch.setattr(frequencies, "MAX_SET_BYTES", 1000)
    path = tmp_path / "CAU.freqs.gz"
    path.write_bytes(gzip.compress(b"A*01:01~B*08:01,1,0.5\n" + bytes(10**6)))
    with pytest.raises(GraftmatchError) as caught:
        read_frequency_set(path, reader)
    assert str(caught.value) == f"frequency set {path} is over 1,000 bytes unpacked: not read"
