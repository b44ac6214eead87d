"""Donor registries: create and import records, refresh the search index, summarise, write a
synthetic registry, and the demo registry."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError

from graftmatch.errors import GraftmatchError
from graftmatch.nomenclature.release import home_dir
from graftmatch.prediction.frequencies import read_frequency_set
from graftmatch.prediction.haplotypes import HaplotypeTable
from graftmatch.prediction.settings import default_settings
from graftmatch.registry.index import (
    IMPUTATION_STATUS,
    LAYOUT,
    IndexDamaged,
    IndexInfo,
    build_index,
    verified_index,
)
from graftmatch.registry.limits import load_limits
from graftmatch.registry.store import (
    ImportReport,
    Registry,
    RegistryError,
    database_error,
    sha256_of,
)
from graftmatch.services.common import Notify, Progress, no_notice, no_progress
from graftmatch.services.prediction import compile_population
from graftmatch.services.reference import open_reader
from graftmatch.typing.parser import TypingReader


@contextmanager
def database_errors(registry: Path) -> Iterator[None]:
    """A database error met inside as a :class:`RegistryError` with SQLite's reason only
    (SQLAlchemy's message carries the statement's parameters, i.e. record values)."""
    try:
        yield
    except DBAPIError as exc:
        raise database_error(registry, exc) from None


def registry_table(registry: Registry, reader: TypingReader, population: str | None = None
                   ) -> tuple[HaplotypeTable, tuple[str, ...]]:
    """The registry's frequency set compiled for ``population`` (default: the registry's
    own), with the fallback steps taken to choose it."""
    meta = registry.meta()
    freq_set = read_frequency_set(Path(meta["frequency_set"]), reader)
    return compile_population(freq_set, population or meta["population"] or None, reader)


@dataclass(frozen=True)
class IndexRefresh:
    """What a refresh did: nothing (up to date) or a build (``built``), and the damage or
    layout change it repaired on the way (``damage``)."""

    built: IndexInfo | None
    damage: str = ""

    @property
    def message(self) -> str:
        info = self.built
        if info is None:
            return "search index is up to date"
        return (f"{self.damage}search index built: {info.records:,} records, "
                f"{info.typings:,} distinct typings, {info.genotypes:,} distinct genotypes in "
                f"{info.seconds:.1f} s")

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {"built": dataclasses.asdict(self.built) if self.built else None,
                "damage": self.damage or None, "message": self.message}


def refresh_index(registry: Registry, reader: TypingReader, *, force: bool = False,
                  progress: Progress = no_progress, notify: Notify = no_notice
                  ) -> IndexRefresh:
    """Rebuild the index when records, release, frequency set or index layout changed, or
    an index file is damaged (always with ``force``)."""
    meta = registry.meta()
    current = {"release": reader.index.release,
               "frequency_set_sha256": sha256_of(Path(meta["frequency_set"])),
               "index_layout": str(LAYOUT)}
    changed = [k for k, v in current.items() if meta.get(k) != v]
    damage = ""
    if not (force or registry.stale or changed):
        try:
            verified_index(registry).close()
            return IndexRefresh(None)
        except RegistryError as exc:  # damaged, or of another layout than recorded
            damage = "search index {}; ".format(
                f"damaged ({exc.detail})" if isinstance(exc, IndexDamaged) else
                "built by another graftmatch version")
    if changed and not registry.stale and "index_folder" in meta:
        registry.set_meta(index_version="-1")
    stage = "imputing and indexing typings"
    progress(stage, 0, None)
    info = build_index(registry, reader, registry_table(registry, reader)[0], default_settings(),
                       lambda done, total: progress(stage, done, total),
                       waiting=lambda: notify(
                           "waiting for another process building the search index of "
                           f"{registry.path} to finish"),
                       recorded=current)
    return IndexRefresh(info, damage)


def refresh(registry: Path, *, force: bool = False, progress: Progress = no_progress,
            notify: Notify = no_notice) -> IndexRefresh:
    """Open the registry folder and refresh its index."""
    with database_errors(registry):
        return refresh_index(Registry(registry), open_reader(), force=force,
                             progress=progress, notify=notify)


def _loading(stage: str, progress: Progress, total: int | None = None
             ) -> Callable[[int], None]:
    """An import's advance-by-n callback as a :data:`Progress` of ``stage``."""
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        progress(stage, done, total)
    progress(stage, 0, total)
    return advance


@dataclass(frozen=True)
class RegistryImport:
    """An import done (``report``: committed) and the index refresh after it: ``index``, or
    ``index_error`` when the refresh failed (the records stay imported)."""

    report: ImportReport
    index: IndexRefresh | None
    index_error: GraftmatchError | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"import": dataclasses.asdict(self.report),
                "index": self.index.to_dict() if self.index else None,
                "index_error": str(self.index_error) if self.index_error else None}


def import_records(registry: Path, source: Path, *, hf: Path | None = None,
                   population: str | None = None, again: bool = False,
                   limits: Path | None = None, progress: Progress = no_progress,
                   notify: Notify = no_notice) -> RegistryImport:
    """Import a file of donors and cord units into the registry folder (creating it, with the
    frequency set ``hf`` and its ``population`` for imputation, when it is new) in one
    transaction, in file order, then refresh the search index. A failed import raises; a
    failed refresh after it is returned with the import's report."""
    with database_errors(registry):
        reader = open_reader()
        bounds = load_limits(limits) if limits else None
        if not (registry / "registry.sqlite").exists():
            if hf is None:
                raise RegistryError(f"{registry} is new: give --hf (and --population) for "
                                    "its imputation")
            Registry.create(registry, release=reader.index.release,
                            frequency_set=str(hf.resolve()), population=population or "")
        reg = Registry(registry)
        report = reg.import_file(source, reader, _loading(f"importing {source.name}", progress),
                                 again=again, limits=bounds)
    try:
        with database_errors(registry):
            refreshed = refresh_index(reg, reader, progress=progress, notify=notify)
    except GraftmatchError as exc:
        return RegistryImport(report, None, exc)
    return RegistryImport(report, refreshed)


def registry_stats(registry: Path) -> dict[str, Any]:
    """Records by kind and source, settings, and the index's state and size (JSON-ready)."""
    with database_errors(registry):
        reg = Registry(registry, readonly=True)
        meta = reg.meta()
        doc: dict[str, Any] = {"records": reg.count(), "sources": reg.sources(),
                               "release": meta.get("release"),
                               "frequency_set": meta.get("frequency_set"),
                               "population": meta.get("population"),
                               "data_version": meta.get("data_version"),
                               "index_current": False}
        index = None
        if not reg.stale:
            try:
                index = verified_index(reg)
            except RegistryError as exc:  # damaged, or of another layout
                doc["index_error"] = str(exc)
        if index is not None:
            doc["index_current"] = True
            doc["index"] = {"folder": index.folder.name, "bytes": index.size_bytes,
                            "typings": len(index.tce),
                            "genotypes": len(index.genotypes),
                            # Typings by status; a population is substituted per record.
                            "imputation": {s: int((index.imputation == i).sum())
                                           for i, s in enumerate(IMPUTATION_STATUS)
                                           if s != "population-substituted"},
                            "population_substituted_records": int(
                                (index.population_substituted > 0).sum())}
            index.close()
    return doc


def generate(out_path: Path, hf: Path, population: str | None = None, donors: int = 100_000,
             cords: int = 5_000, seed: int = 0,
             reader: TypingReader | None = None) -> dict[str, Any]:
    """Write a SYNTHETIC registry file (registries named SYNTHETIC-*, a .meta.json beside it)
    drawn from the frequency set ``hf``; return its metadata."""
    from graftmatch.registry.synthetic import generate_registry

    reader = reader or open_reader()
    table, _ = compile_population(read_frequency_set(hf, reader), population, reader)
    return generate_registry(out_path, reader, table, donors, cords, seed)


def demo_registry(reader: TypingReader, hf: Path, population: str | None,
                  donors: int = 100_000, cords: int = 5_000, *,
                  progress: Progress = no_progress, notify: Notify = no_notice
                  ) -> tuple[Registry, IndexRefresh]:
    """A synthetic registry of ``donors`` donors and ``cords`` cord units drawn from ``hf``,
    built once in the cache, with its index refreshed."""
    folder = home_dir() / f"demo-registry-{reader.index.release}-{hf.stem}-{donors}-{cords}"
    source = folder.parent / f"{folder.name}.csv.gz"
    if not (folder / "registry.sqlite").exists():
        generate(source, hf, population, donors, cords, seed=1, reader=reader)
        Registry.create(folder, release=reader.index.release, frequency_set=str(hf.resolve()),
                        population=population or "")
    reg = Registry(folder)
    if reg.meta()["data_version"] == "0":
        reg.import_file(source, reader,
                        _loading("loading the demo registry", progress, donors + cords))
    return reg, refresh_index(reg, reader, progress=progress, notify=notify)
