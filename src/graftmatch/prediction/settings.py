"""Imputation settings: the thresholds of ``imputation.toml``, read once and checked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graftmatch.config import check_keys, loci_list, packaged, parse_toml, read_rules
from graftmatch.errors import GraftmatchError


class SettingsError(GraftmatchError):
    """An imputation settings file that cannot be used as written."""


@dataclass(frozen=True, slots=True)
class ImputationSettings:
    min_posterior: float
    max_genotypes: int
    fallback_blocks: tuple[tuple[str, ...], ...]
    unrepresented_factor: float
    max_alternatives: int
    max_join_pairs: int
    source: str


#: key -> (lowest, highest, whole number): the range each threshold is read in. Outside it the
#: arithmetic breaks (a factor of 1e-300 underflows to no probability at all) or memory does
#: (a join of more pairs than the machine holds).
_RANGES: dict[str, tuple[float, float, bool]] = {
    "min_posterior": (1e-15, 1.0, False),
    "max_genotypes": (1, 10_000_000, True),
    "unrepresented_factor": (1e-6, 1.0, False),
    "max_alternatives": (1, 100_000, True),
    "max_join_pairs": (1, 1_000_000_000, True),
}


def _number(doc: dict[str, Any], key: str, source: str) -> Any:
    low, high, integer = _RANGES[key]
    value = doc.get(key)
    kind = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        name = "a whole number" if integer else "a number"
        raise SettingsError(f"{source}: '{key}' = {value!r} should be {name} from {low:g} to "
                            f"{high:g}")
    return value


def _blocks(doc: dict[str, Any], source: str) -> tuple[tuple[str, ...], ...]:
    blocks = doc.get("fallback_blocks")
    if not isinstance(blocks, list) or not all(isinstance(b, list) for b in blocks):
        raise SettingsError(f"{source}: 'fallback_blocks' = {blocks!r} should be a list of "
                            "lists of loci")
    out = tuple(loci_list(b, f"fallback_blocks[{n}]", source, SettingsError)
                for n, b in enumerate(blocks))
    named = [locus for block in out for locus in block]
    twice = sorted({locus for locus in named if named.count(locus) > 1})
    if twice:
        raise SettingsError(f"{source}: 'fallback_blocks' puts {twice[0]} in two blocks")
    return out


def parse_settings(text: str, source: str) -> ImputationSettings:
    doc = parse_toml(text, source, SettingsError)
    check_keys(doc, (*_RANGES, "fallback_blocks"), source, SettingsError)
    return ImputationSettings(
        min_posterior=float(_number(doc, "min_posterior", source)),
        max_genotypes=_number(doc, "max_genotypes", source),
        fallback_blocks=_blocks(doc, source),
        unrepresented_factor=float(_number(doc, "unrepresented_factor", source)),
        max_alternatives=_number(doc, "max_alternatives", source),
        max_join_pairs=_number(doc, "max_join_pairs", source),
        source=source,
    )


def default_settings() -> ImputationSettings:
    return parse_settings(packaged("graftmatch.prediction", "imputation.toml"),
                          "imputation.toml (built in)")


def load_settings(path: Path) -> ImputationSettings:
    return parse_settings(read_rules(path, "imputation settings", SettingsError), str(path))
