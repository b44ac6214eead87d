"""What every application service shares: the progress and notice callbacks, strict JSON.

The services (:mod:`graftmatch.services`) are the one layer the CLI, the API and the web pages
call. A service opens what a job needs (the release, a registry, a frequency set), runs it and
hands back plain data (dataclasses with ``to_dict()``, JSON-ready). It prints nothing, imports
no interface (Typer, Rich, FastAPI), raises :class:`graftmatch.errors.GraftmatchError`
subclasses with messages that name the field, and reports long work through a
:data:`Progress` callback. The conventions: ``docs/adr/0007-application-services.md``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

from graftmatch.errors import GraftmatchError

#: ``progress(stage, done, total)``: long work says what it is doing (``stage``, e.g.
#: "importing donors.csv"), how many units are done and how many there are in all (None: not
#: known). Called often; an interface draws a bar, an API route records it for polling.
Progress = Callable[[str, int, int | None], None]

#: ``notify(message)``: something the user should see while the work goes on (e.g. that it
#: waits for another process). Results carry everything else.
Notify = Callable[[str], None]


def no_progress(stage: str, done: int, total: int | None) -> None:
    """The default :data:`Progress`: report nothing."""


def no_notice(message: str) -> None:
    """The default :data:`Notify`: say nothing."""


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
