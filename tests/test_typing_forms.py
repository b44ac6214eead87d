"""Every typing form a lab or registry sends, read against IPD-IMGT/HLA 3.58.0."""

from __future__ import annotations

import pytest

from graftmatch.errors import TypingError
from graftmatch.typing.model import CallKind


def calls(typing_):
    return [c for block in typing_.blocks for gt in block for hap in gt for al in hap for c in al]


@pytest.mark.parametrize(
    ("text", "canonical", "kind"),
    [
        ("A*01:01:01:01", "A*01:01:01:01", CallKind.ALLELE),
        ("HLA-A*01:01:01:01", "A*01:01:01:01", CallKind.ALLELE),
        ("A*01:01:01:02N", "A*01:01:01:02N", CallKind.ALLELE),
        ("A*01:01", "A*01:01", CallKind.ALLELE),
        ("A*01:01:01G", "A*01:01:01G", CallKind.G_GROUP),
        ("A*01:01P", "A*01:01P", CallKind.P_GROUP),
        ("A*02:XX", "A*02:XX", CallKind.XX),
        ("A*02", "A*02:XX", CallKind.XX),
        ("Cw4", "Cw4", CallKind.SEROLOGY),
        ("c4", "Cw4", CallKind.SEROLOGY),
        ("DR17", "DR17", CallKind.SEROLOGY),
        ("DQ7", "DQ7", CallKind.SEROLOGY),
    ],
)
def test_single_elements_are_read_and_spelled_canonically(reader, text, canonical, kind):
    typing_ = reader.parse(text)
    (call,) = calls(typing_)
    assert (typing_.to_gl(), call.kind) == (canonical, kind)


def test_truncated_name_covers_the_expressed_alleles_sharing_its_fields(reader, index):
    (call,) = calls(reader.parse("A*01:01"))
    names = {index.names[i] for i in call.alleles}
    assert "A*01:01:01:01" in names
    assert all(n.startswith("A*01:01:") for n in names)
    # The WHO rule keeps the suffix on truncation: A*01:01:01:02N is A*01:01N, not A*01:01.
    assert "A*01:01:01:02N" not in names
    assert {index.names[i] for i in calls(reader.parse("A*01:01N"))[0].alleles} == {
        "A*01:01:01:02N"}


def test_xx_code_includes_the_null_alleles_it_can_hide(reader, index):
    (call,) = calls(reader.parse("A*02:XX"))
    names = {index.names[i] for i in call.alleles}
    assert "A*02:32N" in names and "A*02:01:01:01" in names
    assert all(n.startswith("A*02:") for n in names)


def test_allele_list_shorthand_expands_to_full_names(reader):
    assert reader.parse("A*01:06/07").to_gl() == "A*01:06/A*01:07"
    assert reader.parse("A*01:01/01:02+A*24:02").to_gl() == "A*01:01/A*01:02+A*24:02"


def test_broad_antigen_covers_its_splits(reader, index):
    (a9,) = calls(reader.parse("A9"))
    (a24,) = calls(reader.parse("A24"))
    assert set(a24.alleles) < set(a9.alleles)
    assert index.id_of["A*24:02:01:01"] in a9.alleles


def test_antigen_covers_its_associated_antigens(reader, index):
    (a2,) = calls(reader.parse("A2"))
    assert index.id_of["A*02:03:01:01"] in a2.alleles  # A203 is associated with A2


def test_dr51_52_53_are_read_as_drb5_drb3_drb4(reader):
    assert [c.locus for c in calls(reader.parse("DR51^DR52^DR53"))] == ["DRB5", "DRB3", "DRB4"]


def test_renamed_allele_is_read_under_its_current_name_with_a_notice(reader):
    typing_ = reader.parse("A*01:01+A*02:01:08")
    assert typing_.to_gl() == "A*01:01+A*02:1040"
    (notice,) = typing_.notices
    assert notice.token == "A*02:01:08" and notice.position == 9
    assert "renamed A*02:1040" in notice.message


def test_pre_2010_names_are_converted_when_unambiguous(reader):
    typing_ = reader.parse("B*0801+B*15101")
    assert typing_.to_gl() == "B*08:01+B*15:101"
    assert [n.position for n in typing_.notices] == [1, 8]


def test_gl_structure_genotype_lists_and_haplotypes(reader):
    text = "A*01:01~B*08:01+A*02:01~B*44:02|A*01:01~B*44:02+A*02:01~B*08:01"
    typing_ = reader.parse(text)
    assert typing_.to_gl() == text
    assert typing_.loci == ("A", "B")
    assert len(typing_.blocks[0]) == 2


def test_drb345_paralogues_may_pair_in_one_genotype(reader):
    assert reader.parse("DRB3*01:01+DRB4*01:01").loci == ("DRB3", "DRB4")


def test_untyped_loci_are_simply_absent(reader):
    assert reader.parse("A*01:01+A*02:01^DRB1*03:01+DRB1*15:01").loci == ("A", "DRB1")


@pytest.mark.parametrize(
    ("text", "token", "position", "reason"),
    [
        ("A*01:01+A*01:999", "A*01:999", 9, "unknown allele"),
        ("A*01:04", "A*01:04", 1, "did you mean A*01:04N"),
        ("X*01:01", "X*01:01", 1, "unknown locus X"),
        ("A*01:01+B*08:01", "B*08:01", 9, "different loci"),
        ("A*01:01/B*08:01", "B*08:01", 9, "mixes loci A and B"),
        ("A*01:01^A*02:01", "A*02:01", 9, "typed twice"),
        ("A*01:01++A*02:01", "+", 9, "empty element"),
        ("A*01:01+", "+", 8, "empty element"),
        ("A*01:01+A*02:01+A*03:01", "A*03:01", 17, "at most two"),
        ("A*01:01 +A*02:01", " ", 8, "unexpected space"),
        ("A*01:01;A*02:01", ";", 8, "unexpected character"),
        ("A*01:AB", "A*01:AB", 1, "no MAC list has been imported"),
        ("Bw4", "Bw4", 1, "public epitope"),
        ("A99", "A99", 1, "unknown serological antigen"),
        ("A*01:01:01:01:01", "A*01:01:01:01:01", 1, "malformed allele name"),
        ("A*99:99:99G", "A*99:99:99G", 1, "unknown G group"),
        ("A*NEW", "A*NEW", 1, "not yet named"),
        ("A*0105X", "A*0105X", 1, "malformed"),
        ("hello", "hello", 1, "not an HLA allele"),
        ("", "", 1, "empty typing"),
    ],
)
def test_invalid_typings_name_the_token_and_its_position(reader, text, token, position, reason):
    with pytest.raises(TypingError) as info:
        reader.parse(text)
    assert (info.value.token, info.value.position) == (token, position)
    assert reason in info.value.reason
