"""Haplotype frequency (HF) sets: reading, checking and choosing a population.

Formats read (DOMAIN 3.1):

* GRIM ``{POP}.freqs.gz`` / ``.freqs``: CSV without header, ``haplotype,count,frequency``; the
  population is the file name's stem [29 py-graph-imputation];
* ``hpf.csv``: CSV with header ``hap,pop,freq`` (several populations) [29];
* HFX bundles (``.hfx``), read with hfx-tools, the Society for Immune Polymorphism's library
  for the Haplotype Frequency Exchange format [36];
* graftmatch JSON: ``{"metadata": {...}, "haplotypes": [{"haplotype", "population",
  "frequency"}]}``, with metadata ``loci``, ``resolution``, ``release``, ``source``,
  ``licence``, ``synthetic`` and optional ``fallback`` (population -> broader population).

Every allele is checked against the active IPD-IMGT/HLA release with the typing reader, so
renamed alleles are read under their current name (with a notice) and unknown ones are refused
with the file, line and token. Frequencies must lie between ``MIN_FREQUENCY`` and 1; a population
whose frequencies sum far from 1 is reported, and renormalised only when asked.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from graftmatch.errors import GraftmatchError, TypingError
from graftmatch.nesting import json_loads
from graftmatch.typing.model import CallKind
from graftmatch.typing.parser import TypingReader

#: A population whose frequencies sum outside 1 +- this is reported (rounded published sets sum
#: to 0.99-1.00; the GRIM CAU example set to 0.99669).
SUM_TOLERANCE = 0.01
#: The name of the pooled population used when nothing narrower fits.
POOLED = "pooled"
_T = TypeVar("_T", dict[str, Any], list[Any], str)
#: The smallest frequency read: rarer than one haplotype among the world's 16 billion, so no
#: real set holds one (published sets round to 1e-5..1e-8), and the products of imputation
#: (two haplotypes, mixture weights) stay far above floating-point underflow, which at 1e-300
#: made every haplotype pair weigh 0.
MIN_FREQUENCY = 1e-12
#: The most read from a frequency set, unpacked: a bound on memory against a gzip bomb. Meant
#: to be far above published sets (UNVERIFIED: the largest were not measured here).
MAX_SET_BYTES = 2**30
#: A mixture weight below this share of the largest one is refused, for the same reason.
MIN_WEIGHT_SHARE = 1e-6


class FrequencyError(GraftmatchError):
    """A frequency set that cannot be used as written; names the file, the place in it (``line
    3`` in CSV, ``haplotypes[2]`` in JSON) and the field."""

    def __init__(self, path: Path | str, where: str, field: str, reason: str) -> None:
        self.path, self.where, self.field, self.reason = str(path), where, field, reason
        super().__init__(f"{path}{' ' + where if where else ''}, {field}: {reason}")


@dataclass(frozen=True)
class Population:
    name: str
    haplotypes: tuple[tuple[str, ...], ...] = field(repr=False)
    frequencies: npt.NDArray[np.float64] = field(repr=False)

    @property
    def total(self) -> float:
        return float(self.frequencies.sum())


@dataclass(frozen=True)
class FrequencySet:
    source: str
    loci: tuple[str, ...]
    populations: dict[str, Population] = field(repr=False)
    resolution: str
    release: str
    licence: str = ""
    synthetic: bool = False
    #: population -> broader population to fall back to (from the set's metadata).
    fallback: dict[str, str] = field(default_factory=dict)
    #: Things a user should know that did not stop the set being read.
    notices: tuple[str, ...] = ()

    def select(self, population: str | None) -> tuple[Population, tuple[str, ...]]:
        """The population to use for a subject, and the fallback steps taken to reach it.

        Chain: the population asked for; then its broader populations as the set declares
        them; then the pooled set (all populations averaged, weighted equally). Every step
        is returned so that a result can say which frequencies it rests on.
        """
        steps: list[str] = []
        current = population
        seen: set[str] = set()
        while current is not None and current not in seen:
            seen.add(current)
            if current in self.populations:
                return self.populations[current], tuple(steps)
            broader = self.fallback.get(current)
            steps.append(f"population {current!r} is not in the set"
                         + (f"; using broader {broader!r}" if broader else ""))
            current = broader
        if len(self.populations) == 1:
            only = next(iter(self.populations.values()))
            if population is not None:
                steps.append(f"using the set's only population {only.name!r}")
            return only, tuple(steps)
        steps.append(f"using the {POOLED} set of all {len(self.populations)} populations")
        return self.pooled(), tuple(steps)

    def pooled(self) -> Population:
        return _mixture(POOLED, [(p, 1.0) for p in self.populations.values()])

    def choose(self, spec: str | None) -> tuple[Population, tuple[str, ...]]:
        """The population for a subject from a command-line spec, with the fallback steps.

        ``CAU`` selects one population (see :meth:`select`); ``CAU:0.7,AFA:0.3`` a subject of
        mixed ancestry: each haplotype is drawn from the populations' mix with those prior
        weights (each population normalised to 1 first). Weights default to equal.
        """
        if spec is None or ("," not in spec and ":" not in spec):
            return self.select(spec)
        parts: list[tuple[Population, float]] = []
        steps: list[str] = []
        items = [item.strip() for item in spec.split(",")]
        weights = [_weight(item) for item in items]
        for item, weight in zip(items, weights, strict=True):
            if weight < MIN_WEIGHT_SHARE * max(weights):
                raise GraftmatchError(f"population {item!r}: weight is below a millionth of "
                                      f"the largest ({max(weights):g}); leave it out")
            population, taken = self.select(item.partition(":")[0].strip() or None)
            steps += taken
            # Relative to the largest weight, so that weights near 1e308 cannot overflow.
            parts.append((population, weight / max(weights)))
        total = sum(w for _, w in parts)
        name = "+".join(f"{p.name}:{w / total:.3g}" for p, w in parts)
        return _mixture(name, [(p, w / total) for p, w in parts]), tuple(steps)


def _weight(item: str) -> float:
    """The weight of one ``POP:weight`` item of a mixture (1 when not given)."""
    weight_text = item.partition(":")[2]
    try:
        weight = float(weight_text) if weight_text else 1.0
    except ValueError:
        raise GraftmatchError(f"population {item!r}: weight {weight_text!r} is not a "
                              "number") from None
    if not (weight > 0 and math.isfinite(weight)):
        raise GraftmatchError(f"population {item!r}: weight must be a finite number above 0")
    return weight


def _mixture(name: str, parts: list[tuple[Population, float]]) -> Population:
    """Haplotype frequencies mixed with weights (summing to 1 over ``parts``)."""
    total_weight = sum(w for _, w in parts)
    weights: dict[tuple[str, ...], float] = {}
    for pop, weight in parts:
        scale = weight / (pop.total * total_weight)
        for hap, freq in zip(pop.haplotypes, pop.frequencies, strict=True):
            weights[hap] = weights.get(hap, 0.0) + float(freq) * scale
    return Population(name, tuple(weights), np.array(list(weights.values())))


def read_frequency_set(path: Path, reader: TypingReader, *, renormalise: bool = False
                       ) -> FrequencySet:
    """Read and check a frequency set in any of the supported formats."""
    if path.suffix.lower() == ".hfx":
        return _build(path, reader, *_hfx_rows(path), renormalise)
    try:
        with path.open("rb") as probe:
            gzipped = probe.read(2) == b"\x1f\x8b"
        with (gzip.open(path) if gzipped else path.open("rb")) as handle:
            raw = handle.read(MAX_SET_BYTES + 1)
        if len(raw) > MAX_SET_BYTES:
            raise GraftmatchError(f"frequency set {path} is over {MAX_SET_BYTES:,} bytes "
                                  "unpacked: not read")
        text = raw.decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
        raise GraftmatchError(f"cannot read frequency set {path}: {exc}") from exc
    meta: dict[str, Any] = {}
    if text.lstrip().startswith("{"):
        rows, meta = _json_rows(path, text)
    else:
        rows = _csv_rows(path, text)
    return _build(path, reader, rows, meta, renormalise)


def _build(path: Path, reader: TypingReader, rows: list[Row], meta: dict[str, Any],
           renormalise: bool) -> FrequencySet:
    loci, fallback = meta.get("loci"), meta.get("fallback") or {}
    if loci is not None and not (isinstance(loci, list) and all(isinstance(x, str) for x in loci)):
        raise FrequencyError(path, "", "metadata.loci", f"{loci!r} is not a list of loci")
    if not isinstance(fallback, dict):
        raise FrequencyError(path, "", "metadata.fallback",
                             f"{fallback!r} is not an object (population -> broader population)")
    builder = _Builder(path, reader, loci)
    for where, hap, pop, freq in rows:
        builder.add(where, hap, pop, freq)
    populations, notices = builder.finish(renormalise)
    return FrequencySet(
        source=str(meta.get("source") or path),
        loci=builder.loci or (),
        populations=populations,
        resolution=str(meta.get("resolution") or (
            builder.resolutions.pop() if len(builder.resolutions) == 1 else "mixed")),
        release=str(meta.get("release") or reader.index.release),
        licence=str(meta.get("licence", "")),
        synthetic=bool(meta.get("synthetic", False)),
        fallback={str(k): str(v) for k, v in fallback.items()},
        notices=tuple(notices),
    )


#: No field of a frequency file comes near this many characters.
FIELD_LIMIT = 131_072

#: (place in the file, haplotype, population, frequency), as written.
Row = tuple[str, str, str, str]


def _csv_rows(path: Path, text: str) -> list[Row]:
    cells = csv.reader(io.StringIO(text))
    try:
        lines = list(cells)
    except csv.Error as exc:  # a NUL character, a field over the module's limit
        raise FrequencyError(path, f"line {cells.line_num}", "line", str(exc)) from None
    # Checked here, not by the csv module's limit, which is process-wide (the registry reader
    # raises it for its long lines).
    for number, line in enumerate(lines, 1):
        if any(len(cell) > FIELD_LIMIT for cell in line):
            raise FrequencyError(path, f"line {number}", "line",
                                 f"field larger than field limit ({FIELD_LIMIT})")
    if not lines:
        raise FrequencyError(path, "", "file", "no haplotypes")
    header = [c.strip().lower() for c in lines[0]]
    if header[:1] == ["hap"]:  # hpf.csv
        try:
            h, p, f = header.index("hap"), header.index("pop"), header.index("freq")
        except ValueError:
            raise FrequencyError(path, "line 1", "header",
                                 "expected columns hap,pop,freq") from None
        return [(f"line {n}", r[h], r[p], r[f]) for n, r in enumerate(lines[1:], 2)
                if _width(path, n, r)]
    population = path.name.split(".")[0]  # CAU.freqs.gz -> CAU
    return [(f"line {n}", r[0], population, r[2]) for n, r in enumerate(lines, 1)
            if _width(path, n, r)]


def _width(path: Path, line: int, row: list[str]) -> bool:
    """False for a blank line; an error for a line without exactly 3 fields."""
    if not row:
        return False
    if len(row) != 3:
        raise FrequencyError(path, f"line {line}", "line", f"expected 3 fields, got {len(row)}")
    return True


def _hfx_rows(path: Path) -> tuple[list[Row], dict[str, Any]]:
    """An HFX bundle (Haplotype Frequency Exchange, ZIP of ``metadata.json`` and CSV), read
    with the SIP's reference library hfx-tools. One HFX document is one cohort: its population
    is named by ``cohortDescription.population[].name`` (joined), else the file's stem. The
    library does not check the types of the metadata it returns, so each field read is
    checked here."""
    from hfx_tools.io import read_hfx_bundle

    try:
        bundle = read_hfx_bundle(path)
    except RecursionError:
        raise FrequencyError(path, "", "HFX bundle", "metadata nested too deeply") from None
    # What the library lets through from a damaged or odd bundle: zip errors (encrypted,
    # unsupported compression, a corrupt stream) and the wrong types in its metadata.
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, RuntimeError,
            NotImplementedError, zipfile.BadZipFile, zlib.error) as exc:
        raise FrequencyError(path, "", "HFX bundle", str(exc) or type(exc).__name__) from exc
    md = _field(path, bundle.metadata, "metadata", dict)
    cohort = _field(path, md.get("cohortDescription"), "cohortDescription", dict)
    names = [_field(path, _field(path, p, f"cohortDescription.population[{n}]", dict
                                 ).get("name"), f"cohortDescription.population[{n}].name", str)
             for n, p in enumerate(_field(path, cohort.get("population"),
                                          "cohortDescription.population", list))]
    population = "+".join(name for name in names if name) or path.stem
    outputs = [_field(path, r, f"outputResolution[{n}]", dict) for n, r in
               enumerate(_field(path, md.get("outputResolution"), "outputResolution", list))]
    loci = [_field(path, r.get("locus"), f"outputResolution[{n}].locus", str)
            for n, r in enumerate(outputs)]
    resolution = {_field(path, r.get("resolution"), f"outputResolution[{n}].resolution", str)
                  for n, r in enumerate(outputs)}
    nomenclature = _field(path, md.get("nomenclatureUsed"), "nomenclatureUsed", dict)
    data_source = _field(path, cohort.get("dataSource"), "cohortDescription.dataSource", str)
    licence = md.get("license")
    meta = {
        "loci": [locus for locus in loci if locus] or None,
        "resolution": resolution.pop() if len(resolution) == 1 else None,
        "release": _field(path, nomenclature.get("version"), "nomenclatureUsed.version", str)
        or None,
        "source": f"HFX {_field(path, md.get('hfxID'), 'hfxID', str) or path.name}"
                  + (f" ({data_source})" if data_source else ""),
        "licence": licence if isinstance(licence, str) else json.dumps(licence) if licence
        else "",
    }
    rows = [(f"frequency row {n}", str(hap), population, str(freq))
            for n, (hap, freq) in enumerate(bundle.rows, 1)]
    return rows, meta


def _field(path: Path, value: Any, name: str, kind: type[_T]) -> _T:
    """A metadata field of the type its format gives it; missing or null reads empty."""
    if value is None:
        return kind()
    if not isinstance(value, kind) or isinstance(value, bool):
        shown = json.dumps(value)
        raise FrequencyError(path, "", f"metadata.{name}",
                             f"{shown[:60]} should be {_KINDS[kind]}")
    return value


_KINDS: dict[type, str] = {dict: "an object", list: "a list", str: "text"}


def _json_rows(path: Path, text: str) -> tuple[list[Row], dict[str, Any]]:
    try:
        doc = json_loads(text)
    except ValueError as exc:
        raise FrequencyError(path, "", "file", f"not JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("haplotypes"), list):
        raise FrequencyError(path, "", "haplotypes",
                             "expected an object with a 'haplotypes' list")
    meta = doc.get("metadata") or {}
    if not isinstance(meta, dict):
        raise FrequencyError(path, "", "metadata", "expected an object")
    for key in ("resolution", "release", "source", "licence"):
        _field(path, meta.get(key), key, str)
    if not isinstance(meta.get("synthetic", False), bool):
        raise FrequencyError(path, "", "metadata.synthetic",
                             f"{json.dumps(meta['synthetic'])[:60]} should be true or false")
    rows = []
    for n, item in enumerate(doc["haplotypes"]):
        if not isinstance(item, dict):
            raise FrequencyError(path, f"haplotypes[{n}]", "entry", "expected an object")
        rows.append((f"haplotypes[{n}]", str(item.get("haplotype", "")),
                     str(item.get("population", "")), str(item.get("frequency", ""))))
    return rows, meta


class _Builder:
    """Checks rows one by one and gathers them per population."""

    def __init__(self, path: Path, reader: TypingReader, loci: list[str] | None) -> None:
        self.path, self.reader = path, reader
        self.loci: tuple[str, ...] | None = tuple(loci) if loci else None
        self.pops: dict[str, dict[tuple[str, ...], float]] = {}
        self.first_seen: dict[tuple[str, tuple[str, ...]], str] = {}
        self.notices: list[str] = []
        #: How the alleles are written: ``G``, ``P``, ``2-field``...
        self.resolutions: set[str] = set()

    def add(self, line: str, hap: str, pop: str, freq_text: str) -> None:
        where = "haplotype"
        if not pop.strip():
            raise FrequencyError(self.path, line, "population", "empty population")
        try:
            freq = float(freq_text)
        except ValueError:
            raise FrequencyError(self.path, line, "frequency",
                                 f"{freq_text!r} is not a number") from None
        if not MIN_FREQUENCY <= freq <= 1:
            raise FrequencyError(self.path, line, "frequency",
                                 f"{freq_text!r} must be at least {MIN_FREQUENCY:g} and at "
                                 "most 1")
        try:
            typing = self.reader.parse(hap.strip())
        except TypingError as exc:
            raise FrequencyError(self.path, line, where,
                                 f"{exc.reason}: {exc.token!r} at position {exc.position}"
                                 ) from None
        calls = [al for block in typing.blocks for gt in block for h in gt for al in h]
        if len(typing.blocks) != 1 or len(typing.blocks[0]) != 1 or \
                len(typing.blocks[0][0]) != 1 or any(len(al) != 1 for al in calls):
            raise FrequencyError(self.path, line, where,
                                 f"{hap!r} is not one haplotype of single alleles "
                                 "(LOCUS*..~LOCUS*..)")
        vague = [al[0].text for al in calls
                 if al[0].kind not in (CallKind.ALLELE, CallKind.G_GROUP, CallKind.P_GROUP)]
        if vague:
            raise FrequencyError(self.path, line, where,
                                 f"{vague[0]!r} is not an allele or allele group")
        loci = tuple(al[0].locus for al in calls)
        if self.loci is None:
            self.loci = loci
        elif loci != self.loci:
            raise FrequencyError(self.path, line, where,
                                 f"loci {'~'.join(loci)} differ from the set's "
                                 f"{'~'.join(self.loci)}")
        for notice in typing.notices:
            self.notices.append(f"{line}: {notice.message}")
        self.resolutions.update(
            {CallKind.G_GROUP: "G", CallKind.P_GROUP: "P"}.get(
                al[0].kind, f"{al[0].text.count(':') + 1}-field") for al in calls)
        names = tuple(al[0].text for al in calls)
        table = self.pops.setdefault(pop.strip(), {})
        key = (pop.strip(), names)
        if names in table:
            raise FrequencyError(self.path, line, where, f"{hap!r} in population {pop!r} is "
                                 f"already on {self.first_seen[key]}")
        self.first_seen[key] = line
        table[names] = freq

    def finish(self, renormalise: bool) -> tuple[dict[str, Population], list[str]]:
        if not self.pops:
            raise FrequencyError(self.path, "", "file", "no haplotypes")
        out = {}
        for name, table in self.pops.items():
            freqs = np.array(list(table.values()), dtype=np.float64)
            total = float(freqs.sum())
            if abs(total - 1.0) > SUM_TOLERANCE:
                self.notices.append(
                    f"population {name}: frequencies sum to {total:.5f}"
                    + ("; renormalised to 1" if renormalise else "; not renormalised "
                       "(imputation normalises posteriors; ask to renormalise the set)"))
            if renormalise:
                freqs = freqs / total
            out[name] = Population(name, tuple(table), freqs)
        return out, self.notices
