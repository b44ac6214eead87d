"""Reading the project's rule files (matching policy, imputation settings, ranking): TOML
checked key by key, with errors that name the file, the key and the value."""

from __future__ import annotations

import tomllib
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
