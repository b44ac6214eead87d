"""Reading registry files: donors and cord blood units, one record at a time.

Layouts, told apart by the first character of the file (gzip-compressed files are recognised by
their content too, whatever their name):

* CSV with a header row (``[``/``{`` cannot start one): the columns are the record fields
  (:data:`COLUMNS`) plus ``type`` (``donor``, the default, or ``cord``) and ``action``
  (``upsert``, the default, or ``delete``). An empty cell means "not given". The header is line
  1; a record is numbered by its file line. No field holds a line break: a quoted field that
  runs past its line end rejects that line alone.
* JSON Lines (first character ``{``): one object per line with the same keys; ``null`` or
  ``""`` means "not given".
* A JSON array of such objects (first character ``[``): read whole, so meant for small files;
  its records are numbered ``record 1``, ``record 2``... in errors.

CSV and JSON Lines are streamed a line at a time (a line over ``limits.toml``'s bound is
refused unread), so a registry of millions of donors is read in constant memory. A bad record
is reported as :class:`Rejected` and reading goes on: the caller gathers the rejections into
an error report for the registry. Only what dooms every record (an unknown column, an
unreadable file, a header that cannot be read) raises :class:`RecordError` or
:class:`GraftmatchError`.
A deletion needs only ``id`` (and ``type`` for a cord; ``registry`` or ``bank`` when given).
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import IO, TypeVar

from pydantic import ValidationError

from graftmatch.errors import GraftmatchError, TypingError
from graftmatch.nesting import json_loads
from graftmatch.registry.limits import Limits, default_limits
from graftmatch.registry.records import (
    Action,
    CordRecord,
    Deletion,
    DonorRecord,
    Kind,
    RecordError,
    cut,
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


def read_records(path: Path, reader: TypingReader | None = None, limits: Limits | None = None,
                 *, name: Path | None = None) -> Iterator[RecordResult]:
    """Each record of a registry file, accepted or rejected, in file order.

    With a ``reader`` every typing is parsed against its release, and a typing it cannot read
    rejects the record with the token and its position. ``limits`` (default: the built-in
    ``limits.toml``) bound every number and text; errors name the file as ``name`` (default
    ``path``), so a copy of standard input is reported as what the user gave.
    """
    limits = limits or default_limits()
    shown = name or path
    first = _first_character(path, shown)
    if first == "":
        raise RecordError(shown, 1, "file", "", "is empty: expected a CSV header, JSON Lines "
                          "or a JSON array")
    unit = "record" if first == "[" else "line"
    rows = (_json_array_rows(path, shown) if first == "["
            else _json_lines_rows(path, shown, limits) if first == "{"
            else _csv_rows(path, shown, limits))
    today = date.today()
    for line, row in rows:
        yield _check(shown, line, row, reader, unit, limits, today)


def _open(path: Path, shown: Path) -> IO[str]:
    """Text stream over a plain or gzip file; ``utf-8-sig`` drops the BOM spreadsheet programs
    write; ``newline=""`` keeps line ends as written, so only ``\\n``, ``\\r`` and ``\\r\\n`` end a
    line."""
    try:
        with path.open("rb") as probe:
            gzipped = probe.read(2) == b"\x1f\x8b"
        if gzipped:
            return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
        return path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise GraftmatchError(f"cannot read {shown}: {exc}") from exc


#: What a damaged, truncated or mis-encoded file raises while it is read.
_READ_ERRORS = (OSError, EOFError, UnicodeDecodeError, zlib.error)


def _first_character(path: Path, shown: Path) -> str:
    with _open(path, shown) as handle:
        try:
            while chunk := handle.read(4096):
                if stripped := chunk.lstrip():
                    return stripped[0]
        except _READ_ERRORS as exc:
            raise GraftmatchError(f"cannot read {shown}: {exc}") from exc
    return ""


class _Lines:
    """The physical lines of a file, each at most ``limit`` characters read (a longer one comes
    as an empty line, flagged ``too_long``), handed to the csv module one record at a time: a
    record that asks for a second line (a quoted field running past its line end) gets the end
    of the data instead and is flagged ``spanned``, so a stray quote costs one line, never the
    rows after it."""

    def __init__(self, handle: IO[str], limit: int) -> None:
        self.handle, self.limit = handle, limit
        self.number = 0
        self.given = self.spanned = self.too_long = False

    def next_record(self) -> None:
        self.given = self.spanned = self.too_long = False

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.given:
            self.spanned = True
            raise StopIteration
        line = self.handle.readline(self.limit + 1)
        if not line:
            raise StopIteration
        self.number += 1
        self.given = True
        if len(line) > self.limit and not line.endswith(("\n", "\r")):
            self.too_long = True
            while (rest := self.handle.readline(self.limit)) and not rest.endswith(
                    ("\n", "\r")):
                pass
            return "\n"
        return line


def _too_long(shown: Path, line: int, limits: Limits, unit: str = "line") -> RecordError:
    return RecordError(shown, line, "record", "",
                       f"the line is longer than {limits.line_max_characters:,} characters "
                       f"({limits.cite('text')}): not read", unit=unit)


def _csv_rows(path: Path, shown: Path, limits: Limits) -> Iterator[tuple[int, Row]]:
    with _open(path, shown) as handle:
        lines = _Lines(handle, limits.line_max_characters)
        # A field is never longer than its line; the module's own limit is process-wide.
        csv.field_size_limit(max(csv.field_size_limit(), limits.line_max_characters))
        cells_of = csv.reader(lines)
        header: list[str] | None = None
        while True:
            lines.next_record()
            try:
                cells = next(cells_of)
                problem = None
            except StopIteration:
                break
            except csv.Error as exc:
                cells, problem = [], f"is not readable CSV: {exc}"
            except _READ_ERRORS as exc:
                raise GraftmatchError(f"cannot read {shown}: {exc}") from exc
            start = lines.number
            if lines.too_long:
                error = _too_long(shown, start, limits)
            elif lines.spanned:
                error = RecordError(shown, start, "record", "",
                                    "a quoted field runs past the end of the line (a stray "
                                    "'\"'?): no field of a registry record holds a line break")
            elif problem:
                error = RecordError(shown, start, "record", "", problem)
            else:
                error = None
            if error is not None:
                if header is None:
                    raise error  # without a header no line can be read
                yield start, error
                continue
            if not any(cell.strip() for cell in cells):
                continue
            if header is None:
                header = _header(shown, start, cells)
            elif len(cells) != len(header):
                yield start, RecordError(shown, start, "record", "",
                                         f"has {len(cells)} cells but the header has "
                                         f"{len(header)}")
            else:
                yield start, {name: cell for name, cell in zip(header, cells, strict=True)
                              if cell.strip()}


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


def _json_lines_rows(path: Path, shown: Path, limits: Limits) -> Iterator[tuple[int, Row]]:
    with _open(path, shown) as handle:
        lines = _Lines(handle, limits.line_max_characters)
        try:
            for raw in lines:
                number = lines.number
                if lines.too_long:
                    yield number, _too_long(shown, number, limits)
                elif text := raw.strip():
                    yield number, _json_row(shown, number, text, "line")
                lines.next_record()
        except _READ_ERRORS as exc:
            raise GraftmatchError(f"cannot read {shown}: {exc}") from exc


def _finite(text: str) -> float:
    """A JSON number as a float; one beyond a float's range is refused, not read as infinity."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _loads(text: str) -> object:
    """Strict JSON: Python's module would read ``NaN``, ``Infinity`` and ``1e400`` as numbers."""
    return json_loads(text, parse_float=_finite, parse_constant=_no_constant)


def _json_row(path: Path, number: int, text: str, unit: str) -> Row:
    try:
        doc = _loads(text)
    except ValueError as exc:
        return RecordError(path, number, "record", _short(text), f"is not JSON ({exc})",
                           unit=unit)
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


def _json_array_rows(path: Path, shown: Path) -> Iterator[tuple[int, Row]]:
    with _open(path, shown) as handle:
        try:
            doc = _loads(handle.read())
        except ValueError as exc:
            raise RecordError(shown, 1, "file", "", f"is not JSON ({exc})", unit="record"
                              ) from exc
        except _READ_ERRORS as exc:
            raise GraftmatchError(f"cannot read {shown}: {exc}") from exc
    if not isinstance(doc, list):
        raise RecordError(shown, 1, "file", "", "must hold an array of records", unit="record")
    for number, item in enumerate(doc, 1):
        yield number, _object_row(shown, number, item, "record")


def _short(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check(path: Path, line: int, row: Row, reader: TypingReader | None, unit: str,
           limits: Limits, today: date) -> RecordResult:
    if isinstance(row, RecordError):
        return Rejected(line, row)
    for field, value in row.items():  # before anything reads a field that is too long
        most = limits.hla_max_characters if field == "hla" else limits.name_max_characters
        if isinstance(value, str) and len(value) > most:
            return Rejected(line, RecordError(
                path, line, field, value, f"is {len(value):,} characters long (at most "
                f"{most:,}, {limits.cite('text')})", unit=unit))
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
    if isinstance(record, Deletion):
        return Accepted(line, kind, action, record)
    if problem := _implausible(record, limits, today):
        field, reason = problem
        return Rejected(line, RecordError(path, line, field, str(row[field]), reason,
                                          unit=unit))
    if reader is None:
        return Accepted(line, kind, action, record)
    try:
        reader.parse(record.hla)
    except TypingError as exc:
        return Rejected(line, RecordError(
            path, line, "hla", record.hla,
            f"cannot be read: {exc.reason}: {cut(exc.token)!r} at position {exc.position}",
            unit=unit))
    return Accepted(line, kind, action, record)


def _implausible(record: DonorRecord | CordRecord, limits: Limits, today: date
                 ) -> tuple[str, str] | None:
    """The first field outside its plausible range (``limits.toml``) on ``today``, and why."""
    if isinstance(record, DonorRecord):
        bounds = limits.ranges["donor_age"]
        if record.birth_date is not None:
            age = today.year - record.birth_date.year - (
                (today.month, today.day) < (record.birth_date.month, record.birth_date.day))
            if not bounds.min <= age <= bounds.max:
                return "birth_date", (f"gives an age of {age} on {today}: {bounds.meaning()} "
                                      f"({limits.cite('donor_age')})")
        values = {"age": (record.age, bounds)}
    else:
        values = {name: (getattr(record, name), limits.ranges[name])
                  for name in ("tnc_1e7", "cd34_1e5", "volume_ml")}
    for name, (value, bounds) in values.items():
        if value is None:
            continue
        where = f"{bounds.meaning()}; {limits.cite(bounds.table)}"
        if value < bounds.min:
            return name, f"is below {bounds.min:g} ({where})"
        if value > bounds.max:
            return name, f"is above {bounds.max:g} ({where})"
    return None


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
