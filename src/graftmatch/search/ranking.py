"""The ranking rules of ``ranking.toml``, read once and checked in full: a rule file that is
accepted is a rule file the search can apply as written."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graftmatch.config import check_keys, loci_list, packaged, parse_toml, read_rules, require
from graftmatch.errors import GraftmatchError

DONOR_CRITERIA = ("mismatches", "probability", "permissive", "age", "dpb1", "class_ii",
                  "direction", "cmv", "abo", "sex")
CORD_CRITERIA = ("group", "dose_target", "mismatches", "hla_c", "tnc_per_kg")
SINGLE_FLOORS = ("and", "or")


class RankingError(GraftmatchError):
    """A ranking file that cannot be used as written."""


@dataclass(frozen=True)
class DoseGroup:
    """Single cord units with exactly ``mismatches`` mismatches and at least ``min_tnc_per_kg``
    belong to ``group`` (lower is better)."""

    group: int
    mismatches: int
    min_tnc_per_kg: float


@dataclass(frozen=True)
class Ranking:
    donor_order: tuple[str, ...]
    core_loci: tuple[str, ...]
    tiebreak_loci: tuple[str, ...]
    probability_bin: float
    #: Lower edges (years) of the age bands after the first.
    age_bands: tuple[float, ...]
    cord_loci: tuple[str, ...]
    cord_max_mismatches: int
    single_min_tnc_per_kg: float
    single_min_cd34_per_kg: float
    single_floor: str
    double_min_tnc_per_kg_each: float
    double_min_cd34_per_kg_each: float
    target_tnc_per_kg: float
    dose_groups: tuple[DoseGroup, ...]
    cord_order: tuple[str, ...]
    #: Where the rules come from, shown with every list of donors and of cord units.
    donor_evidence: str
    cord_evidence: str
    source: str

    def check_loci(self, known: tuple[str, ...]) -> None:
        """The loci named must be loci the search grades: ranking on others would rank every
        donor as matched there."""
        for key, loci in (("[donor] core_loci", self.core_loci),
                          ("[donor] tiebreak_loci", self.tiebreak_loci),
                          ("[cord] loci", self.cord_loci)):
            for locus in loci:
                if locus not in known:
                    raise RankingError(f"{self.source}: {key} names {locus!r}; the search "
                                       f"grades {', '.join(known)}")

    def age_band(self, age: float) -> str:
        """The band of an age as a coordinator reads it: 'under 33', '33-42', '53 and over'."""
        edges = self.age_bands
        i = bisect.bisect_right(edges, age)
        if not edges:
            return "any age"
        if i == 0:
            return f"under {edges[0]:g}"
        if i == len(edges):
            return f"{edges[-1]:g} and over"
        return f"{edges[i - 1]:g}-{edges[i] - 1:g}"


def _get(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    return require(doc, key, kind, where, RankingError)


def _order(value: list[Any], allowed: tuple[str, ...], where: str) -> tuple[str, ...]:
    bad = [v for v in value if v not in allowed]
    if not value or bad or len(set(value)) != len(value):
        raise RankingError(f"{where}: 'order' = {value!r}; use each of {', '.join(allowed)} "
                           "at most once, and at least one")
    return tuple(value)


def _loci(value: list[Any], key: str, where: str, *, empty: bool = False) -> tuple[str, ...]:
    return loci_list(value, key, where, RankingError, empty=empty)


def _number(doc: dict[str, Any], key: str, where: str, *, low: float, high: float,
            positive: bool = False) -> float:
    value = float(_get(doc, key, (int, float), where))
    if not (low < value if positive else low <= value) or not value <= high:
        bound = f"above {low:g}" if positive else f"at least {low:g}"
        raise RankingError(f"{where}: '{key}' = {value!r} should be {bound} and at most "
                           f"{high:g}")
    return value


def _bands(value: list[Any], where: str) -> tuple[float, ...]:
    ok = all(isinstance(x, int | float) and not isinstance(x, bool) and 0 < x < 100
             for x in value)
    if not ok or list(value) != sorted(set(value)):
        raise RankingError(f"{where}: 'age_bands' = {value!r} should be increasing ages in "
                           "years, e.g. [33, 43, 53]")
    return tuple(float(x) for x in value)


def _groups(value: list[Any], where: str, max_mismatches: int) -> tuple[DoseGroup, ...]:
    out = []
    for n, item in enumerate(value, 1):
        at = f"{where} dose_groups[{n}]"
        if not isinstance(item, dict) or set(item) != {"group", "mismatches", "min_tnc_per_kg"}:
            raise RankingError(f"{at} = {item!r} should be {{ group = 1, mismatches = 0, "
                               "min_tnc_per_kg = 2.5 }")
        group = _get(item, "group", int, at)
        mismatches = _get(item, "mismatches", int, at)
        if not 1 <= group <= 99 or not 0 <= mismatches <= max_mismatches:
            raise RankingError(f"{at}: group {group} should be 1-99 and mismatches "
                               f"{mismatches} 0-{max_mismatches} (max_mismatches)")
        out.append(DoseGroup(group, mismatches,
                             _number(item, "min_tnc_per_kg", at, low=0, high=100)))
    if not out:
        raise RankingError(f"{where}: 'dose_groups' is empty; list at least one group")
    return tuple(out)


def parse_ranking(text: str, source: str) -> Ranking:
    doc = parse_toml(text, source, RankingError)
    check_keys(doc, ("donor", "cord"), source, RankingError)
    donor = _get(doc, "donor", dict, source)
    cord = _get(doc, "cord", dict, source)
    wd, wc = f"{source} [donor]", f"{source} [cord]"
    for section, where, known in (
            (donor, wd, {"order", "core_loci", "tiebreak_loci", "probability_bin",
                         "age_bands", "evidence"}),
            (cord, wc, {"loci", "max_mismatches", "single_min_tnc_per_kg",
                        "single_min_cd34_per_kg", "single_floor", "double_min_tnc_per_kg_each",
                        "double_min_cd34_per_kg_each", "target_tnc_per_kg", "dose_groups",
                        "order", "evidence"})):
        check_keys(section, known, where, RankingError)
    max_mm = int(_get(cord, "max_mismatches", int, wc))
    if not 0 <= max_mm <= 8:
        raise RankingError(f"{wc}: 'max_mismatches' = {max_mm} should be 0 to 8")
    single_floor = _get(cord, "single_floor", str, wc)
    if single_floor not in SINGLE_FLOORS:
        raise RankingError(f"{wc}: 'single_floor' = {single_floor!r}; expected and or or")
    single_tnc = _number(cord, "single_min_tnc_per_kg", wc, low=0, high=100)
    double_tnc = _number(cord, "double_min_tnc_per_kg_each", wc, low=0, high=100)
    if double_tnc > single_tnc:
        raise RankingError(f"{wc}: 'double_min_tnc_per_kg_each' = {double_tnc:g} is above "
                           f"'single_min_tnc_per_kg' = {single_tnc:g}")
    return Ranking(
        donor_order=_order(_get(donor, "order", list, wd), DONOR_CRITERIA, wd),
        core_loci=_loci(_get(donor, "core_loci", list, wd), "core_loci", wd),
        tiebreak_loci=_loci(_get(donor, "tiebreak_loci", list, wd), "tiebreak_loci", wd,
                            empty=True),
        probability_bin=_number(donor, "probability_bin", wd, low=0, high=1, positive=True),
        age_bands=_bands(_get(donor, "age_bands", list, wd), wd),
        cord_loci=_loci(_get(cord, "loci", list, wc), "loci", wc),
        cord_max_mismatches=max_mm,
        single_min_tnc_per_kg=single_tnc,
        single_min_cd34_per_kg=_number(cord, "single_min_cd34_per_kg", wc, low=0, high=100),
        single_floor=single_floor,
        double_min_tnc_per_kg_each=double_tnc,
        double_min_cd34_per_kg_each=_number(cord, "double_min_cd34_per_kg_each", wc, low=0,
                                            high=100),
        target_tnc_per_kg=_number(cord, "target_tnc_per_kg", wc, low=0, high=100,
                                  positive=True),
        dose_groups=_groups(_get(cord, "dose_groups", list, wc), wc, max_mm),
        cord_order=_order(_get(cord, "order", list, wc), CORD_CRITERIA, wc),
        donor_evidence=_get(donor, "evidence", str, wd).strip(),
        cord_evidence=_get(cord, "evidence", str, wc).strip(),
        source=source,
    )


def default_ranking() -> Ranking:
    return parse_ranking(packaged("graftmatch.search", "ranking.toml"),
                         "ranking.toml (built in)")


def load_ranking(path: Path) -> Ranking:
    return parse_ranking(read_rules(path, "ranking file", RankingError), str(path))
