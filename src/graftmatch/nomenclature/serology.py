"""Serological antigen names and their molecular loci.

Serology uses its own locus names (``Cw`` for C, ``DR`` for DRB1/3/4/5, ``DQ`` for DQB1, ``DPw``
for DPB1). The DR51/52/53 antigens are the products of DRB5, DRB3 and DRB4 (WHO Nomenclature
Committee, ``rel_dna_ser.txt``).
"""

from __future__ import annotations

import re

#: Molecular locus -> serological locus prefix used in antigen names.
SEROLOGICAL_PREFIX: dict[str, str] = {
    "A": "A",
    "B": "B",
    "C": "Cw",
    "DRB1": "DR",
    "DRB3": "DR",
    "DRB4": "DR",
    "DRB5": "DR",
    "DQB1": "DQ",
    "DPB1": "DPw",
}
#: DR antigens encoded outside DRB1.
_DR_PARALOGUES = {"51": "DRB5", "52": "DRB3", "53": "DRB4"}
#: rel_ser_ser.txt locus column -> antigen-name prefix.
REL_SER_SER_PREFIX = {"A": "A", "B": "B", "Cw": "Cw", "DR": "DR", "DQ": "DQ"}

_ANTIGEN_RE = re.compile(r"^(?:HLA-)?(A|B|CW|C|DR|DQ|DPW|DP)(\d{1,4})$", re.IGNORECASE)
_CANONICAL_PREFIX = {"A": "A", "B": "B", "CW": "Cw", "C": "Cw", "DR": "DR", "DQ": "DQ",
                     "DPW": "DPw", "DP": "DPw"}
#: Public epitopes: real serological reactions, but not antigens of a single locus.
PUBLIC_EPITOPES = frozenset({"BW4", "BW6"})


def antigen_name(locus: str, number: str) -> str | None:
    """``antigen_name("C", "4") == "Cw4"``; None for loci without serology (DQA1, DPA1...)."""
    prefix = SEROLOGICAL_PREFIX.get(locus)
    return f"{prefix}{number}" if prefix else None


def parse_antigen(token: str) -> tuple[str, str] | None:
    """Read a serological antigen: ``"cw4"`` -> ``("Cw4", "C")``; None if not one.

    The molecular locus of a DR antigen depends on its number (DR51 is DRB5).
    """
    m = _ANTIGEN_RE.match(token)
    if not m:
        return None
    prefix = _CANONICAL_PREFIX[m.group(1).upper()]
    number = m.group(2).lstrip("0") or "0"
    if prefix == "DR":
        locus = _DR_PARALOGUES.get(number, "DRB1")
    else:
        locus = {"A": "A", "B": "B", "Cw": "C", "DQ": "DQB1", "DPw": "DPB1"}[prefix]
    return f"{prefix}{number}", locus
