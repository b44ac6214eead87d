"""JSON and TOML reading that a hostile document cannot crash: one nested deeper than Python's
recursion limit (``'[' * 200000``) is refused as a ``ValueError``, which every caller already
reports with the file and place it read, instead of escaping as a ``RecursionError``."""

from __future__ import annotations

import json
import tomllib
from typing import Any


class TooDeep(ValueError):
    """A JSON or TOML document nested too deeply to be read."""

    def __init__(self) -> None:
        super().__init__("nested too deeply (thousands of levels of [ or {)")


def json_loads(text: str | bytes, **options: Any) -> Any:
    """``json.loads(text, **options)``, refusing a document nested too deeply."""
    try:
        return json.loads(text, **options)
    except RecursionError:
        raise TooDeep() from None


def toml_loads(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise TooDeep() from None
