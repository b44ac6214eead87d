"""MAC codes come only from a list the user imports. The list here is a tiny hand-made file in
NMDP's layout (its two codes are the documented examples), not NMDP's data."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graftmatch.errors import TypingError
from graftmatch.interfaces.cli import app
from graftmatch.nomenclature.mac import MacError, parse_mac_text
from graftmatch.typing.parser import TypingReader

runner = CliRunner()
NUMER = '"LAST UPDATED: 09/30/20"\nCODE\tSUBTYPE\n\nAB\t01/02\nZZTOP\t01:01/02:01\n'


def test_generic_and_allele_specific_codes_expand(index):
    reader = TypingReader(index, parse_mac_text(NUMER, "numer.v3.txt"))
    typing_ = reader.parse("A*01:AB+A*02:ZZTOP")
    assert typing_.to_gl() == "A*01:AB+A*02:ZZTOP"
    first, second = (hap[0][0] for hap in typing_.blocks[0][0])
    assert {index.names[i] for i in first.alleles} >= {"A*01:01:01:01", "A*01:02:01:01"}
    assert {index.names[i].split(":")[0] for i in second.alleles} == {"A*01", "A*02"}


def test_unknown_code_is_an_error_naming_the_list(index):
    reader = TypingReader(index, parse_mac_text(NUMER, "numer.v3.txt"))
    with pytest.raises(TypingError, match="unknown MAC code QQ"):
        reader.parse("A*02:01+A*01:QQ")


def test_alpha_layout_with_the_new_code_marker_is_read():
    text = '"LAST UPDATED: 10/01/20"\n*\tCODE\tSUBTYPE\n\n\tAB\t01/02\n*\tAC\t01/03\n'
    table = parse_mac_text(text, "alpha.v3.txt")
    assert table.codes == {"AB": "01/02", "AC": "01/03"}


def test_a_bad_line_is_reported_with_its_number():
    with pytest.raises(MacError, match=r"numer.v3.txt, line 6"):
        parse_mac_text(NUMER + "AB\n", "numer.v3.txt")


def _zip(tmp_path, text: str = NUMER, method: int = zipfile.ZIP_DEFLATED) -> Path:
    path = tmp_path / "numer.v3.zip"
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        archive.writestr("numer.v3.txt", text)
    return path


def _patch_headers(path: Path, offset_local: int, offset_central: int, value: bytes) -> None:
    """Set a field of the member's local and central headers (zipfile cannot write these)."""
    data = bytearray(path.read_bytes())
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    data[local + offset_local:local + offset_local + 2] = value
    data[central + offset_central:central + offset_central + 2] = value
    path.write_bytes(bytes(data))


def import_mac(path: Path):
    return runner.invoke(app, ["hla", "import-mac", str(path)])


def test_given_a_zipped_mac_list_then_its_codes_are_imported(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAFTMATCH_HOME", str(tmp_path / "home"))
    result = import_mac(_zip(tmp_path))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("imported 2 MAC codes (list dated 09/30/20)")


def test_given_an_encrypted_mac_zip_then_it_asks_for_it_unzipped(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAFTMATCH_HOME", str(tmp_path / "home"))
    path = _zip(tmp_path, method=zipfile.ZIP_STORED)
    _patch_headers(path, 6, 8, b"\x01\x00")  # general purpose flag: encrypted
    result = import_mac(path)
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: {path}: numer.v3.txt is encrypted; unzip it "
                                     "with its password and import the .txt")


def test_given_a_mac_zip_of_an_unsupported_compression_then_it_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAFTMATCH_HOME", str(tmp_path / "home"))
    path = _zip(tmp_path)
    _patch_headers(path, 8, 10, b"\x09\x00")  # compression method 9: Deflate64
    result = import_mac(path)
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: {path}: That compression method is not supported "
                                     "(zip compression this reader lacks); unzip it yourself "
                                     "and import the .txt")


def test_given_a_corrupt_mac_zip_then_it_is_called_damaged(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAFTMATCH_HOME", str(tmp_path / "home"))
    path = _zip(tmp_path, NUMER * 200)
    data = bytearray(path.read_bytes())
    data[45:50] = b"\xff" * 5  # inside the deflate stream
    path.write_bytes(bytes(data))
    result = import_mac(path)
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: {path}: damaged zip (Error -3 while decompressing "
                                     "data: invalid code lengths set)")


def test_given_a_zip_bomb_as_mac_list_then_it_is_refused_before_unpacking(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setenv("GRAFTMATCH_HOME", str(tmp_path / "home"))
    path = tmp_path / "numer.v3.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive, \
            archive.open("numer.v3.txt", "w", force_zip64=True) as member:
        member.write(NUMER.encode())
        for _ in range(300):
            member.write(bytes(2**20))
    assert path.stat().st_size < 2**20
    result = import_mac(path)
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: {path}: numer.v3.txt unpacks to 314,572,866 "
                                     "bytes, over the 134,217,728 a MAC list may have")


def test_given_an_endless_mac_file_then_reading_stops_at_the_limit():
    result = import_mac(Path("/dev/zero"))
    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: /dev/zero is over 134,217,728 bytes: not an NMDP "
                                     "MAC list")
