"""MAC codes come only from a list the user imports. The list here is a tiny hand-made file in
NMDP's layout (its two codes are the documented examples), not NMDP's data."""

from __future__ import annotations

import pytest

from graftmatch.errors import TypingError
from graftmatch.nomenclature.mac import MacError, parse_mac_text
from graftmatch.typing.parser import TypingReader

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
