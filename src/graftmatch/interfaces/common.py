"""What every command shares: consoles, exit codes, error reporting, the typing reader."""

from __future__ import annotations

import json
import math
import sys

import typer
from rich.console import Console
from rich.markup import escape

from graftmatch.errors import GraftmatchError, ReleaseError, TypingError
from graftmatch.nomenclature import release as releases
from graftmatch.nomenclature.mac import load_mac_table
from graftmatch.typing.parser import TypingReader

# No emoji codes (":AB" in A*01:AB is one) and no highlighting: typings print verbatim. Output
# to a file or pipe is not squeezed to 80 columns: tables of typings stay readable there.
out = Console(emoji=False, highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, emoji=False, highlight=False)

#: Exit codes: 1 = the input is invalid (a typing, a file); 2 = the set-up is (no release...).
EXIT_INVALID = 1
EXIT_SETUP = 2


def fail(exc: GraftmatchError, as_json: bool = False) -> typer.Exit:
    code = EXIT_SETUP if isinstance(exc, ReleaseError) else EXIT_INVALID
    if as_json:
        payload = exc.to_dict() if isinstance(exc, TypingError) else {"error": str(exc)}
        out.print_json(json.dumps({"valid": False, **payload}))
    else:
        # Escaped: a message naming "[drb345]" or "[cord]" would otherwise lose it as markup.
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True,
                  soft_wrap=True)
    return typer.Exit(code)


def json_text(doc: object) -> str:
    """Strict JSON: a number JSON cannot carry (infinity, NaN) is an error naming where it is,
    never ``Infinity`` in the output."""
    try:
        return json.dumps(doc, allow_nan=False)
    except ValueError:
        found = _non_finite(doc, "")
        if found is None:
            raise
        raise GraftmatchError(f"the output holds a number JSON cannot carry at {found[0]} "
                              f"({found[1]!r})") from None


def _non_finite(doc: object, where: str) -> tuple[str, float] | None:
    if isinstance(doc, float):
        return None if math.isfinite(doc) else (where, doc)
    if isinstance(doc, dict):
        items = [(f"{where}.{key}" if where else str(key), value) for key, value in doc.items()]
    elif isinstance(doc, list | tuple):
        items = [(f"{where}[{i}]", value) for i, value in enumerate(doc)]
    else:
        return None
    for path, value in items:
        if found := _non_finite(value, path):
            return found
    return None


def open_reader() -> TypingReader:
    """A typing reader on the active release, with the user's MAC list if imported."""
    index = releases.load_index()
    return TypingReader(index, load_mac_table(releases.home_dir()))
