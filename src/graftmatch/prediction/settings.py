"""Imputation settings: the thresholds of ``imputation.toml``, read once and checked."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

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
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{source}: not valid TOML: {exc}") from exc
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
    text = resources.files("graftmatch.prediction").joinpath("imputation.toml").read_text()
    return parse_settings(text, "imputation.toml (built in)")


def load_settings(path: Path) -> ImputationSettings:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read imputation settings {path}: {exc}") from exc
    return parse_settings(text, str(path))
