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
with the file, line and token. Frequencies must be positive; a population whose frequencies sum
far from 1 is reported, and renormalised only when asked.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
        for item in spec.split(","):
            name, _, weight_text = item.strip().partition(":")
            try:
                weight = float(weight_text) if weight_text else 1.0
            except ValueError:
                raise GraftmatchError(f"population {item.strip()!r}: weight {weight_text!r} "
                                      "is not a number") from None
            if not weight > 0:
                raise GraftmatchError(f"population {item.strip()!r}: weight must be above 0")
            population, taken = self.select(name.strip() or None)
            steps += taken
            parts.append((population, weight))
        total = sum(w for _, w in parts)
        name = "+".join(f"{p.name}:{w / total:.3g}" for p, w in parts)
        return _mixture(name, [(p, w / total) for p, w in parts]), tuple(steps)


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
        raw = path.read_bytes()
        text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as exc:
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


#: (place in the file, haplotype, population, frequency), as written.
Row = tuple[str, str, str, str]


def _csv_rows(path: Path, text: str) -> list[Row]:
    lines = list(csv.reader(io.StringIO(text)))
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
    is named by ``cohortDescription.population[].name`` (joined), else the file's stem."""
    from hfx_tools.io import read_hfx_bundle

    try:
        bundle = read_hfx_bundle(path)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise FrequencyError(path, "", "HFX bundle", str(exc) or type(exc).__name__) from exc
    md = bundle.metadata
    cohort = md.get("cohortDescription") or {}
    names = [str(p["name"]) for p in cohort.get("population") or []
             if isinstance(p, dict) and p.get("name")]
    population = "+".join(names) or path.stem
    resolution = {r.get("resolution") for r in md.get("outputResolution") or []
                  if isinstance(r, dict)}
    nomenclature = md.get("nomenclatureUsed") or {}
    licence = md.get("license")
    meta = {
        "loci": [r["locus"] for r in md.get("outputResolution") or []
                 if isinstance(r, dict) and r.get("locus")] or None,
        "resolution": resolution.pop() if len(resolution) == 1 else None,
        "release": nomenclature.get("version") if isinstance(nomenclature, dict) else None,
        "source": f"HFX {md.get('hfxID') or path.name}"
                  + (f" ({cohort['dataSource']})" if cohort.get("dataSource") else ""),
        "licence": licence if isinstance(licence, str) else json.dumps(licence) if licence
        else "",
    }
    rows = [(f"frequency row {n}", hap, population, str(freq))
            for n, (hap, freq) in enumerate(bundle.rows, 1)]
    return rows, meta


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
        if not freq > 0 or freq != freq or freq > 1:
            raise FrequencyError(self.path, line, "frequency",
                                 f"{freq_text!r} must be above 0 and at most 1")
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
