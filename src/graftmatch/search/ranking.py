"""The ranking rules of ``ranking.toml``, read once and checked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graftmatch.config import packaged, parse_toml, read_rules, require
from graftmatch.errors import GraftmatchError

DONOR_CRITERIA = ("mismatches", "probability", "age", "dpb1", "cmv", "sex", "abo")
CORD_CRITERIA = ("mismatches", "dose_target", "tnc_per_kg")


class RankingError(GraftmatchError):
    """A ranking file that cannot be used as written."""


@dataclass(frozen=True)
class Ranking:
    donor_order: tuple[str, ...]
    probability_bin: float
    age_bin_years: float
    cord_loci: tuple[str, ...]
    cord_max_mismatches: int
    target_tnc_per_kg: float
    min_tnc_per_kg: float
    min_cd34_per_kg: float
    double_min_tnc_per_kg_each: float
    cord_order: tuple[str, ...]
    source: str


def _get(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    return require(doc, key, kind, where, RankingError)


def _order(value: list[Any], allowed: tuple[str, ...], where: str) -> tuple[str, ...]:
    bad = [v for v in value if v not in allowed]
    if bad or len(set(value)) != len(value):
        raise RankingError(f"{where}: 'order' = {value!r}; use each of {', '.join(allowed)} "
                           "at most once")
    return tuple(value)


def parse_ranking(text: str, source: str) -> Ranking:
    doc = parse_toml(text, source, RankingError)
    donor = _get(doc, "donor", dict, source)
    cord = _get(doc, "cord", dict, source)
    wd, wc = f"{source} [donor]", f"{source} [cord]"
    number = (int, float)
    return Ranking(
        donor_order=_order(_get(donor, "order", list, wd), DONOR_CRITERIA, wd),
        probability_bin=float(_get(donor, "probability_bin", number, wd)),
        age_bin_years=float(_get(donor, "age_bin_years", number, wd)),
        cord_loci=tuple(_get(cord, "loci", list, wc)),
        cord_max_mismatches=int(_get(cord, "max_mismatches", int, wc)),
        target_tnc_per_kg=float(_get(cord, "target_tnc_per_kg", number, wc)),
        min_tnc_per_kg=float(_get(cord, "min_tnc_per_kg", number, wc)),
        min_cd34_per_kg=float(_get(cord, "min_cd34_per_kg", number, wc)),
        double_min_tnc_per_kg_each=float(_get(cord, "double_min_tnc_per_kg_each", number, wc)),
        cord_order=_order(_get(cord, "order", list, wc), CORD_CRITERIA, wc),
        source=source,
    )


def default_ranking() -> Ranking:
    return parse_ranking(packaged("graftmatch.search", "ranking.toml"),
                         "ranking.toml (built in)")


def load_ranking(path: Path) -> Ranking:
    return parse_ranking(read_rules(path, "ranking file", RankingError), str(path))
