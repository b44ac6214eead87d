"""Synthetic registries for tests and benchmarks (``graftmatch registry generate``).

Nothing here is a real donor. Every donor's registry is ``SYNTHETIC-n``, every cord's bank
``SYNTHETIC-CBB-n``, every id starts ``SYN-``, and a ``<file>.meta.json`` beside the registry
says ``"synthetic": true``, so a generated record can never pass for a real one.

Each person gets two haplotypes drawn from a frequency set by frequency (Hardy-Weinberg), then
a typing masked to a resolution, because registries hold typings of every era, from serology
through intermediate resolution to NGS high resolution, and a donor search must cope with all
of them [15 Gragert 2013; 13 Bochtler 2016]. The shares of each resolution and every other
figure below are illustrative, chosen to look like a registry, not measured from one.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from graftmatch.atomic import atomic_file
from graftmatch.errors import GraftmatchError, TypingError
from graftmatch.nomenclature.names import split_name
from graftmatch.prediction.haplotypes import HaplotypeTable
from graftmatch.typing.parser import TypingReader

#: How a locus is written: not at all, at the set's resolution (2-field), as an allele list
#: sharing the first field (intermediate, SSO era), as an XX code, as a serological antigen.
UNTYPED, HIGH, LIST, XX, SEROLOGY = range(5)
#: Donor typing profiles and their shares (illustrative). Each maps the typed loci to a form;
#: ``rest`` is any other locus of the set (C, DQB1...) and the chance that it is typed.
DONOR_PROFILES: dict[str, tuple[float, int, int, float]] = {
    # name: (share, form at A/B/DRB1, form at other loci, chance another locus is typed)
    "high": (0.35, HIGH, HIGH, 1.0),
    "intermediate": (0.30, LIST, LIST, 0.5),
    "xx": (0.20, XX, XX, 0.3),
    "serology": (0.10, SEROLOGY, UNTYPED, 0.0),
    "abdrb1-high": (0.05, HIGH, UNTYPED, 0.0),
}
#: Cord units are typed at A, B and DRB1, mostly C too (the 6/6 and 8/8 cord rules), rarely
#: more; mostly at high resolution.
CORD_PROFILES: dict[str, tuple[float, int, int, float]] = {
    "high": (0.75, HIGH, HIGH, 0.25),
    "intermediate": (0.25, LIST, LIST, 0.25),
}
CORD_C_TYPED = 0.75
CORE_LOCI = ("A", "B", "DRB1")
#: ABO/Rh shares (O+, A+, B+, AB+, O-, A-, B-, AB-), as in a European population.
BLOOD_GROUPS = (("O", "+"), ("A", "+"), ("B", "+"), ("AB", "+"),
                ("O", "-"), ("A", "-"), ("B", "-"), ("AB", "-"))
BLOOD_SHARES = (0.37, 0.34, 0.09, 0.03, 0.07, 0.06, 0.02, 0.01)
REGISTRY_SHARES = (0.5, 0.3, 0.2)
#: Records are dated within the three years before this day (a fixed day: same seed, same file).
UPDATED_BEFORE = np.datetime64("2024-12-31")
COLUMNS = ("type", "id", "registry", "bank", "hla", "age", "sex", "abo", "rh", "cmv",
           "population", "status", "updated", "tnc_1e7", "cd34_1e5", "volume_ml")

Strings = npt.NDArray[np.object_]
#: Records drawn at a time.
BLOCK = 500_000


def generate_registry(out: Path, reader: TypingReader, table: HaplotypeTable, donors: int,
                      cords: int, seed: int = 0, *, population: str | None = None
                      ) -> dict[str, Any]:
    """Write ``donors`` donors and ``cords`` cord units to one CSV (gzipped when ``out`` ends
    in ``.gz``) that :func:`graftmatch.registry.files.read_records` reads, and its metadata to
    ``<out>.meta.json``; return the metadata. The same seed gives the same file."""
    if donors < 0 or cords < 0:
        raise GraftmatchError(f"cannot generate {donors} donors and {cords} cord units")
    rng = np.random.default_rng(seed)
    forms = _Forms(reader, table, rng)
    population = population or table.name
    donor_rows = _donor_rows(rng, forms, donors, population)
    cord_rows = _cord_rows(rng, forms, cords, population)
    with _csv_writer(out) as writer:
        writer.writerow(COLUMNS)
        writer.writerows(donor_rows)
        writer.writerows(cord_rows)
    meta = {"synthetic": True,
            "source": "graftmatch synthetic registry generator; NOT real donors",
            "seed": seed, "donors": donors, "cords": cords, "frequency_set": table.name,
            "population": population, "release": reader.index.release,
            "donor_resolutions": {k: v[0] for k, v in DONOR_PROFILES.items()},
            "cord_resolutions": {k: v[0] for k, v in CORD_PROFILES.items()}}
    with atomic_file(out.with_name(out.name + ".meta.json")) as handle:
        json.dump(meta, handle, indent=2)
        handle.write("\n")
    return meta


@contextmanager
def _csv_writer(out: Path) -> Iterator[Any]:
    """A csv writer on ``out``, gzipped (with no time stamp, so output is reproducible) for
    ``.gz``; the file appears only once complete."""
    if not out.name.endswith(".gz"):
        with atomic_file(out) as handle:
            yield csv.writer(handle, lineterminator="\n")
        return
    with atomic_file(out, "wb") as raw, \
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=6,
                          mtime=0) as packed, \
            io.TextIOWrapper(packed, encoding="utf-8", newline="") as text:
        yield csv.writer(text, lineterminator="\n")


class _Forms:
    """Every way each allele of the set can be written, checked once with the reader so that
    every generated typing parses: ``text[column][form, code]``, a column per locus of the set."""

    def __init__(self, reader: TypingReader, table: HaplotypeTable,
                 rng: np.random.Generator) -> None:
        self.table = table
        self.rng = rng
        index = reader.index
        # expressed 2-field names by (locus, first field): the other alleles an SSO typing
        # could not tell apart from the true one.
        siblings: dict[tuple[str, str], set[tuple[int, str]]] = {}
        for name in index.names:
            locus, fields, suffix = split_name(name)
            if len(fields) >= 2 and not suffix:
                siblings.setdefault((locus, fields[0]), set()).add(
                    (int(fields[1]), f"{locus}*{fields[0]}:{fields[1]}"))
        self.text: list[Strings] = []
        for vocab in table.vocab:
            forms = np.full((5, len(vocab.entries)), "", dtype=object)
            for code, (entry, name) in enumerate(zip(vocab.entries, vocab.names, strict=True)):
                allele = entry[0].alleles[0]
                locus, fields, _ = split_name(index.names[allele])
                xx = f"{locus}*{fields[0]}:XX"
                others = sorted(siblings.get((locus, fields[0]), set()))
                listed = sorted({(int(fields[1]), name),
                                 *[o for o in others if o[1] != name][:rng.integers(1, 4)]})
                forms[HIGH, code] = name
                forms[LIST, code] = _checked(reader, "/".join(n for _, n in listed), name)
                forms[XX, code] = xx
                forms[SEROLOGY, code] = _checked(reader, _antigen(index.serology[allele],
                                                                   index.broad_of), xx)
            self.text.append(forms)

    def typings(self, count: int, profiles: dict[str, tuple[float, int, int, float]],
                chance_of: dict[str, float]) -> Strings:
        """``count`` GL Strings: two haplotypes each, masked by a profile drawn by share;
        ``chance_of`` overrides, for some loci, the profile's chance that a locus beyond A, B
        and DRB1 is typed."""
        table, rng = self.table, self.rng
        freqs = table.freqs / table.freqs.sum()
        codes = table.codes[rng.choice(len(freqs), size=(count, 2), p=freqs)]
        shares = np.array([p[0] for p in profiles.values()])
        profile = rng.choice(len(shares), size=count, p=shares / shares.sum())
        core = [locus in CORE_LOCI for locus in table.loci]
        if not any(core):
            core = [True] * len(core)
        columns = []
        for col, forms in enumerate(self.text):
            form_of = np.array([p[1] if core[col] else p[2] for p in profiles.values()])
            form = form_of[profile]
            if not core[col]:
                locus = table.loci[col]
                chance = (np.full(count, chance_of[locus]) if locus in chance_of
                          else np.array([p[3] for p in profiles.values()])[profile])
                form[rng.random(count) >= chance] = UNTYPED
            genotype = forms[form, codes[:, 0, col]] + "+" + forms[form, codes[:, 1, col]]
            genotype[form == UNTYPED] = ""
            columns.append(genotype)
        return np.array(["^".join(filter(None, parts)) for parts in zip(*columns, strict=True)],
                        dtype=object)


def _antigen(antigens: list[str], broad_of: dict[str, str]) -> str:
    """The antigen a serological lab reports: the split (A24) rather than the broad (A9)."""
    splits = [a for a in antigens if a in broad_of]
    return (splits or antigens or [""])[0]


def _checked(reader: TypingReader, text: str, fallback: str) -> str:
    """``text`` if the reader reads it, else ``fallback`` (an allele without serology, or a
    list the release does not accept)."""
    try:
        reader.parse(text)
    except TypingError:
        return fallback
    return text


def _choose(rng: np.random.Generator, values: Sequence[Any], shares: Sequence[float],
            count: int) -> Strings:
    """``count`` draws of ``values`` in proportion to ``shares`` (rounded shares need not sum
    to exactly 1)."""
    p = np.asarray(shares, dtype=np.float64)
    return np.array(values, dtype=object)[rng.choice(len(values), size=count, p=p / p.sum())]


def _dates(rng: np.random.Generator, count: int) -> Strings:
    days = rng.integers(0, 3 * 365, size=count).astype("timedelta64[D]")
    return (UPDATED_BEFORE - days).astype(str).astype(object)


def _blood(rng: np.random.Generator, count: int) -> tuple[Strings, Strings]:
    groups = _choose(rng, [f"{abo}{rh}" for abo, rh in BLOOD_GROUPS], BLOOD_SHARES, count)
    return np.array([g[:-1] for g in groups], dtype=object), np.array([g[-1] for g in groups],
                                                                      dtype=object)


def _blocks(count: int) -> Iterator[tuple[int, int]]:
    """(first record number, records) of each block: a block's typings and attributes are
    drawn at once, so 40 million records are written in bounded memory."""
    for start in range(0, count, BLOCK):
        yield start, min(BLOCK, count - start)


def _donor_rows(rng: np.random.Generator, forms: _Forms, total: int,
                population: str) -> Iterator[tuple[Any, ...]]:
    for first, count in _blocks(total):
        yield from _donor_block(rng, forms, first, count, population)


def _donor_block(rng: np.random.Generator, forms: _Forms, first: int, count: int,
                 population: str) -> Iterator[tuple[Any, ...]]:
    hla = forms.typings(count, DONOR_PROFILES, {})
    # Registries recruit young donors (and prefer them: younger donors do better
    # [44 Dehn 2019]): ages 18 to 60, median about 28.
    age = 18 + rng.gamma(2.0, 6.0, size=count).astype(np.int64)
    old = age > 60
    age[old] = rng.integers(18, 61, size=int(old.sum()))
    sex = np.where(rng.random(count) < 0.55, "F", "M")
    abo, rh = _blood(rng, count)
    cmv = _choose(rng, ("positive", "negative", "unknown"), (0.5, 0.45, 0.05), count)
    status = _choose(rng, ("available", "temporarily-unavailable", "reserved"),
                     (0.9, 0.07, 0.03), count)
    registry = _choose(rng, ("SYNTHETIC-1", "SYNTHETIC-2", "SYNTHETIC-3"), REGISTRY_SHARES,
                       count)
    updated = _dates(rng, count)
    for i in range(count):
        yield ("donor", f"SYN-D{first + i + 1:07d}", registry[i], "", hla[i], int(age[i]), sex[i],
               abo[i], rh[i], cmv[i], population, status[i], updated[i], "", "", "")


def _cord_rows(rng: np.random.Generator, forms: _Forms, total: int,
               population: str) -> Iterator[tuple[Any, ...]]:
    for first, count in _blocks(total):
        yield from _cord_block(rng, forms, first, count, population)


def _cord_block(rng: np.random.Generator, forms: _Forms, first: int, count: int,
                population: str) -> Iterator[tuple[Any, ...]]:
    hla = forms.typings(count, CORD_PROFILES, {"C": CORD_C_TYPED})
    # Total nucleated cells per banked unit, x 10^7: median about 120, clipped to 50-250.
    tnc = np.clip(rng.lognormal(np.log(120.0), 0.35, size=count), 50.0, 250.0).round(1)
    # CD34+ cells are about 0.25% of nucleated cells (x 10^5: median about 30, i.e. 3 x 10^6
    # per unit, enough for 1.5 x 10^5/kg in a 20 kg child).
    cd34 = (tnc * 100 * rng.lognormal(np.log(0.0025), 0.5, size=count)).round(1)
    # Most banked units are volume-reduced to about 25 mL; older ones kept 60-150 mL.
    volume = np.where(rng.random(count) < 0.85, rng.uniform(20.0, 30.0, size=count),
                      rng.uniform(60.0, 150.0, size=count)).round(1)
    abo, rh = _blood(rng, count)
    status = _choose(rng, ("available", "reserved"), (0.95, 0.05), count)
    bank = _choose(rng, ("SYNTHETIC-CBB-1", "SYNTHETIC-CBB-2", "SYNTHETIC-CBB-3"),
                   REGISTRY_SHARES, count)
    updated = _dates(rng, count)
    for i in range(count):
        yield ("cord", f"SYN-C{first + i + 1:07d}", "", bank[i], hla[i], "", "", abo[i], rh[i], "",
               population, status[i], updated[i], float(tnc[i]), float(cd34[i]),
               float(volume[i]))
