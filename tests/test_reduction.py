"""Reductions worked out by hand from the 3.58.0 files (hla_nom_g/p, rel_dna_ser, rel_ser_ser)."""

from __future__ import annotations

import pytest

from graftmatch.nomenclature.reduce import Level, Reducer
from tests.conftest import read_wmda


def reduce(reader, text: str, level: Level) -> str:
    return Reducer(reader, level).reduce_typing(reader.parse(text))


@pytest.mark.parametrize(
    ("typing_", "level", "expected"),
    [
        # B*44:02:01:01: G group B*44:02:01G, P group B*44:02P; rel_dna_ser says 44 and
        # rel_ser_ser makes B44 a split of B12.
        ("B*44:02:01:01", Level.G, "B*44:02:01G"),
        ("B*44:02:01:01", Level.P, "B*44:02P"),
        ("B*44:02:01:01", Level.LGX, "B*44:02"),
        ("B*44:02:01:01", Level.SEROLOGY, "B12/B44"),
        # A null in an expressed allele's G group: same G and lgx, but no P group and no antigen.
        ("A*01:01:01:02N", Level.G, "A*01:01:01G"),
        ("A*01:01:01:02N", Level.P, "A*01:01:01:02N"),
        ("A*01:01:01:02N", Level.LGX, "A*01:01"),
        ("A*01:01:01:02N", Level.SEROLOGY, "A*01:01:01:02N"),
        # C*02:10:01G holds C*02:02:37, its lowest member: lgx is C*02:02 (DOMAIN.md §1.2).
        ("C*02:10:01:01", Level.G, "C*02:10:01G"),
        ("C*02:10:01:01", Level.LGX, "C*02:02"),
        ("DRB1*14:54:01:01", Level.LGX, "DRB1*14:01"),
        # A203 is an associated antigen of A2; B*15:01 is B62, a split of B15.
        ("A*02:03:01:01", Level.SEROLOGY, "A203"),
        ("B*15:01:01:01", Level.SEROLOGY, "B15/B62"),
        ("DRB3*01:01:02:01", Level.SEROLOGY, "DR52"),
        # Allele lists reduce element by element; copies come out sorted.
        ("A*24:02+A*01:01/A*01:02", Level.P, "A*01:01P/A*01:02P+A*24:02P"),
        ("A*01:01/A*01:02/A*01:03/A*01:16N", Level.SEROLOGY, "A1/A*01:16N"),
        ("A*24:02+A*01:01", Level.SEROLOGY, "A1+A9/A24"),
        ("DRB1*03:01+DRB1*15:01", Level.SEROLOGY, "DR2/DR15+DR3/DR17"),
    ],
)
def test_hand_worked_reductions(reader, typing_, level, expected):
    assert reduce(reader, typing_, level) == expected


def test_a_two_field_name_spanning_several_g_groups_reduces_to_all_of_them(reader):
    # A*01:01:02 is in no G group (hla_nom_g.txt lists it alone), so A*01:01 is not just
    # A*01:01:01G at G level.
    groups = reduce(reader, "A*01:01", Level.G).split("/")
    assert groups[0] == "A*01:01:01G" and "A*01:01:02" in groups


def test_a_serological_typing_reduces_to_the_alleles_it_may_be(reader):
    assert reduce(reader, "DR17", Level.LGX).startswith("DRB1*03:01/")
    assert "DRB1*15:01" not in reduce(reader, "DR17", Level.LGX)


@pytest.mark.parametrize("level", [Level.LGX, Level.P, Level.G, Level.SEROLOGY])
def test_fast_path_equals_the_full_parser_on_every_wmda_typing(reader, level):
    typings = [gl for _, gl in read_wmda("don.gl.txt.gz")[:3000] + read_wmda("pat.gl.txt.gz")]
    fast = Reducer(reader, level)
    slow = Reducer(reader, level)
    for gl in typings:
        assert fast.reduce_gl(gl) == slow.reduce_typing(reader.parse(gl)), gl
