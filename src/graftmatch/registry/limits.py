"""The plausible ranges of ``limits.toml``, read once and checked in full: a record value outside
them refuses its record, with the bound and the file it comes from in the reason."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graftmatch.config import packaged, parse_toml, read_rules, require
from graftmatch.errors import GraftmatchError

#: The number ranges of ``limits.toml``: table -> what its numbers mean, for messages.
RANGES = {
    "donor_age": "adult donors are listed from {min:g} to {max:g} years",
    "tnc_1e7": "total nucleated cells in units of 10^7: 150 means 1.5 x 10^9 cells",
    "cd34_1e5": "CD34+ cells in units of 10^5",
    "volume_ml": "millilitres",
}
TEXT = ("hla_max_characters", "name_max_characters", "line_max_characters")


class LimitsError(GraftmatchError):
    """A limits file that cannot be used as written."""


@dataclass(frozen=True)
class Range:
    table: str
    min: float
    max: float

    def meaning(self) -> str:
        return RANGES[self.table].format(min=self.min, max=self.max)


@dataclass(frozen=True)
class Limits:
    ranges: dict[str, Range]
    hla_max_characters: int
    name_max_characters: int
    line_max_characters: int
    #: Where the limits come from, named in every refusal.
    source: str

    def cite(self, table: str) -> str:
        return f"{self.source} [{table}]"


def parse_limits(text: str, source: str) -> Limits:
    doc = parse_toml(text, source, LimitsError)
    ranges = {}
    for table in RANGES:
        section = require(doc, table, dict, source, LimitsError)
        where = f"{source}: [{table}]"
        low, high = (_finite(section, key, where) for key in ("min", "max"))
        if low > high:
            raise LimitsError(f"{where}: 'min' = {low:g} is above 'max' = {high:g}")
        ranges[table] = Range(table, low, high)
    text_limits = require(doc, "text", dict, source, LimitsError)
    sizes = {}
    for key in TEXT:
        value = require(text_limits, key, int, f"{source}: [text]", LimitsError)
        if value < 1:
            raise LimitsError(f"{source}: [text]: '{key}' = {value} should be at least 1")
        sizes[key] = value
    if sizes["line_max_characters"] < sizes["hla_max_characters"]:
        raise LimitsError(f"{source}: [text]: 'line_max_characters' should be at least "
                          "'hla_max_characters'")
    return Limits(ranges, **sizes, source=source)


def _finite(section: dict[str, Any], key: str, where: str) -> float:
    value = require(section, key, (int, float), where, LimitsError)
    if not math.isfinite(value):
        raise LimitsError(f"{where}: '{key}' = {value!r} should be a finite number")
    return float(value)


def default_limits() -> Limits:
    return parse_limits(packaged("graftmatch.registry", "limits.toml"),
                        "limits.toml (built in)")


def load_limits(path: Path) -> Limits:
    return parse_limits(read_rules(path, "limits file", LimitsError), str(path))
