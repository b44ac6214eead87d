"""The matching policy: the rules of ``policy.toml``, read once and checked.

Every rule a physician may want to check lives in that one file with its source; this module only
reads it (or a site's own copy) and refuses values it does not understand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graftmatch.config import packaged, parse_toml, read_rules, require
from graftmatch.errors import GraftmatchError

LEVELS = ("P", "G")
TCE_ASSIGNMENTS = ("V1", "V2")
ANTIGEN_LEVELS = ("split", "broad")
_TWO_FIELDS = re.compile(r"^[A-Z0-9]+\*\d{2,4}:\d{2,4}$")


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
    source: str


def _get(doc: dict[str, Any], key: str, kind: type, where: str) -> Any:
    return require(doc, key, kind, where, PolicyError)


def _choice(value: str, allowed: tuple[str, ...], key: str, where: str) -> str:
    if value not in allowed:
        raise PolicyError(f"{where}: '{key}' = {value!r}; expected one of {', '.join(allowed)}")
    return value


def _loci(value: list[Any], key: str, where: str) -> tuple[str, ...]:
    if not value or not all(isinstance(x, str) and x for x in value):
        raise PolicyError(f"{where}: '{key}' = {value!r} should be a non-empty list of loci")
    return tuple(value)


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


def parse_policy(text: str, source: str) -> MatchPolicy:
    doc = parse_toml(text, source, PolicyError)
    tce = _get(doc, "dpb1_tce", dict, source)
    where_tce = f"{source} [dpb1_tce]"
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
        source=source,
    )


def default_policy() -> MatchPolicy:
    return parse_policy(packaged("graftmatch.matching", "policy.toml"),
                        "graftmatch default policy")


def load_policy(path: Path) -> MatchPolicy:
    return parse_policy(read_rules(path, "matching policy", PolicyError), str(path))
