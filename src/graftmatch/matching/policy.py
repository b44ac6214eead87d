"""The matching policy: the rules of ``policy.toml``, read once and checked.

Every rule a physician may want to check lives in that one file with its source; this module only
reads it (or a site's own copy) and refuses values it does not understand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graftmatch.config import check_keys, loci_list, packaged, parse_toml, read_rules, require
from graftmatch.errors import GraftmatchError
from graftmatch.typing.parser import PARALOGUES

LEVELS = ("P", "G")
TCE_ASSIGNMENTS = ("V1", "V2")
ANTIGEN_LEVELS = ("split", "broad")
_TWO_FIELDS = re.compile(r"^[A-Z0-9]+\*\d{2,4}:\d{2,4}$")
#: A DRB1 allele name cut on a field boundary, without expression suffix.
_DRB1_PREFIX_RE = re.compile(r"^DRB1\*\d{2,3}(:\d{2,3}){0,3}$")


class PolicyError(GraftmatchError):
    """A matching policy file that cannot be used as written."""


@dataclass(frozen=True, slots=True)
class MatchPolicy:
    level: str
    graded_loci: tuple[str, ...]
    counted_loci: tuple[str, ...]
    mixed_null_lists: str
    #: "split" (WMDA SI2) or "broad": the antigen level at which a mismatch is antigen-level.
    antigen_mismatch_level: str
    #: Pairs of 2-field allele names whose mismatch is reported as permissive.
    permissive_mismatches: tuple[tuple[str, str], ...]
    tce_assignment: str
    tce_group_2a: str
    tce_use_inferred: bool
    #: Read an untyped DRB3/4/5 gene as absent when the side's DRB1 alleles imply it.
    drb345_from_drb1: bool
    #: DRB1 allele prefix -> the DRB3/4/5 genes its haplotype carries (``[drb345.carriers]``).
    drb345_carriers: tuple[tuple[str, frozenset[str]], ...]
    source: str


def _get(doc: dict[str, Any], key: str, kind: type, where: str) -> Any:
    return require(doc, key, kind, where, PolicyError)


def _choice(value: str, allowed: tuple[str, ...], key: str, where: str) -> str:
    if value not in allowed:
        raise PolicyError(f"{where}: '{key}' = {value!r}; expected one of {', '.join(allowed)}")
    return value


def _loci(value: list[Any], key: str, where: str) -> tuple[str, ...]:
    return loci_list(value, key, where, PolicyError)


def _pairs(value: list[Any], where: str) -> tuple[tuple[str, str], ...]:
    out = []
    for n, pair in enumerate(value, 1):
        ok = (isinstance(pair, list) and len(pair) == 2
              and all(isinstance(x, str) and _TWO_FIELDS.match(x) for x in pair)
              and pair[0] != pair[1] and pair[0].split("*")[0] == pair[1].split("*")[0])
        if not ok:
            raise PolicyError(f"{where}: 'permissive_mismatches' entry {n} = {pair!r} should be "
                              'two different 2-field alleles of one locus, e.g. ["C*03:03", '
                              '"C*03:04"]')
        out.append((pair[0], pair[1]))
    return tuple(out)


def _carriers(table: dict[str, Any], where: str) -> tuple[tuple[str, frozenset[str]], ...]:
    out = []
    for key, value in table.items():
        if not _DRB1_PREFIX_RE.match(key):
            raise PolicyError(f"{where}: key {key!r} should be a DRB1 allele or allele group "
                              "such as 'DRB1*14' or 'DRB1*14:54'")
        if (not isinstance(value, list) or not all(v in PARALOGUES for v in value)
                or len(set(value)) != len(value)):
            raise PolicyError(f"{where}: '{key}' = {value!r} should be a list of distinct loci "
                              f"among {', '.join(sorted(PARALOGUES))}")
        out.append((key, frozenset(value)))
    return tuple(out)


def parse_policy(text: str, source: str) -> MatchPolicy:
    doc = parse_toml(text, source, PolicyError)
    check_keys(doc, ("level", "graded_loci", "counted_loci", "mixed_null_lists",
                     "antigen_mismatch_level", "permissive_mismatches", "dpb1_tce", "drb345"),
               source, PolicyError)
    tce = _get(doc, "dpb1_tce", dict, source)
    where_tce = f"{source} [dpb1_tce]"
    check_keys(tce, ("assignment", "group_2a", "use_inferred"), where_tce, PolicyError)
    drb = _get(doc, "drb345", dict, source)
    where_drb = f"{source} [drb345]"
    check_keys(drb, ("read_absence_from_drb1", "carriers"), where_drb, PolicyError)
    return MatchPolicy(
        level=_choice(_get(doc, "level", str, source), LEVELS, "level", source),
        graded_loci=_loci(_get(doc, "graded_loci", list, source), "graded_loci", source),
        counted_loci=_loci(_get(doc, "counted_loci", list, source), "counted_loci", source),
        mixed_null_lists=_choice(_get(doc, "mixed_null_lists", str, source),
                                 ("expressing", "keep"), "mixed_null_lists", source),
        antigen_mismatch_level=_choice(_get(doc, "antigen_mismatch_level", str, source),
                                       ANTIGEN_LEVELS, "antigen_mismatch_level", source),
        permissive_mismatches=_pairs(_get(doc, "permissive_mismatches", list, source), source),
        tce_assignment=_choice(_get(tce, "assignment", str, where_tce), TCE_ASSIGNMENTS,
                               "assignment", where_tce),
        tce_group_2a=_choice(_get(tce, "group_2a", str, where_tce), ("2", "3"), "group_2a",
                             where_tce),
        tce_use_inferred=_get(tce, "use_inferred", bool, where_tce),
        drb345_from_drb1=_get(drb, "read_absence_from_drb1", bool, where_drb),
        drb345_carriers=_carriers(_get(drb, "carriers", dict, where_drb),
                                  f"{source} [drb345.carriers]"),
        source=source,
    )


def default_policy() -> MatchPolicy:
    return parse_policy(packaged("graftmatch.matching", "policy.toml"),
                        "graftmatch default policy")


def load_policy(path: Path) -> MatchPolicy:
    return parse_policy(read_rules(path, "matching policy", PolicyError), str(path))
