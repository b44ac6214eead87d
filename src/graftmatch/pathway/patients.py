"""The patient record: who the patient is (pseudonymously), the inborn error of immunity, the
laboratory results that show it, and the patient's HLA typings over time.

Pure models, no storage: :mod:`graftmatch.database` keeps them and
:mod:`graftmatch.services.patients` is what the CLI, and later the API and the page, call.
Input is checked field by field and refused with every problem at once, each naming its
field's path (``diagnosis.variants[0].hgvs: ...``). Every clinical list and plausible range is
in ``clinical.toml`` beside this module, with its source.

Records read back from the database are validated with ``context={"stored": True}``: their
shape is checked, but not the lists and ranges of today (a site may narrow them later) and
not the typing against the active release (a typing is kept with the release it was read
under).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from graftmatch.config import packaged, parse_toml
from graftmatch.errors import GraftmatchError, TypingError
from graftmatch.registry.records import Abo, Cmv, CmvField, RhField, SexField, Text
from graftmatch.typing.parser import TypingReader

#: The bundled lists and ranges, with their sources.
CLINICAL_FILE = "graftmatch/pathway/clinical.toml"


class PatientError(GraftmatchError):
    """A patient record refused: ``problems`` holds every (field path, reason) found."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {reason}" for path, reason in problems))

    def to_dict(self) -> dict[str, object]:
        return {"error": "invalid patient record",
                "problems": [{"field": path, "reason": reason} for path, reason in self.problems]}


class PatientNotFound(GraftmatchError):
    """No such patient (in the caller's centre)."""


# --- the clinical lists -------------------------------------------------------------------


@dataclass(frozen=True)
class LabTest:
    key: str
    name: str
    units: tuple[str, ...]
    max: dict[str, float]


@dataclass(frozen=True)
class Disease:
    key: str
    name: str
    iuis_category: str | None
    genes: tuple[str, ...]
    lab_tests: tuple[str, ...] | None  # None: any listed test


@dataclass(frozen=True)
class ClinicalLists:
    weight_min_kg: float
    weight_max_kg: float
    max_age_years: int
    iuis_categories: dict[str, str]
    diseases: dict[str, Disease]
    lab_tests: dict[str, LabTest]
    typing_methods: tuple[str, ...]
    typing_resolutions: tuple[str, ...]


@cache
def clinical_lists() -> ClinicalLists:
    """``clinical.toml`` as shipped."""
    doc = parse_toml(packaged("graftmatch.pathway", "clinical.toml"), CLINICAL_FILE,
                     GraftmatchError)
    patient, typing_ = doc["patient"], doc["typing"]
    tests = {key: LabTest(key, t["name"], tuple(t["units"]),
                          {unit: float(v) for unit, v in t["max"].items()})
             for key, t in doc["lab_tests"].items()}
    diseases = {key: Disease(key, d["name"], d.get("iuis_category"), tuple(d.get("genes", ())),
                             tuple(d["lab_tests"]) if "lab_tests" in d else None)
                for key, d in doc["diseases"].items()}
    return ClinicalLists(float(patient["weight_min_kg"]), float(patient["weight_max_kg"]),
                         int(patient["max_age_years"]), dict(doc["iuis_categories"]), diseases,
                         tests, tuple(typing_["methods"]), tuple(typing_["resolutions"]))


# --- field types --------------------------------------------------------------------------


def _checking(info: ValidationInfo) -> bool:
    """Whether the lists and ranges are checked (input), or only the shape (a stored record)."""
    return not (isinstance(info.context, Mapping) and info.context.get("stored"))


def _today(info: ValidationInfo) -> dt.date:
    if isinstance(info.context, Mapping) and isinstance(info.context.get("today"), dt.date):
        return info.context["today"]  # type: ignore[no-any-return]
    return dt.datetime.now(dt.UTC).date()


def _one_of(value: str, allowed: Mapping[str, object] | tuple[str, ...], what: str) -> str:
    if value not in allowed:
        names = ", ".join(repr(k) for k in allowed)
        raise ValueError(f"{_shown(value)} is not {what}; known: {names} "
                         f"({CLINICAL_FILE})")
    return value


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "...'"


def _pattern(regex: str, example: str) -> Any:
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{_shown(value)} is not {example}")
        return value

    return AfterValidator(check)


def _no_number(value: object) -> object:
    """A date is text (YYYY-MM-DD): a number would be read as seconds since 1970."""
    if isinstance(value, int | float):
        raise ValueError(f"{_shown(value)} is not a date (write YYYY-MM-DD)")
    return value


Date = Annotated[dt.date, BeforeValidator(_no_number)]
#: A pseudonym, never a name: letters, digits, '.', '_' and '-', at most 64.
PseudonymousId = Annotated[str, _pattern(
    r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}",
    "a pseudonymous id (letters, digits, '.', '_', '-'; at most 64)")]
CentreCode = Annotated[str, _pattern(
    r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}",
    "a centre code (letters, digits, '.', '_', '-'; at most 32)")]
GeneSymbol = Annotated[str, _pattern(r"[A-Z0-9][A-Z0-9-]{0,19}", "an HGNC gene symbol, e.g. C1QA")]
ShortText = Annotated[Text, Field(max_length=200)]
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]

# HGVS variant descriptions, checked for shape only (not against the reference sequence).
_AA3 = ("(?:Ala|Arg|Asn|Asp|Cys|Gln|Glu|Gly|His|Ile|Leu|Lys|Met|Phe|Pro|Ser|Thr|Trp|Tyr|Val"
        "|Sec|Pyl|Xaa)")
_AA1 = "[ACDEFGHIKLMNPQRSTVWYUOX]"


def _protein(aa: str) -> str:
    loc = rf"{aa}\d+"
    stop = r"(?:Ter|\*)"
    change = (rf"(?:{aa}|{stop}|=|\?|del|dup|ins(?:{aa}|{stop})+|delins(?:{aa}|{stop})+"
              rf"|(?:{aa})?fs(?:{stop}(?:\d+|\?)?)?|(?:{aa})?ext(?:{stop}|-)?(?:\d+|\?)?)")
    return rf"{loc}(?:_{loc})?{change}"


_P_BODY = rf"(?:{_protein(_AA3)}|{_protein(_AA1)})"
_POS = r"(?:[-*]?\d+(?:[+-]\d+)?|\?)"
_NT = "[ACGTN]"
_DNA = (rf"(?:{_POS}{_NT}>{_NT}|{_POS}(?:_{_POS})?"
        rf"(?:del{_NT}*|dup{_NT}*|ins{_NT}+|delins{_NT}+|inv|=))")
_HGVS = (r"(?:[A-Z]{1,3}_?\d+(?:\.\d+)?(?:\([A-Z0-9-]+\))?:)?"
         rf"(?:[cgmn]\.{_DNA}|p\.(?:{_P_BODY}|\({_P_BODY}\)|\?|0|\(?=\)?))")
HgvsVariant = Annotated[str, _pattern(
    _HGVS, "a variant in HGVS form, e.g. c.622C>T, NM_015991.4:c.622C>T or p.Gln208Ter")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class _At(ValueError):
    """A check across fields that names the field it refuses (pydantic would name the model)."""

    def __init__(self, path: tuple[str | int, ...], reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(reason)


# --- diagnosis ------------------------------------------------------------------------------


class ReferenceRange(_Model):
    """The laboratory's reference range, in the result's unit."""

    low: Annotated[Number, Field(ge=0)]
    high: Annotated[Number, Field(ge=0)]

    @model_validator(mode="after")
    def _ordered(self) -> ReferenceRange:
        if self.low >= self.high:
            raise _At(("high",), f"{self.high:g} is not above low ({self.low:g})")
        return self


class LabResult(_Model):
    """One laboratory result: ``comparator`` "<" for "below the limit of detection"."""

    test: str
    value: Annotated[Number, Field(ge=0)]
    comparator: Literal["=", "<", ">"] = "="
    unit: str
    reference_range: ReferenceRange
    date: Date | None = None
    laboratory: ShortText | None = None

    @field_validator("test")
    @classmethod
    def _known_test(cls, value: str, info: ValidationInfo) -> str:
        return _one_of(value, clinical_lists().lab_tests, "a laboratory test graftmatch "
                       "knows") if _checking(info) else value

    @model_validator(mode="after")
    def _unit(self, info: ValidationInfo) -> LabResult:
        if not _checking(info):
            return self
        test = clinical_lists().lab_tests[self.test]
        _at(("unit",), lambda: _one_of(self.unit, test.units, f"a unit of {test.name}"))
        if self.value > test.max[self.unit]:
            raise _At(("value",), f"{self.value:g} {self.unit} is above the plausible "
                      f"{test.max[self.unit]:g} {self.unit} for {test.name} ({CLINICAL_FILE})")
        return self

    @property
    def within_range(self) -> bool | None:
        """Whether the result lies in the lab's reference range (None: a bound, undecided)."""
        low, high = self.reference_range.low, self.reference_range.high
        if self.comparator == "<":
            return False if self.value <= low else None
        if self.comparator == ">":
            return False if self.value >= high else None
        return low <= self.value <= high


def _at(path: tuple[str | int, ...], check: Any) -> None:
    try:
        check()
    except _At:
        raise
    except ValueError as exc:
        raise _At(path, str(exc)) from None


class Variant(_Model):
    hgvs: HgvsVariant
    zygosity: Literal["homozygous", "heterozygous", "hemizygous", "unknown"] = "unknown"


class Diagnosis(_Model):
    """The inborn error of immunity: a disease of ``clinical.toml`` (``c1q-deficiency``) or
    ``other-iei`` with its own name, its IUIS category, the gene and variants, and results."""

    disease: str
    name: ShortText | None = None
    iuis_category: str
    gene: GeneSymbol | None = None
    variants: list[Variant] = Field(default_factory=list, max_length=20)
    lab_results: list[LabResult] = Field(default_factory=list, max_length=500)

    @field_validator("disease")
    @classmethod
    def _known_disease(cls, value: str, info: ValidationInfo) -> str:
        return _one_of(value, clinical_lists().diseases, "a disease graftmatch knows "
                       "(or 'other-iei')") if _checking(info) else value

    @field_validator("iuis_category")
    @classmethod
    def _known_category(cls, value: str, info: ValidationInfo) -> str:
        return _one_of(value, clinical_lists().iuis_categories, "an IUIS category"
                       ) if _checking(info) else value

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Diagnosis:
        if not _checking(info):
            return self
        disease = clinical_lists().diseases[self.disease]
        if disease.iuis_category and self.iuis_category != disease.iuis_category:
            raise _At(("iuis_category",), f"{self.iuis_category!r} is not the category of "
                      f"{disease.name} ({disease.iuis_category!r}, {CLINICAL_FILE})")
        if disease.key == "other-iei" and self.name is None:
            raise _At(("name",), "is required for 'other-iei': name the disease")
        if disease.genes and self.gene is not None and self.gene not in disease.genes:
            raise _At(("gene",), f"{self.gene!r} is not a gene of {disease.name}; known: "
                      f"{', '.join(disease.genes)} ({CLINICAL_FILE})")
        if self.variants and self.gene is None:
            raise _At(("gene",), "is required when variants are given")
        if disease.lab_tests is not None:
            for n, result in enumerate(self.lab_results):
                if result.test not in disease.lab_tests:
                    raise _At(("lab_results", n, "test"), f"{result.test!r} is not recorded "
                              f"for {disease.name}; known: {', '.join(disease.lab_tests)}")
        return self

    @property
    def disease_name(self) -> str:
        return self.name or clinical_lists().diseases.get(self.disease, Disease(
            self.disease, self.disease, None, (), None)).name


# --- HLA typings ------------------------------------------------------------------------------


class TypingInput(_Model):
    """A typing as a laboratory reports it; ``gl`` is read with the typing reader passed as
    ``context={"reader": reader}`` against its release."""

    gl: Annotated[Text, Field(max_length=100_000)]
    laboratory: ShortText
    date: Date
    method: str
    resolution: str

    @field_validator("gl")
    @classmethod
    def _readable(cls, value: str, info: ValidationInfo) -> str:
        if not _checking(info):
            return value
        reader = info.context.get("reader") if isinstance(info.context, Mapping) else None
        if not isinstance(reader, TypingReader):
            raise TypeError("TypingInput needs context={'reader': TypingReader}")
        try:
            reader.parse(value)
        except TypingError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("method")
    @classmethod
    def _method(cls, value: str, info: ValidationInfo) -> str:
        return _one_of(value, clinical_lists().typing_methods, "a typing method"
                       ) if _checking(info) else value

    @field_validator("resolution")
    @classmethod
    def _resolution(cls, value: str, info: ValidationInfo) -> str:
        return _one_of(value, clinical_lists().typing_resolutions, "a typing resolution"
                       ) if _checking(info) else value


class HlaTyping(TypingInput):
    """A stored typing: its number in the patient's record (1, 2, ... in order of entry), the
    IPD-IMGT/HLA release it was read under and the reader's notices (renamed alleles...)."""

    number: Annotated[int, Field(ge=1)]
    release: str
    notices: list[str] = Field(default_factory=list)
    entered_at: dt.datetime


def read_typing(data: Mapping[str, Any] | TypingInput, reader: TypingReader, *,
                number: int, path: str = "") -> HlaTyping:
    """A laboratory's typing checked against the reader's release, as it will be stored."""
    typing_in = data if isinstance(data, TypingInput) else validate(TypingInput, data,
                                                                      reader=reader, path=path)
    parsed = reader.parse(typing_in.gl)
    return HlaTyping.model_validate(
        {**typing_in.model_dump(), "number": number, "release": reader.index.release,
         "notices": [n.message for n in parsed.notices], "entered_at": dt.datetime.now(dt.UTC)},
        context={"stored": True})  # read just now


# --- the patient ------------------------------------------------------------------------------

#: Fields a patient update may change (the id and the centre are fixed).
EDITABLE = ("sex", "birth_date", "weight_kg", "abo", "rh", "cmv", "population", "diagnosis",
            "synthetic")


class PatientFields(_Model):
    """What is known about the patient apart from the typings. ``synthetic`` labels made-up
    records (demos and tests)."""

    id: PseudonymousId
    centre: CentreCode
    sex: SexField
    birth_date: Date
    weight_kg: Number | None = None
    abo: Abo | None = None
    rh: RhField = None
    cmv: CmvField = Cmv.UNKNOWN
    population: Annotated[ShortText, Field(max_length=64)] | None = None
    diagnosis: Diagnosis
    synthetic: bool = False

    @field_validator("birth_date")
    @classmethod
    def _born(cls, value: dt.date, info: ValidationInfo) -> dt.date:
        if not _checking(info):
            return value
        today, limit = _today(info), clinical_lists().max_age_years
        if value > today:
            raise ValueError(f"{value} is in the future")
        if _years(value, today) > limit:
            raise ValueError(f"{value} makes the patient older than the plausible {limit} "
                             f"years ({CLINICAL_FILE})")
        return value

    @field_validator("weight_kg")
    @classmethod
    def _weight(cls, value: float | None, info: ValidationInfo) -> float | None:
        lists = clinical_lists()
        if value is not None and _checking(info) and not (
                lists.weight_min_kg <= value <= lists.weight_max_kg):
            raise ValueError(f"{value:g} kg is outside the plausible {lists.weight_min_kg:g} "
                             f"to {lists.weight_max_kg:g} kg ({CLINICAL_FILE})")
        return value

    @model_validator(mode="after")
    def _dates(self, info: ValidationInfo) -> PatientFields:
        if _checking(info):
            today = _today(info)
            for n, result in enumerate(self.diagnosis.lab_results):
                _check_date(result.date, self.birth_date, today,
                            ("diagnosis", "lab_results", n, "date"))
        return self

    @property
    def age_years(self) -> int:
        return _years(self.birth_date, dt.datetime.now(dt.UTC).date())


def _check_date(value: dt.date | None, born: dt.date, today: dt.date,
                path: tuple[str | int, ...]) -> None:
    if value is None:
        return
    if value > today:
        raise _At(path, f"{value} is in the future")
    if value < born:
        raise _At(path, f"{value} is before the birth date ({born})")


def _years(born: dt.date, on: dt.date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


class PatientInput(PatientFields):
    """A new patient as a user gives it: optionally the first typings, and which of them
    (1-based) is the current one."""

    typings: list[TypingInput] = Field(default_factory=list, max_length=100)
    current_typing: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _typings(self, info: ValidationInfo) -> PatientInput:
        if not _checking(info):
            return self
        today = _today(info)
        for n, typing_ in enumerate(self.typings):
            _check_date(typing_.date, self.birth_date, today, ("typings", n, "date"))
        if self.current_typing is not None and self.current_typing > len(self.typings):
            raise _At(("current_typing",), f"{self.current_typing} names no typing (the record "
                      f"has {len(self.typings)})")
        return self


class Patient(PatientFields):
    """A stored patient: the typings in order of entry, the current one chosen explicitly
    (``current_typing`` is its number, None until chosen), and the record's version (1, 2...
    one more with each change)."""

    typings: list[HlaTyping] = Field(default_factory=list)
    current_typing: int | None = None
    version: int = 1
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def current(self) -> HlaTyping | None:
        return next((t for t in self.typings if t.number == self.current_typing), None)


def check_typing_date(typing_: TypingInput, patient: PatientFields, *,
                      today: dt.date | None = None, path: str = "") -> None:
    """A typing added later must also lie between the birth date and today."""
    try:
        _check_date(typing_.date, patient.birth_date, today or dt.datetime.now(dt.UTC).date(),
                    ("date",))
    except _At as exc:
        raise PatientError([(_join(path, exc.path), exc.reason)]) from None


# --- validation and its messages --------------------------------------------------------------


M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], data: Any, *, reader: TypingReader | None = None,
             today: dt.date | None = None, path: str = "") -> M:
    """``model`` from ``data``, or :class:`PatientError` naming every field refused."""
    context: dict[str, Any] = {"reader": reader}
    if today is not None:
        context["today"] = today
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise refusal(exc, path) from None


def refusal(exc: ValidationError, path: str = "") -> PatientError:
    """Pydantic's errors told field by field without pydantic's vocabulary."""
    problems: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        loc: tuple[str | int, ...] = tuple(err["loc"])
        problem = (err.get("ctx") or {}).get("error")
        if isinstance(problem, _At):
            loc, reason = loc + problem.path, problem.reason
        else:
            reason = _reason(err)
        problems.append((_join(path, loc), reason))
    return PatientError(problems)


def _join(prefix: str, loc: tuple[str | int, ...]) -> str:
    text = prefix
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not part.startswith(("function-", "lax-", "strict-")) and not part.endswith("]"):
            text += f".{part}" if text else part
    return text or "record"


def _reason(err: Any) -> str:
    ctx = err.get("ctx") or {}
    value = err.get("input")
    match err["type"]:
        case "missing":
            return "is required"
        case "extra_forbidden":
            return "is not a field of this record"
        case "string_too_short":
            return "must not be empty"
        case "string_too_long" | "too_long":
            return f"is longer than {ctx.get('max_length')} " + (
                "characters" if err["type"] == "string_too_long" else "entries")
        case "greater_than_equal":
            return f"{_shown(value)} is below {ctx['ge']}"
        case "float_type" | "float_parsing" | "int_type" | "int_parsing":
            return f"{_shown(value)} is not a number"
        case "finite_number":
            return "is not a finite number"
        case "date_parsing" | "date_from_datetime_parsing" | "date_from_datetime_inexact" | (
                "date_type"):
            return f"{_shown(value)} is not a date (write YYYY-MM-DD)"
        case "enum" | "literal_error":
            return f"{_shown(value)} is not one of {ctx['expected']}"
        case "bool_type" | "bool_parsing":
            return f"{_shown(value)} is not true or false"
        case "string_type":
            return f"{_shown(value)} is not text"
        case "list_type":
            return "is not a list"
        case "model_type" | "dict_type" | "model_attributes_type":
            return "is not an object (a JSON object of fields)"
        case "value_error":
            return str(ctx["error"])
    return str(err["msg"])

