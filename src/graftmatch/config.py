"""Reading the project's rule files (matching policy, imputation settings, ranking): TOML
checked key by key, with errors that name the file, the key and the value."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection
from importlib import resources
from pathlib import Path
from typing import Any

from graftmatch.errors import GraftmatchError
from graftmatch.nesting import TooDeep, toml_loads


def parse_toml(text: str, source: str, error: type[GraftmatchError]) -> dict[str, Any]:
    try:
        return toml_loads(text)
    except (tomllib.TOMLDecodeError, TooDeep) as exc:
        raise error(f"{source}: not valid TOML: {exc}") from exc


#: A locus as IPD-IMGT/HLA writes it (A, DRB1, DPB1): what a rule file's list of loci holds.
_LOCUS_RE = re.compile(r"^[A-Z][A-Z0-9]*$")


def check_keys(doc: dict[str, Any], known: Collection[str], where: str,
               error: type[GraftmatchError]) -> None:
    """Refuse a key the file format does not have: a misspelt rule would else be ignored."""
    unknown = sorted(set(doc) - set(known))
    if unknown:
        raise error(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(sorted(known))}")


def loci_list(value: list[Any], key: str, where: str, error: type[GraftmatchError], *,
              empty: bool = False) -> tuple[str, ...]:
    """A list of distinct loci written as the release writes them (``A``, ``DRB1``)."""
    if (not value and not empty) or not all(isinstance(x, str) and _LOCUS_RE.match(x)
                                            for x in value) or len(set(value)) != len(value):
        raise error(f"{where}: '{key}' = {value!r} should be a list of distinct loci as the "
                    'release writes them, e.g. ["A", "B", "C", "DRB1"]')
    return tuple(value)


def require(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str,
            error: type[GraftmatchError]) -> Any:
    """``doc[key]``, which must be present and of ``kind`` (a bool is never a number)."""
    if key not in doc:
        raise error(f"{where}: '{key}' is missing")
    value = doc[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        name = "number" if float in kinds else kinds[0].__name__
        raise error(f"{where}: '{key}' = {value!r} should be a {name}")
    return value


def packaged(package: str, name: str) -> str:
    """A rule file shipped inside the package."""
    return resources.files(package).joinpath(name).read_text("utf-8")


def read_rules(path: Path, what: str, error: type[GraftmatchError]) -> str:
    """A site's own rule file."""
    try:
        return path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {what} {path}: {exc}") from exc
