"""Imputation settings: the thresholds of ``imputation.toml``, read once and checked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graftmatch.config import packaged, parse_toml, read_rules
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


def _number(doc: dict[str, Any], key: str, source: str, *, integer: bool = False,
            upper: float | None = None) -> Any:
    value = doc.get(key)
    kind = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0 \
            or (upper is not None and value >= upper):
        bound = f" and below {upper}" if upper is not None else ""
        raise SettingsError(f"{source}: '{key}' = {value!r} should be a number above 0{bound}")
    return value


def parse_settings(text: str, source: str) -> ImputationSettings:
    doc = parse_toml(text, source, SettingsError)
    blocks = doc.get("fallback_blocks")
    if not isinstance(blocks, list) or not all(
            isinstance(b, list) and b and all(isinstance(x, str) for x in b) for b in blocks):
        raise SettingsError(f"{source}: 'fallback_blocks' = {blocks!r} should be a list of "
                            "lists of loci")
    return ImputationSettings(
        min_posterior=float(_number(doc, "min_posterior", source, upper=1)),
        max_genotypes=_number(doc, "max_genotypes", source, integer=True),
        fallback_blocks=tuple(tuple(b) for b in blocks),
        unrepresented_factor=float(_number(doc, "unrepresented_factor", source)),
        max_alternatives=_number(doc, "max_alternatives", source, integer=True),
        max_join_pairs=_number(doc, "max_join_pairs", source, integer=True),
        source=source,
    )


def default_settings() -> ImputationSettings:
    return parse_settings(packaged("graftmatch.prediction", "imputation.toml"),
                          "imputation.toml (built in)")


def load_settings(path: Path) -> ImputationSettings:
    return parse_settings(read_rules(path, "imputation settings", SettingsError), str(path))
