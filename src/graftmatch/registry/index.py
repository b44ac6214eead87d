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

Builds run one at a time (the registry's build lock). The index is built into a folder
recorded in the registry before it exists, renamed into place, then switched in with the
registry's settings in one transaction: a process killed while building leaves the previous
index in use, and the next build removes what it left. Every file's size, header and SHA-256
are recorded in ``index.json``, whose SHA-256 the registry records: opening checks sizes,
headers and the files up to 1 MiB (milliseconds), :meth:`SearchIndex.verify` reads every byte.
A search holds a shared lock on the index it opened until it ends; an old index is removed by
a later build once no search holds it.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from io import BufferedWriter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from graftmatch.errors import TypingError
from graftmatch.matching.batch import BatchMatcher
from graftmatch.matching.grader import Matcher
from graftmatch.nesting import json_loads
from graftmatch.parallel import default_workers, ordered_map
from graftmatch.prediction.haplotypes import HaplotypeTable
from graftmatch.prediction.imputation import Imputer
from graftmatch.prediction.settings import ImputationSettings
from graftmatch.registry.genotypes import GenotypeDictionary
from graftmatch.registry.store import Registry, RegistryError, sha256_of
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
LAYOUT = 3
#: Files up to this size are checksummed whenever an index is opened; larger ones by
#: :meth:`SearchIndex.verify` (``registry stats`` and ``refresh``).
CHECKSUMMED_ON_OPEN = 1 << 20
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
                workers: int | None = None, *, waiting: Callable[[], None] | None = None,
                recorded: Mapping[str, str] | None = None) -> IndexInfo:
    """Build the index for the registry's current records and switch to it, recording
    ``recorded`` in the registry's settings with it.

    Distinct typings are parsed, encoded and imputed by ``workers`` processes (default: one
    per core), in chunks, while this process gathers their genotypes into the dictionary.
    ``waiting`` is called if another process is building this registry's index first.
    """
    with registry.build_lock(waiting):
        _remove_unused(registry)  # what killed builds left, and old indexes no search holds
        info = _build(registry, reader, table, settings, progress, workers, recorded or {})
        _remove_unused(registry)
    return info


def _build(registry: Registry, reader: TypingReader, table: HaplotypeTable,
           settings: ImputationSettings, progress: Callable[[int, int], None] | None,
           workers: int | None, recorded: Mapping[str, str]) -> IndexInfo:
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
    folder, digest = _write(registry, version, arrays, info)
    registry.switch_index(folder, **recorded, index_version=version, index_sha256=digest)
    seconds = (dt.datetime.now(dt.UTC) - started).total_seconds()
    return IndexInfo(folder, len(record_typing), n, len(dictionary), seconds)


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


def _write(registry: Registry, version: str, arrays: dict[str, npt.NDArray[Any]],
           info: dict[str, Any]) -> tuple[str, str]:
    """Write the index into a new folder, recorded first; return its name and the SHA-256
    of its ``index.json``."""
    name = f"index-v{version}-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S%f')}"
    registry.record_index_folder(name)
    tmp = registry.path / _building(name)
    try:
        tmp.mkdir(mode=0o700)
        files = {}
        for column, array in arrays.items():
            path = tmp / f"{column}.npy"
            with _private(path) as handle:
                np.save(handle, np.ascontiguousarray(array))
            files[path.name] = {"bytes": path.stat().st_size, "sha256": sha256_of(path),
                                "dtype": array.dtype.str, "shape": list(array.shape)}
        text = json.dumps({**info, "files": files}).encode()
        with _private(tmp / "index.json") as handle:
            handle.write(text)
        tmp.rename(registry.path / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        registry.forget_index_folder(name)
        raise
    return name, hashlib.sha256(text).hexdigest()


def _building(name: str) -> str:
    """Where the index folder ``name`` is built."""
    return f".index-building-{name.removeprefix('index-')}"


def _private(path: Path) -> BufferedWriter:
    return open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def _remove_unused(registry: Registry) -> None:
    """Remove the index folders graftmatch made that are not current: leftovers of killed
    builds, and retired indexes no search holds (those wait for a later build). Called
    under the build lock, so no build is using them."""
    for name, state in registry.index_folders().items():
        if state == "building":
            removed = _remove(registry.path / _building(name)) and _remove(
                registry.path / name)
        elif state == "retired":
            removed = _remove_unless_held(registry.path / name)
        else:
            continue
        if removed:
            registry.forget_index_folder(name)


def _remove_unless_held(folder: Path) -> bool:
    try:
        fd = os.open(folder / "index.json", os.O_RDONLY)
    except FileNotFoundError:  # no search can hold it
        return _remove(folder)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    try:  # locked while removing: a search that opened it meanwhile sees it is gone
        return _remove(folder)
    finally:
        os.close(fd)


def _remove(folder: Path) -> bool:
    """Remove a folder (gone already is fine); False if it could not be removed."""
    try:
        shutil.rmtree(folder)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


class IndexDamaged(RegistryError):
    """An index file differs from what was recorded when the index was built."""

    def __init__(self, registry: Path, detail: str) -> None:
        self.detail = detail
        super().__init__(f"the search index of {registry} is damaged ({detail}); run "
                         "'graftmatch registry refresh'")


class SearchIndex:
    """A built index, memory-mapped and checked on opening (see :func:`open_index`). It holds
    a shared lock on its folder until closed or collected, so no build removes it meanwhile."""

    def __init__(self, registry: Path, folder: Path, lock: int, digest: str | None) -> None:
        self.folder, self._registry = folder, registry
        self._closed = weakref.finalize(self, os.close, lock)
        try:
            self._open(lock, digest)
        except BaseException:
            self.close()
            raise

    def _open(self, lock: int, digest: str | None) -> None:
        registry, folder = self._registry, self.folder
        with open(lock, "rb", closefd=False) as handle:
            text = handle.read()
        try:
            self.info: dict[str, Any] = json_loads(text)
        except ValueError:
            self.info = {}
        if self.info.get("layout") != LAYOUT:
            raise RegistryError(f"the search index of {registry} was built by another "
                                "graftmatch version; run 'graftmatch registry refresh'")
        if hashlib.sha256(text).hexdigest() != digest:
            raise IndexDamaged(registry, "index.json: changed since it was built")
        self._arrays: dict[str, npt.NDArray[Any]] = {}
        for name, recorded in self.info["files"].items():
            path = folder / name
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                raise IndexDamaged(registry, f"{name}: missing") from None
            if size != recorded["bytes"]:
                raise IndexDamaged(registry, f"{name}: {size:,} bytes, {recorded['bytes']:,} "
                                   "when built")
            if size <= CHECKSUMMED_ON_OPEN:
                self._check_sum(name)
            try:
                array: npt.NDArray[Any] = np.load(path, mmap_mode="r")
            except ValueError as exc:
                raise IndexDamaged(registry, f"{name}: {exc}") from None
            if (array.dtype.str, list(array.shape)) != (recorded["dtype"], recorded["shape"]):
                raise IndexDamaged(registry, f"{name}: {array.dtype.str} {list(array.shape)}, "
                                   f"{recorded['dtype']} {recorded['shape']} when built")
            self._arrays[name.removesuffix(".npy")] = array

    def __getattr__(self, name: str) -> npt.NDArray[Any]:
        try:
            return self.__dict__["_arrays"][name]  # type: ignore[no-any-return]
        except KeyError:
            raise AttributeError(name) from None

    def verify(self) -> None:
        """Check every file against its recorded SHA-256 (reads the whole index)."""
        for name in self.info["files"]:
            self._check_sum(name)

    def close(self) -> None:
        """Release the index for removal (its arrays stay readable while mapped)."""
        self._closed()

    def _check_sum(self, name: str) -> None:
        if sha256_of(self.folder / name) != self.info["files"][name]["sha256"]:
            raise IndexDamaged(self._registry, f"{name}: changed since it was built")

    @cached_property
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.iterdir())


def open_index(registry: Registry) -> SearchIndex:
    """The registry's current index, checked and held (see :class:`SearchIndex`)."""
    while True:
        meta = registry.meta()
        if meta.get("index_version") != meta.get("data_version") or "index_folder" not in meta:
            raise RegistryError(f"the search index of {registry.path} is out of date (records "
                                "changed since it was built); run 'graftmatch registry "
                                "refresh'")
        folder = registry.path / meta["index_folder"]
        try:
            lock = os.open(folder / "index.json", os.O_RDONLY)
        except FileNotFoundError:
            if registry.meta().get("index_folder") != meta["index_folder"]:
                continue  # a build switched in a new index and removed this one meanwhile
            raise IndexDamaged(registry.path, f"{folder.name}/index.json: missing") from None
        fcntl.flock(lock, fcntl.LOCK_SH)  # waits while a build removes it
        if os.fstat(lock).st_nlink:
            return SearchIndex(registry.path, folder, lock, meta.get("index_sha256"))
        os.close(lock)  # removed before this search held it: read the registry again


def verified_index(registry: Registry) -> SearchIndex:
    """The current index with every byte checked (:meth:`SearchIndex.verify`)."""
    index = open_index(registry)
    try:
        index.verify()
    except BaseException:
        index.close()
        raise
    return index
