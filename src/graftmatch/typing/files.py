"""Reading files of identified typings: one person per line.

Accepted layouts, detected from the first data line:

* ``ID%GL`` (the WMDA validation study and GRIMM layout);
* ``ID,GL`` or ``ID<TAB>GL``, with an optional header line whose first field is ``id``;
* JSON Lines, ``{"id": ..., "gl": ...}``.

Files may be gzip-compressed (``.gz``). Lines starting with ``#`` and blank lines are skipped.
Every problem names the file, the line and the field; duplicate identifiers are refused.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from graftmatch.errors import GraftmatchError, TypingError
from graftmatch.nesting import json_loads
from graftmatch.typing.model import Typing
from graftmatch.typing.parser import TypingReader


class TypingFileError(GraftmatchError):
    """A line of a typing file that cannot be used; names the file, line and field."""

    def __init__(self, path: Path, line: int, field: str, reason: str) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.reason = reason
        super().__init__(f"{path} line {line}, {field}: {reason}")


def _open(path: Path) -> IO[str]:
    try:
        if path.suffix == ".gz":
            return gzip.open(path, "rt", encoding="utf-8")
        return path.open(encoding="utf-8")
    except OSError as exc:
        raise GraftmatchError(f"cannot read {path}: {exc}") from exc


def read_lines(path: Path) -> Iterator[tuple[int, str, str]]:
    """``(line number, id, GL String)`` for each record, without parsing the typings."""
    layout: str | None = None
    seen: dict[str, int] = {}
    with _open(path) as handle:
        try:
            for number, raw in enumerate(handle, 1):
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                if layout is None:
                    layout = ("json" if line.startswith("{") else "%" if "%" in line
                              else "\t" if "\t" in line else "," if "," in line else "")
                    if not layout:
                        raise TypingFileError(path, number, "layout",
                                              "expected 'ID%GL', 'ID,GL', 'ID<TAB>GL' or JSON "
                                              f"Lines, got {line[:60]!r}")
                    if layout in ",\t" and line.split(layout, 1)[0].strip().lower() == "id":
                        continue  # header
                ident, gl = _record(path, number, line, layout)
                if ident in seen:
                    raise TypingFileError(path, number, "id",
                                          f"{ident!r} already used on line {seen[ident]}")
                seen[ident] = number
                yield number, ident, gl
        except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
            raise GraftmatchError(f"cannot read {path}: {exc}") from exc
    if layout is None:
        raise TypingFileError(path, 0, "file", "no typings in the file")


def _record(path: Path, number: int, line: str, layout: str) -> tuple[str, str]:
    if layout == "json":
        try:
            doc = json_loads(line)
        except ValueError as exc:
            raise TypingFileError(path, number, "line", f"not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise TypingFileError(path, number, "line", "expected a JSON object")
        ident, gl = doc.get("id"), doc.get("gl")
        if not isinstance(ident, str | int) or isinstance(ident, bool):
            raise TypingFileError(path, number, "id", f"missing or not text: {ident!r}")
        if not isinstance(gl, str):
            raise TypingFileError(path, number, "gl", f"missing or not text: {gl!r}")
        return str(ident), gl
    parts = line.split(layout)
    if len(parts) != 2:
        raise TypingFileError(path, number, "line",
                              f"expected 2 fields separated by {layout!r}, got {len(parts)}")
    ident, gl = parts[0].strip(), parts[1].strip()
    if not ident:
        raise TypingFileError(path, number, "id", "empty identifier")
    return ident, gl


def read_typings(path: Path, reader: TypingReader) -> Iterator[tuple[str, Typing]]:
    """Parse each record; a bad typing stops the read with its file, line, id and token."""
    for number, ident, gl in read_lines(path):
        try:
            yield ident, reader.parse(gl)
        except TypingError as exc:
            raise TypingFileError(
                path, number, f"typing of {ident}",
                f"{exc.reason}: {exc.token!r} at position {exc.position}") from exc


def read_pairs(path: Path) -> Iterator[tuple[int, str, str]]:
    """``(line number, patient id, donor id)`` from a pairs file: two identifiers per line,
    separated by a comma, a tab or ``%``, with an optional header (``patient,donor``)."""
    with _open(path) as handle:
        try:
            first = True
            for number, raw in enumerate(handle, 1):
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                sep = "," if "," in line else "\t" if "\t" in line else "%"
                parts = [p.strip() for p in line.split(sep)]
                if len(parts) != 2 or not all(parts):
                    raise TypingFileError(path, number, "line",
                                          f"expected 'patient,donor', got {line[:60]!r}")
                if first and parts[0].lower() in ("patient", "patient_id", "id"):
                    first = False
                    continue
                first = False
                yield number, parts[0], parts[1]
        except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
            raise GraftmatchError(f"cannot read {path}: {exc}") from exc
