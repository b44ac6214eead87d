"""The registry's search index: columnar arrays precomputed from the records.

Everything a search reads is here, as ``.npy`` files opened memory-mapped, so a search never
parses or imputes a donor typing:

* per record: kind, typing, source, age, sex, ABO, Rh, CMV, status, cord cell counts;
* per distinct typing (registries repeat typings, so this is the unit of work): its match
  states per locus (the compiled grading of :mod:`graftmatch.matching.batch`), DPB1 TCE
  groups, and its imputed genotypes as a compressed list (offsets, genotype ids,
  probabilities) into a dictionary of distinct genotypes, each a row of locus-genotype ids.

The index is built into a temporary folder and renamed into place, then recorded as current:
a process killed while building leaves the previous index in use.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from graftmatch.errors import TypingError
from graftmatch.matching.batch import BatchMatcher
from graftmatch.matching.grader import Matcher
from graftmatch.prediction.haplotypes import HaplotypeTable
from graftmatch.prediction.imputation import Imputer
from graftmatch.prediction.settings import ImputationSettings
from graftmatch.registry.store import Registry, RegistryError
from graftmatch.typing.parser import TypingReader

#: Loci graded at search time (counted loci are chosen per search among these).
SEARCH_LOCI = ("A", "B", "C", "DRB1", "DQB1", "DPB1")
KINDS = ("donor", "cord")
SEXES = ("U", "F", "M")
ABO = ("", "O", "A", "B", "AB")
RH = ("", "+", "-")
CMV = ("unknown", "negative", "positive")
STATUSES = ("available", "temporarily-unavailable", "reserved", "retired")
IMPUTATION_STATUS = ("ok", "fallback", "unrepresented", "error")
#: Genotypes kept per typing (most likely first); the rest is reported as truncated mass.
MAX_GENOTYPES_PER_TYPING = 500


@dataclass(frozen=True)
class IndexInfo:
    folder: str
    records: int
    typings: int
    genotypes: int
    seconds: float


def build_index(registry: Registry, reader: TypingReader, table: HaplotypeTable,
                settings: ImputationSettings, progress: Callable[[int, int], None] | None = None
                ) -> IndexInfo:
    """Build the index for the registry's current records and switch to it."""
    started = dt.datetime.now(dt.UTC)
    meta = registry.meta()
    version = meta["data_version"]
    columns = _record_columns(registry, started.date())
    typing_ids, record_typing = np.unique(columns.pop("typing_id"), return_inverse=True)
    columns["typing"] = record_typing.astype(np.int32)
    matcher = Matcher(reader.index)
    batch = BatchMatcher(matcher, SEARCH_LOCI)
    imputer = Imputer(table, settings)
    n = len(typing_ids)
    states = np.full((n, len(SEARCH_LOCI), 2), -1, dtype=np.int32)
    tce = np.zeros(n, dtype=np.int8)
    complex_ = np.zeros(n, dtype=np.bool_)
    status = np.zeros(n, dtype=np.int8)
    truncated = np.zeros(n, dtype=np.float32)
    offsets = np.zeros(n + 1, dtype=np.int64)
    geno_ids: list[npt.NDArray[np.int32]] = []
    geno_probs: list[npt.NDArray[np.float32]] = []
    dictionary = _GenotypeDictionary(table.loci)
    done = 0
    for start in range(0, n, 20_000):
        chunk = [int(t) for t in typing_ids[start:start + 20_000]]
        texts = registry.typings(chunk)
        for k, tid in enumerate(chunk):
            i = start + k
            try:
                typing = reader.parse(texts[tid])
            except TypingError:  # refused at import; only a release change can cause this
                status[i] = IMPUTATION_STATUS.index("error")
                offsets[i + 1] = offsets[i]
                continue
            tce[i], complex_[i] = batch.encode_into(typing, states[i])
            result = imputer.impute(typing)
            status[i] = IMPUTATION_STATUS.index(result.status)
            g = result.genotypes
            keep = min(len(g), MAX_GENOTYPES_PER_TYPING)
            truncated[i] = result.truncated_mass + float(g.probabilities[keep:].sum())
            geno_ids.append(dictionary.ids(g, keep))
            geno_probs.append(g.probabilities[:keep].astype(np.float32))
            offsets[i + 1] = offsets[i] + keep
        done += len(chunk)
        if progress is not None:
            progress(done, n)
    arrays: dict[str, npt.NDArray[Any]] = {
        **columns, "states": states, "tce": tce, "complex": complex_, "imputation": status,
        "truncated": truncated, "geno_offsets": offsets,
        "geno_ids": np.concatenate(geno_ids) if geno_ids else np.empty(0, np.int32),
        "geno_probs": np.concatenate(geno_probs) if geno_probs else np.empty(0, np.float32),
        "genotypes": dictionary.rows(), "typing_ids": typing_ids.astype(np.int64),
    }
    info = {
        "data_version": version, "built": started.isoformat(), "release": reader.index.release,
        "frequency_set": meta["frequency_set"], "population": table.name,
        "search_loci": list(SEARCH_LOCI), "imputation_loci": list(table.loci),
        "state_keys": batch.state_keys(), "locus_genotypes": dictionary.texts,
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


def _record_columns(registry: Registry, today: dt.date) -> dict[str, npt.NDArray[Any]]:
    rows: dict[str, list[Any]] = {k: [] for k in (
        "row", "kind", "source", "typing_id", "age", "sex", "abo", "rh", "cmv", "status",
        "tnc_1e7", "cd34_1e5")}
    sources = {s: i for i, s in enumerate(registry.sources())}
    for rec in registry.iter_records():
        rows["row"].append(rec["row"])
        rows["kind"].append(KINDS.index(rec["kind"]))
        rows["source"].append(sources[rec["source"]])
        rows["typing_id"].append(rec["typing_id"])
        rows["age"].append(_age(rec, today))
        rows["sex"].append(SEXES.index(rec["sex"] or "U"))
        rows["abo"].append(ABO.index(rec["abo"] or ""))
        rows["rh"].append(RH.index(rec["rh"] or ""))
        rows["cmv"].append(CMV.index(rec["cmv"] or "unknown"))
        rows["status"].append(STATUSES.index(rec["status"] or "available"))
        rows["tnc_1e7"].append(rec["tnc_1e7"] if rec["tnc_1e7"] is not None else np.nan)
        rows["cd34_1e5"].append(rec["cd34_1e5"] if rec["cd34_1e5"] is not None else np.nan)
    if not rows["row"]:
        raise RegistryError(f"{registry.path} has no records to index")
    types = {"row": np.int64, "kind": np.int8, "source": np.int16, "typing_id": np.int64,
             "age": np.float32, "sex": np.int8, "abo": np.int8, "rh": np.int8, "cmv": np.int8,
             "status": np.int8, "tnc_1e7": np.float32, "cd34_1e5": np.float32}
    return {k: np.asarray(v, dtype=types[k]) for k, v in rows.items()}


def _age(rec: dict[str, Any], today: dt.date) -> float:
    if rec["birth_date"]:
        born = dt.date.fromisoformat(rec["birth_date"])
        return float(today.year - born.year - ((today.month, today.day) < (born.month,
                                                                               born.day)))
    return float(rec["age"]) if rec["age"] is not None else np.nan


class _GenotypeDictionary:
    """Distinct imputed genotypes, each a row of per-locus genotype ids (``A*01:01+A*02:01``
    at locus A -> one id), so a registry stores each genotype once."""

    def __init__(self, loci: tuple[str, ...]) -> None:
        self.loci = loci
        self.texts: list[list[str]] = [[] for _ in loci]
        self._locus_ids: list[dict[str, int]] = [{} for _ in loci]
        self._ids: dict[bytes, int] = {}
        self._rows: list[npt.NDArray[np.int32]] = []

    def __len__(self) -> int:
        return len(self._rows)

    def ids(self, genotypes: Any, keep: int) -> npt.NDArray[np.int32]:
        out = np.empty(keep, dtype=np.int32)
        per_locus = []
        for col in range(len(self.loci)):
            # Distinct locus genotypes of this subject first (few), then one id per genotype.
            codes = genotypes.codes[:keep, col, :]
            distinct, inverse = np.unique(codes, axis=0, return_inverse=True)
            local = np.array([self._locus_id(col, genotypes.vocab[col].names, pair)
                              for pair in distinct], dtype=np.int32)
            per_locus.append(local[inverse.ravel()])
        rows = np.stack(per_locus, axis=1) if per_locus else np.empty((keep, 0), np.int32)
        for g in range(keep):
            key = rows[g].tobytes()
            gid = self._ids.get(key)
            if gid is None:
                gid = self._ids[key] = len(self._rows)
                self._rows.append(rows[g].copy())
            out[g] = gid
        return out

    def _locus_id(self, col: int, names: list[str], pair: npt.NDArray[np.int32]) -> int:
        text = "+".join(sorted((names[pair[0]], names[pair[1]])))
        ids = self._locus_ids[col]
        lid = ids.get(text)
        if lid is None:
            lid = ids[text] = len(self.texts[col])
            self.texts[col].append(text)
        return lid

    def rows(self) -> npt.NDArray[np.int32]:
        if not self._rows:
            return np.empty((0, len(self.loci)), dtype=np.int32)
        return np.stack(self._rows).astype(np.int32)


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
    return SearchIndex(registry.path / meta["index_folder"])
