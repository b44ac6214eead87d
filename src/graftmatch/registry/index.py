"""The registry's search index: columnar arrays precomputed from the records.

Everything a search reads is here, as ``.npy`` files opened memory-mapped, so a search never
parses or imputes a donor typing:

* per record: kind, typing, source, age, sex, ABO, Rh, CMV, status, cord cell counts, and
  whether its stated population (or, unstated, the registry's) differs from the one its
  typing was imputed with (every typing is imputed with the registry's population);
* per distinct typing (registries repeat typings, so this is the unit of work): its match
  states per locus (the compiled grading of :mod:`graftmatch.matching.batch`), DPB1 TCE
  groups, whether it is exact (no frequencies read), and its imputed genotypes as a compressed
  list (offsets, genotype ids, probabilities) into a dictionary of distinct genotypes, each a
  row of locus-genotype ids.

The index is built into a temporary folder and renamed into place, then recorded as current:
a process killed while building leaves the previous index in use.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from graftmatch.errors import TypingError
from graftmatch.matching.batch import BatchMatcher
from graftmatch.matching.grader import Matcher
from graftmatch.parallel import default_workers, ordered_map
from graftmatch.prediction.haplotypes import HaplotypeTable
from graftmatch.prediction.imputation import Imputer
from graftmatch.prediction.settings import ImputationSettings
from graftmatch.registry.genotypes import GenotypeDictionary
from graftmatch.registry.store import Registry, RegistryError
from graftmatch.typing.parser import TypingReader

#: Loci graded at search time (counted loci are chosen per search among these). DRB3/4/5 are
#: graded for every candidate, as a tie-breaker reads them, and counted only when asked for.
SEARCH_LOCI = ("A", "B", "C", "DRB1", "DQB1", "DPB1", "DRB3", "DRB4", "DRB5")
KINDS = ("donor", "cord")
SEXES = ("U", "F", "M")
ABO = ("", "O", "A", "B", "AB")
RH = ("", "+", "-")
CMV = ("unknown", "negative", "positive")
STATUSES = ("available", "temporarily-unavailable", "reserved", "retired")
IMPUTATION_STATUS = ("ok", "fallback", "unrepresented", "error", "population-substituted")
#: Bump when the index's files change: an index of another layout is rebuilt, never misread.
LAYOUT = 2
#: Genotypes kept per typing (most likely first); the rest is reported as truncated mass.
MAX_GENOTYPES_PER_TYPING = 500


@dataclass(frozen=True)
class IndexInfo:
    folder: str
    records: int
    typings: int
    genotypes: int
    seconds: float


#: Distinct typings handed to a worker at a time.
CHUNK = 5_000


def build_index(registry: Registry, reader: TypingReader, table: HaplotypeTable,
                settings: ImputationSettings, progress: Callable[[int, int], None] | None = None,
                workers: int | None = None) -> IndexInfo:
    """Build the index for the registry's current records and switch to it.

    Distinct typings are parsed, encoded and imputed by ``workers`` processes (default: one
    per core), in chunks, while this process gathers their genotypes into the dictionary.
    """
    started = dt.datetime.now(dt.UTC)
    meta = registry.meta()
    version = meta["data_version"]
    stated = ("", *registry.populations())
    columns = _record_columns(registry, started.date(), stated)
    # Records stating no population stand for the registry's; neither known: not flagged.
    asked = [name or meta["population"] for name in stated]
    substituted = sorted({a for a in asked if a and a != table.name})
    flag = np.array([substituted.index(a) + 1 if a in substituted else 0 for a in asked] + [0],
                    dtype=np.int16)
    columns["population_substituted"] = flag[columns.pop("population")]  # -1 takes the last
    typing_ids, record_typing = np.unique(columns.pop("typing_id"), return_inverse=True)
    columns["typing"] = record_typing.astype(np.int32)
    n = len(typing_ids)
    states = np.full((n, len(SEARCH_LOCI), 2), -1, dtype=np.int32)
    tce = np.zeros(n, dtype=np.int8)
    complex_ = np.zeros(n, dtype=np.bool_)
    exact = np.zeros(n, dtype=np.bool_)
    status = np.zeros(n, dtype=np.int8)
    truncated = np.zeros(n, dtype=np.float32)
    counts = np.zeros(n, dtype=np.int64)
    geno_ids: list[npt.NDArray[np.int32]] = []
    geno_probs: list[npt.NDArray[np.float32]] = []
    dictionary = GenotypeDictionary(table.loci, [v.names for v in table.vocab])
    # Workers number match states in their own order; they are renumbered here by their key.
    state_ids: list[dict[tuple[str, str], int]] = [{} for _ in SEARCH_LOCI]
    _Worker.setup(reader, table, settings)

    def texts() -> Iterator[list[str]]:
        for start in range(0, n, CHUNK):
            chunk = [int(t) for t in typing_ids[start:start + CHUNK]]
            found = registry.typings(chunk)
            yield [found[t] for t in chunk]

    done = 0
    for part in ordered_map(_Worker.run, texts(), workers or default_workers()):
        k = slice(done, done + len(part.tce))
        for li, keys in enumerate(part.state_keys):
            ids = state_ids[li]
            remap = np.array([ids.setdefault(key, len(ids)) for key in keys] + [-1], np.int32)
            states[k, li] = remap[part.states[:, li]]  # -1 (untyped) takes the last entry
        tce[k], complex_[k], exact[k] = part.tce, part.complex, part.exact
        status[k], truncated[k], counts[k] = part.status, part.truncated, part.counts
        geno_ids.append(dictionary.add(part.codes, part.extra))
        geno_probs.append(part.probs)
        done += len(part.tce)
        if progress is not None:
            progress(done, n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    arrays: dict[str, npt.NDArray[Any]] = {
        **columns, "states": states, "tce": tce, "complex": complex_, "exact": exact,
        "imputation": status,
        "truncated": truncated, "geno_offsets": offsets,
        "geno_ids": np.concatenate(geno_ids) if geno_ids else np.empty(0, np.int32),
        "geno_probs": np.concatenate(geno_probs) if geno_probs else np.empty(0, np.float32),
        "genotypes": dictionary.rows(), "typing_ids": typing_ids.astype(np.int64),
    }
    del geno_ids, geno_probs
    info = {
        "data_version": version, "built": started.isoformat(), "release": reader.index.release,
        "layout": LAYOUT, "frequency_set": meta["frequency_set"], "population": table.name,
        # Populations stated by records imputed with another: the per-record column
        # population_substituted holds 1 + the position here, 0 when not substituted.
        "population_substituted": substituted,
        "search_loci": list(SEARCH_LOCI), "imputation_loci": list(table.loci),
        "state_keys": [[list(key) for key in ids] for ids in state_ids],
        "locus_genotypes": dictionary.texts,
        "sources": registry.sources(), "max_genotypes_per_typing":
            MAX_GENOTYPES_PER_TYPING,
    }
    folder = _write(registry.path, version, arrays, info)
    registry.set_meta(index_version=version, index_folder=folder.name)
    for old in registry.path.glob("index-*"):
        if old.is_dir() and old.name != folder.name:
            shutil.rmtree(old, ignore_errors=True)
    seconds = (dt.datetime.now(dt.UTC) - started).total_seconds()
    return IndexInfo(folder.name, len(record_typing), n, len(dictionary), seconds)


@dataclass
class _Part:
    """What a worker computed for one chunk of distinct typings."""

    states: npt.NDArray[np.int32]
    tce: npt.NDArray[np.int8]
    complex: npt.NDArray[np.bool_]
    exact: npt.NDArray[np.bool_]
    status: npt.NDArray[np.int8]
    truncated: npt.NDArray[np.float32]
    counts: npt.NDArray[np.int64]
    #: Kept genotypes of the chunk, typing after typing: codes[g, locus, copy] into the set's
    #: vocabulary, or past it into ``extra`` (typed alleles a fallback added).
    codes: npt.NDArray[np.int32]
    probs: npt.NDArray[np.float32]
    extra: list[list[str]]
    #: Per search locus, the (typed, acting) allele lists of the chunk's states; ``states``
    #: numbers them in this order.
    state_keys: list[list[tuple[str, str]]]


class _Worker:
    """Per-process state for indexing: set up in the parent before the pool forks, so workers
    inherit the release, table and compiled kernels instead of loading their own."""

    batch: BatchMatcher
    imputer: Imputer
    reader: TypingReader
    #: Per locus of the set: vocabulary name -> code.
    positions: list[dict[str, int]]

    @classmethod
    def setup(cls, reader: TypingReader, table: HaplotypeTable,
              settings: ImputationSettings) -> None:
        cls.reader = reader
        cls.batch = BatchMatcher(Matcher(reader.index), SEARCH_LOCI)
        cls.imputer = Imputer(table, settings)
        cls.positions = [{name: i for i, name in enumerate(v.names)} for v in table.vocab]

    @classmethod
    def run(cls, texts: list[str]) -> _Part:
        k = len(texts)
        table = cls.imputer.table
        part = _Part(np.full((k, len(SEARCH_LOCI), 2), -1, dtype=np.int32),
                     np.zeros(k, np.int8), np.zeros(k, np.bool_), np.zeros(k, np.bool_),
                     np.zeros(k, np.int8),
                     np.zeros(k, np.float32), np.zeros(k, np.int64),
                     np.empty((0, len(table.loci), 2), np.int32), np.empty(0, np.float32),
                     [[] for _ in table.loci], [])
        extra_ids: list[dict[str, int]] = [{} for _ in table.loci]
        codes, probs = [], []
        for i, text in enumerate(texts):
            try:
                typing = cls.reader.parse(text)
            except TypingError:  # refused at import; only a release change can cause this
                part.status[i] = IMPUTATION_STATUS.index("error")
                continue
            part.tce[i], part.complex[i] = cls.batch.encode_into(typing, part.states[i])
            result = cls.imputer.impute(typing)
            part.status[i] = IMPUTATION_STATUS.index(result.status)
            part.exact[i] = result.method == "typed"
            g = result.genotypes
            keep = min(len(g), MAX_GENOTYPES_PER_TYPING)
            part.truncated[i] = result.truncated_mass + float(g.probabilities[keep:].sum())
            part.counts[i] = keep
            c = g.codes[:keep].astype(np.int32)
            for col, vocab in enumerate(g.vocab):
                if vocab is not table.vocab[col]:  # a fallback's own vocabulary: by name
                    c[:, col, :] = cls._recode(col, vocab.names, c[:, col, :],
                                               extra_ids[col])
            codes.append(c)
            probs.append(g.probabilities[:keep].astype(np.float32))
        if codes:
            part.codes, part.probs = np.concatenate(codes), np.concatenate(probs)
        part.extra = [list(ids) for ids in extra_ids]  # dicts keep their numbering order
        for li in range(len(SEARCH_LOCI)):
            column = part.states[:, li]
            typed = column >= 0
            used, local = np.unique(column[typed], return_inverse=True)
            column[typed] = local
            slots = (cls.batch.slot(li, int(u)) for u in used)
            part.state_keys.append([(s.typed.text, s.acting.text) for s in slots])
        return part

    @classmethod
    def _recode(cls, col: int, names: list[str], codes: npt.NDArray[np.int32],
                extra: dict[str, int]) -> npt.NDArray[np.int32]:
        """Codes of a fallback's own vocabulary, by name: the set's entries get their code in
        the set, typed alleles the set lacks are numbered past it (in ``extra``)."""
        position = cls.positions[col]
        mapping = np.array([position[name] if name in position
                            else len(position) + extra.setdefault(name, len(extra))
                            for name in names], dtype=np.int32)
        return mapping[codes]


def _record_columns(registry: Registry, today: dt.date, populations: tuple[str, ...]
                    ) -> dict[str, npt.NDArray[Any]]:
    """The records as columns, streamed from the store into arrays chunk by chunk (a record's
    population as its position in ``populations``, whose first entry is the empty one)."""
    names = ("row", "kind", "source", "typing_id", "age", "sex", "abo", "rh", "cmv", "status",
             "tnc_1e7", "cd34_1e5", "population")
    types = {"row": np.int64, "kind": np.int8, "source": np.int16, "typing_id": np.int64,
             "age": np.float32, "sex": np.int8, "abo": np.int8, "rh": np.int8, "cmv": np.int8,
             "status": np.int8, "tnc_1e7": np.float32, "cd34_1e5": np.float32,
             "population": np.int16}
    total = sum(registry.count().values())
    if not total:
        raise RegistryError(f"{registry.path} has no records to index")
    out = {name: np.empty(total, dtype=types[name]) for name in names}
    codes = {"kind": KINDS, "sex": SEXES, "abo": ABO, "rh": RH, "cmv": CMV,
             "status": STATUSES, "population": populations}
    done = 0
    for rows in registry.coded_records(codes, today):
        block = np.array(rows, dtype=np.float64)
        for j, name in enumerate(names):
            out[name][done:done + len(rows)] = block[:, j]
        done += len(rows)
    return out


def _write(root: Path, version: str, arrays: dict[str, npt.NDArray[Any]],
           info: dict[str, Any]) -> Path:
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".index-building-"))
    try:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(array))
        (tmp / "index.json").write_text(json.dumps(info))
        final = root / f"index-v{version}-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S%f')}"
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


class SearchIndex:
    """A built index, memory-mapped."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        try:
            self.info: dict[str, Any] = json.loads((folder / "index.json").read_text())
        except (OSError, ValueError) as exc:
            raise RegistryError(f"cannot read the search index in {folder}: {exc}") from exc

    def __getattr__(self, name: str) -> npt.NDArray[Any]:
        path = self.folder / f"{name}.npy"
        if not path.exists():
            raise AttributeError(name)
        array: npt.NDArray[Any] = np.load(path, mmap_mode="r")
        setattr(self, name, array)
        return array

    @cached_property
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.iterdir())


def open_index(registry: Registry) -> SearchIndex:
    meta = registry.meta()
    if meta.get("index_version") != meta.get("data_version") or "index_folder" not in meta:
        raise RegistryError(f"the search index of {registry.path} is out of date (records "
                            "changed since it was built); run 'graftmatch registry refresh'")
    index = SearchIndex(registry.path / meta["index_folder"])
    if index.info.get("layout") != LAYOUT:
        raise RegistryError(f"the search index of {registry.path} was built by another "
                            "graftmatch version; run 'graftmatch registry refresh'")
    return index
