"""Reading registry files: donors and cord blood units, one record at a time.

Layouts, told apart by the first character of the file (gzip-compressed files are recognised by
their content too, whatever their name):

* CSV with a header row (``[``/``{`` cannot start one): the columns are the record fields
  (:data:`COLUMNS`) plus ``type`` (``donor``, the default, or ``cord``) and ``action``
  (``upsert``, the default, or ``delete``). An empty cell means "not given". The header is line
  1; a record is numbered by the file line it starts on.
* JSON Lines (first character ``{``): one object per line with the same keys; ``null`` or
  ``""`` means "not given".
* A JSON array of such objects (first character ``[``): read whole, so meant for small files;
  its records are numbered ``record 1``, ``record 2``... in errors.

CSV and JSON Lines are streamed, so a registry of millions of donors is read in constant
memory. A bad record is reported as :class:`Rejected` and reading goes on: the caller gathers
the rejections into an error report for the registry. Only what dooms every record (an
unknown column, an unreadable file) raises :class:`RecordError` or :class:`GraftmatchError`.
A deletion needs only ``id`` (and ``type`` for a cord; ``registry`` or ``bank`` when given).
"""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, TypeVar

from pydantic import ValidationError

from graftmatch.errors import GraftmatchError, TypingError
from graftmatch.nesting import json_loads
from graftmatch.registry.records import (
    Action,
    CordRecord,
    Deletion,
    DonorRecord,
    Kind,
    RecordError,
)
from graftmatch.typing.parser import TypingReader

#: Every column a registry file may have.
COLUMNS: tuple[str, ...] = ("type", "action", *dict.fromkeys(
    [*DonorRecord.model_fields, *CordRecord.model_fields]))
#: What a file line holds before it is checked: field -> value as written, or why it is no record.
Row = dict[str, object] | RecordError


@dataclass(frozen=True, slots=True)
class Accepted:
    """A good record (its typing read by the release, when a reader was given)."""

    line: int
    kind: Kind
    action: Action
    record: DonorRecord | CordRecord | Deletion


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    error: RecordError


RecordResult = Accepted | Rejected
_E = TypeVar("_E", bound=StrEnum)


def read_records(path: Path, reader: TypingReader | None = None) -> Iterator[RecordResult]:
    """Each record of a registry file, accepted or rejected, in file order.

    With a ``reader`` every typing is parsed against its release, and a typing it cannot read
    rejects the record with the token and its position.
    """
    first = _first_character(path)
    if first == "":
        raise RecordError(path, 1, "file", "", "is empty: expected a CSV header, JSON Lines or "
                          "a JSON array")
    unit = "record" if first == "[" else "line"
    rows = (_json_array_rows(path) if first == "[" else _json_lines_rows(path) if first == "{"
            else _csv_rows(path))
    for line, row in rows:
        yield _check(path, line, row, reader, unit)


def _open(path: Path) -> IO[str]:
    """Text stream over a plain or gzip file; ``utf-8-sig`` drops the BOM spreadsheet programs
    write; ``newline=""`` lets the csv module read quoted line breaks."""
    try:
        with path.open("rb") as probe:
            gzipped = probe.read(2) == b"\x1f\x8b"
        if gzipped:
            return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
        return path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise GraftmatchError(f"cannot read {path}: {exc}") from exc


#: What a damaged, truncated or mis-encoded file raises while it is read.
_READ_ERRORS = (OSError, EOFError, UnicodeDecodeError, zlib.error)


def _first_character(path: Path) -> str:
    with _open(path) as handle:
        try:
            while chunk := handle.read(4096):
                if stripped := chunk.lstrip():
                    return stripped[0]
        except _READ_ERRORS as exc:
            raise GraftmatchError(f"cannot read {path}: {exc}") from exc
    return ""


def _csv_rows(path: Path) -> Iterator[tuple[int, Row]]:
    with _open(path) as handle:
        try:
            cells_of = csv.reader(handle)
            header: list[str] | None = None
            end = 0
            for cells in cells_of:
                start, end = end + 1, cells_of.line_num
                if not any(cell.strip() for cell in cells):
                    continue
                if header is None:
                    header = _header(path, start, cells)
                elif len(cells) != len(header):
                    yield start, RecordError(path, start, "record", "",
                                             f"has {len(cells)} cells but the header has "
                                             f"{len(header)}")
                else:
                    yield start, {name: cell for name, cell in zip(header, cells, strict=True)
                                  if cell.strip()}
        except csv.Error as exc:
            raise RecordError(path, cells_of.line_num, "file", "",
                              f"is not readable CSV: {exc}") from exc
        except _READ_ERRORS as exc:
            raise GraftmatchError(f"cannot read {path}: {exc}") from exc


def _header(path: Path, line: int, cells: list[str]) -> list[str]:
    """Column names; a bad header would fail every record, so it stops the file."""
    names = [cell.strip().lower() for cell in cells]
    for position, name in enumerate(names, 1):
        if not name:
            raise RecordError(path, line, f"column {position}", "", "has no name")
        if name not in COLUMNS:
            raise RecordError(path, line, name, "",
                              f"unknown column (the columns are {', '.join(COLUMNS)})")
        if names.index(name) != position - 1:
            raise RecordError(path, line, name, "", "is a column twice")
    if "id" not in names:
        raise RecordError(path, line, "id", "", "no 'id' column: every record needs one")
    return names


def _json_lines_rows(path: Path) -> Iterator[tuple[int, Row]]:
    with _open(path) as handle:
        try:
            for number, raw in enumerate(handle, 1):
                if text := raw.strip():
                    yield number, _json_row(path, number, text, "line")
        except _READ_ERRORS as exc:
            raise GraftmatchError(f"cannot read {path}: {exc}") from exc


def _json_row(path: Path, number: int, text: str, unit: str) -> Row:
    try:
        doc = json_loads(text)
    except ValueError as exc:
        return RecordError(path, number, "record", text[:60], f"is not JSON ({exc})", unit=unit)
    return _object_row(path, number, doc, unit)


def _object_row(path: Path, number: int, doc: object, unit: str) -> Row:
    if not isinstance(doc, dict):
        return RecordError(path, number, "record", _short(doc), "is not a JSON object",
                           unit=unit)
    row: dict[str, object] = {}
    for key, value in doc.items():
        name = str(key).strip().lower()
        if name not in COLUMNS:
            return RecordError(path, number, str(key), "",
                               f"unknown field (the fields are {', '.join(COLUMNS)})",
                               unit=unit)
        if value is not None and not (isinstance(value, str) and not value.strip()):
            row[name] = value
    return row


def _json_array_rows(path: Path) -> Iterator[tuple[int, Row]]:
    with _open(path) as handle:
        try:
            doc = json_loads(handle.read())
        except ValueError as exc:
            raise RecordError(path, 1, "file", "", f"is not JSON ({exc})", unit="record"
                              ) from exc
        except _READ_ERRORS as exc:
            raise GraftmatchError(f"cannot read {path}: {exc}") from exc
    if not isinstance(doc, list):
        raise RecordError(path, 1, "file", "", "must hold an array of records", unit="record")
    for number, item in enumerate(doc, 1):
        yield number, _object_row(path, number, item, "record")


def _short(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check(path: Path, line: int, row: Row, reader: TypingReader | None,
           unit: str) -> RecordResult:
    if isinstance(row, RecordError):
        return Rejected(line, row)
    try:
        kind = _choice(path, line, row, "type", Kind, Kind.DONOR, unit)
        action = _choice(path, line, row, "action", Action, Action.UPSERT, unit)
    except RecordError as exc:
        return Rejected(line, exc)
    fields = {k: v for k, v in row.items() if k not in ("type", "action")}
    model: type[DonorRecord | CordRecord | Deletion]
    if action is Action.DELETE:
        model = Deletion
        owner = "registry" if kind is Kind.DONOR else "bank"
        fields = {k: fields[k] for k in ("id", owner) if k in fields}
    else:
        model = DonorRecord if kind is Kind.DONOR else CordRecord
    try:
        record = model.model_validate(fields)
    except ValidationError as exc:
        return Rejected(line, RecordError.from_validation(exc, path, line, kind=kind.value,
                                                          unit=unit))
    if reader is None or isinstance(record, Deletion):
        return Accepted(line, kind, action, record)
    try:
        reader.parse(record.hla)
    except TypingError as exc:
        return Rejected(line, RecordError(
            path, line, "hla", record.hla,
            f"cannot be read: {exc.reason}: {exc.token!r} at position {exc.position}",
            unit=unit))
    return Accepted(line, kind, action, record)


def _choice(path: Path, line: int, row: dict[str, object], field: str, enum: type[_E],
            default: _E, unit: str) -> _E:
    value = row.get(field)
    if value is None:
        return default
    try:
        return enum(str(value).strip().lower())
    except ValueError:
        allowed = [repr(member.value) for member in enum]
        raise RecordError(path, line, field, str(value),
                          f"must be {', '.join(allowed[:-1])} or {allowed[-1]}",
                          unit=unit) from None
