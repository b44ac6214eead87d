"""Registry records: what a registry or cord blood bank sends about each donor or unit.

The models check everything that can be checked without an IPD-IMGT/HLA release (the HLA
typing is parsed by :mod:`graftmatch.registry.files` when a typing reader is given). They accept
the spellings registry exports use (``A+`` in the blood group column, ``pos`` for CMV, German
``0`` for blood group O) and store one canonical value, so the rest of graftmatch compares plain
enums. Every rejection becomes a :class:`RecordError` that names the file, the line, the field
and the value, in words a registry data manager can act on.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from graftmatch.errors import GraftmatchError
from graftmatch.registry.limits import RANGES


class Kind(StrEnum):
    DONOR = "donor"
    CORD = "cord"


class Action(StrEnum):
    """What a record asks of the registry store: add or replace it, or remove it."""

    UPSERT = "upsert"
    DELETE = "delete"


class Sex(StrEnum):
    F = "F"
    M = "M"
    U = "U"


class Abo(StrEnum):
    A = "A"
    B = "B"
    AB = "AB"
    O = "O"  # noqa: E741 (the blood group's name)


class Rh(StrEnum):
    POSITIVE = "+"
    NEGATIVE = "-"


class Cmv(StrEnum):
    POSITIVE = "positive"
    NEGATIVE = "negative"
    UNKNOWN = "unknown"


class Status(StrEnum):
    AVAILABLE = "available"
    TEMPORARILY_UNAVAILABLE = "temporarily-unavailable"
    RESERVED = "reserved"
    RETIRED = "retired"


def _lookup(table: dict[str, str]) -> Callable[[object], object]:
    """A validator mapping the spellings registries use onto one value; anything else is left
    for the enum check to reject with the allowed values."""

    def normalise(value: object) -> object:
        if isinstance(value, str):
            return table.get(value.strip().lower(), value.strip())
        return value

    return normalise


_SEX = {"f": "F", "female": "F", "m": "M", "male": "M", "u": "U", "unknown": "U"}
_RH = {"+": "+", "pos": "+", "positive": "+", "rh+": "+",
       "-": "-", "neg": "-", "negative": "-", "rh-": "-"}
_CMV = {"+": "positive", "pos": "positive", "positive": "positive",
        "-": "negative", "neg": "negative", "negative": "negative",
        "unk": "unknown", "unknown": "unknown"}
_STATUS = {spelling: s.value for s in Status
           for spelling in (s.value, s.value.replace("-", " "), s.value.replace("-", "_"))}
#: A blood group with an optional Rh factor: ``A``, ``A+``, ``AB pos``, ``O Rh-``, ``0+``.
_ABO_RE = re.compile(r"^(AB|A|B|O|0)\s*(?:RH\s*)?([+-]|POS(?:ITIVE)?|NEG(?:ATIVE)?)?$")

_normalise_rh = _lookup(_RH)

SexField = Annotated[Sex, BeforeValidator(_lookup(_SEX))]
RhField = Annotated[Rh | None, BeforeValidator(_normalise_rh)]
CmvField = Annotated[Cmv, BeforeValidator(_lookup(_CMV))]
StatusField = Annotated[Status, BeforeValidator(_lookup(_STATUS))]
#: Characters no name or typing holds: a line break would split a record in an export, and
#: invisible or bidirectional controls make two different ids look the same.
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                  "\u2066\u2067\u2068\u2069")


def _plain(value: str) -> str:
    if value.isprintable():  # the usual case, checked in C
        return value
    for position, char in enumerate(value, 1):
        kind = ("a line break" if char in _LINE_BREAKS
                else "a bidirectional control" if char in _BIDI
                else {"Cc": "a control character", "Cf": "an invisible format character"}.get(
                    unicodedata.category(char)))
        if kind:
            raise ValueError(f"holds U+{ord(char):04X}, {kind} at position {position}: names "
                             "must be plain text")
    return value


Text = Annotated[str, Field(min_length=1), AfterValidator(_plain)]


class _FieldProblem(ValueError):
    """A check across fields that still names one field (pydantic would name none)."""

    def __init__(self, field: str, value: str, reason: str) -> None:
        self.field, self.value, self.reason = field, value, reason
        super().__init__(reason)


class _Record(BaseModel):
    # Numbers become text where text is expected: JSON exports often write ids as numbers.
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True,
                              coerce_numbers_to_str=True)

    id: Text
    hla: Text
    abo: Abo | None = None
    rh: RhField = None
    population: Text | None = None
    status: StatusField = Status.AVAILABLE
    updated: date | None = None

    @model_validator(mode="before")
    @classmethod
    def _split_blood_group(cls, data: Any) -> Any:
        """``A+`` in the blood group column is a blood group and an Rh factor."""
        if not isinstance(data, dict) or not isinstance(data.get("abo"), str):
            return data
        m = _ABO_RE.match(data["abo"].strip().upper())
        if m is None:
            return data  # the enum check rejects it, naming the field
        group, factor = m.groups()
        out = {**data, "abo": "O" if group == "0" else group}
        if factor:
            rh = "+" if factor[0] in "+P" else "-"
            given = data.get("rh")
            if given not in (None, "") and _normalise_rh(given) != rh:
                raise _FieldProblem("rh", str(given),
                                    f"contradicts the blood group {data['abo'].strip()!r}")
            out["rh"] = rh
        return out


class DonorRecord(_Record):
    """An adult volunteer donor."""

    registry: Text
    birth_date: date | None = None
    #: Its plausible range is checked against limits.toml (:mod:`.limits`), as are the cord
    #: counts below: a site may move it.
    age: int | None = None
    sex: SexField = Sex.U
    cmv: CmvField = Cmv.UNKNOWN

    @field_validator("birth_date")
    @classmethod
    def _born(cls, value: date | None) -> date | None:
        if value is not None and value > date.today():
            raise ValueError("is in the future")
        return value

    @model_validator(mode="after")
    def _age_known(self) -> DonorRecord:
        # After HLA, donor age weighs most in choosing a donor [44 Dehn 2019]: a donor
        # without it cannot be ranked.
        if self.birth_date is None and self.age is None:
            raise _FieldProblem("age", "", "missing: give the donor's age or birth_date")
        return self


class CordRecord(_Record):
    """A banked cord blood unit. Cell counts are totals for the unit (the search divides them
    by the patient's weight)."""

    bank: Text
    tnc_1e7: float = Field(gt=0, allow_inf_nan=False)
    cd34_1e5: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    volume_ml: float | None = Field(default=None, gt=0, allow_inf_nan=False)


class Deletion(BaseModel):
    """A request to remove a donor or unit: only its identity is needed."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True,
                              coerce_numbers_to_str=True)

    id: Text
    registry: Text | None = None
    bank: Text | None = None


#: Field -> what its numbers mean, added to range and number errors.
_UNITS = {field: RANGES[field] for field in ("tnc_1e7", "cd34_1e5", "volume_ml")}
#: Characters of a value shown in a message or report: a 100 MB field is cut, not printed.
SHOWN = 80


def cut(value: str, limit: int = SHOWN) -> str:
    """``value`` as an error shows it: at most ``limit`` characters and its length."""
    if len(value) <= limit:
        return value
    return f"{value[:limit]} ... ({len(value):,} characters)"


class RecordError(GraftmatchError):
    """A record that cannot be used, with where it is (``line 7`` of a CSV or JSON Lines file,
    ``record 7`` of a JSON array), the field and the offending value."""

    def __init__(self, path: Path | str, line: int, field: str, value: str, reason: str, *,
                 unit: str = "line") -> None:
        value = cut(value)
        self.path, self.line, self.field, self.value, self.reason = (
            Path(path), line, field, value, reason)
        self.unit = unit
        shown = f"{value!r} " if value else ""
        super().__init__(f"{path} {unit} {line}, field {field!r}: {shown}{reason}")

    def to_dict(self) -> dict[str, object]:
        return {"path": str(self.path), self.unit: self.line, "field": self.field,
                "value": self.value, "reason": self.reason, "message": str(self)}

    @classmethod
    def from_validation(cls, exc: ValidationError, path: Path | str, line: int, *,
                        kind: str, unit: str = "line") -> RecordError:
        """The first problem pydantic found, told without pydantic's vocabulary."""
        err = exc.errors()[0]
        ctx = err.get("ctx") or {}
        problem = ctx.get("error")
        if isinstance(problem, _FieldProblem):
            return cls(path, line, problem.field, problem.value, problem.reason, unit=unit)
        field = ".".join(str(part) for part in err["loc"]) or "record"
        value = "" if err["type"] == "missing" else _text(err["input"])
        return cls(path, line, field, value, _reason(err["type"], field, ctx, kind, err["msg"]),
                   unit=unit)


def _text(value: object) -> str:
    return value if isinstance(value, str) else str(value)


def _reason(kind_of_error: str, field: str, ctx: dict[str, Any], kind: str, msg: str) -> str:
    unit = f" ({_UNITS[field]})" if field in _UNITS else ""
    match kind_of_error:
        case "missing":
            return "is required but missing"
        case "string_too_short":
            return "must not be empty"
        case "greater_than_equal":
            return f"is below {ctx['ge']:g}{unit}"
        case "greater_than":
            return f"must be above {ctx['gt']:g}{unit}"
        case "less_than_equal":
            return f"is above {ctx['le']:g}{unit}"
        case "int_parsing" | "int_from_float" | "int_type":
            return f"is not a whole number{unit}"
        case "float_parsing" | "float_type":
            return f"is not a number{unit}"
        case "finite_number":
            return f"is not a finite number{unit}"
        case "date_parsing" | "date_from_datetime_parsing" | "date_from_datetime_inexact" | (
                "date_type"):
            return "is not a date (write YYYY-MM-DD)"
        case "enum":
            return f"must be {ctx['expected']}"
        case "extra_forbidden":
            return f"is not a field of a {kind} record"
        case "string_type":
            return "is not text"
        case "value_error":
            return str(ctx["error"])
    return msg
