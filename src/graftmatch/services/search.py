"""Donor search: open a searcher on a registry (its frequency table and ranking rules), run a
search for a patient, attach the records shown, and the result as a JSON-ready document."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graftmatch.prediction.imputation import confidence
from graftmatch.registry.store import Registry
from graftmatch.search.engine import Candidate, Criteria, Patient, Searcher, SearchResult
from graftmatch.search.ranking import Ranking, default_ranking, load_ranking
from graftmatch.services.reference import open_reader
from graftmatch.services.registries import database_errors, registry_table
from graftmatch.typing.parser import TypingReader

#: Candidates shown per kind unless asked otherwise.
DEFAULT_LIMIT = 20


@dataclass(frozen=True)
class SearchSession:
    """A searcher opened on one registry: reuse it for many patients (the index is read
    once)."""

    registry: Registry
    reader: TypingReader
    searcher: Searcher
    ranking: Ranking
    population_steps: tuple[str, ...]


def searcher_for(registry: Registry, reader: TypingReader, population: str | None = None,
                 ranking: Path | None = None) -> SearchSession:
    """A searcher on an open registry for patients of ``population`` (default: the registry's
    own; missing ones fall back, the steps reported) under a site's ranking rules (default:
    the built-in ranking.toml)."""
    table, steps = registry_table(registry, reader, population)
    rules = load_ranking(ranking) if ranking else default_ranking()
    return SearchSession(registry, reader,
                         Searcher(registry, reader, table, rules, population_steps=steps),
                         rules, steps)


def open_search(registry: Path, population: str | None = None, ranking: Path | None = None,
                reader: TypingReader | None = None) -> SearchSession:
    """Open the registry folder read-only and a searcher on it (see :func:`searcher_for`)."""
    reader = reader or open_reader()
    with database_errors(registry):
        return searcher_for(Registry(registry, readonly=True), reader, population, ranking)


@dataclass(frozen=True)
class SearchOutcome:
    """A search for one patient: the request, the criteria, the rules and the result, with
    the records of the first ``limit`` candidates per kind (and of double-unit pairs)
    attached."""

    patient: Patient
    criteria: Criteria
    ranking: Ranking
    result: SearchResult
    limit: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``graftmatch search --json``."""
        return {"patient": dataclasses.asdict(self.patient),
                "ranking": ranking_dict(self.ranking), **result_dict(self.result, self.limit)}


def run_search(session: SearchSession, patient: Patient, criteria: Criteria,
               limit: int = DEFAULT_LIMIT) -> SearchOutcome:
    """Search the session's registry for ``patient`` within ``criteria``."""
    with database_errors(session.registry.path):
        result = session.searcher.search(patient, criteria)
        shown = result.donors[:limit] + result.cords[:limit]
        session.searcher.attach_records(shown + [u for pair in result.double_cords
                                                 for u in pair])
    return SearchOutcome(patient, criteria, session.ranking, result, limit)


def search(registry: Path, patient: Patient, criteria: Criteria | None = None, *,
           population: str | None = None, ranking: Path | None = None,
           limit: int = DEFAULT_LIMIT, reader: TypingReader | None = None) -> SearchOutcome:
    """Open the registry and search it for one patient (criteria default: 10/10 loci, up to
    2 mismatches, donors and cords)."""
    session = open_search(registry, population, ranking, reader)
    return run_search(session, patient, criteria or Criteria(), limit)


def ranking_dict(rules: Ranking) -> dict[str, Any]:
    return {"source": rules.source, "donor_order": list(rules.donor_order),
            "donor_evidence": rules.donor_evidence, "cord_order": list(rules.cord_order),
            "cord_evidence": rules.cord_evidence}


def candidate_dict(c: Candidate) -> dict[str, Any]:
    rec = c.record
    match = c.match.to_dict() if c.match is not None else {}
    return {"rank": c.rank, "kind": c.kind, "id": rec.get("ext_id"),
            "source": rec.get("source"), "hla": rec.get("gl"), "mismatches": c.mismatches,
            "match_count": match.get("match_count"), "match": match.get("label"),
            "typed_loci": match.get("typed_loci"), "untyped_loci": match.get("untyped_loci"),
            "match_confidence": match.get("confidence"), "category": match.get("category"),
            "core_mismatches": c.core_mismatches, "p_core_match": c.p_core_match,
            "loci": c.loci, "p_mismatches": {str(k): p for k, p in enumerate(c.p_mismatches)},
            "p_locus": c.p_locus, "p_permissive_dpb1": c.p_permissive_dpb1, "tce": c.tce,
            "imputation": c.imputation, "imputation_confidence": confidence(c.imputation),
            "truncated_mass": c.truncated_mass, "age": c.age,
            "sex": rec.get("sex"), "abo": rec.get("abo"), "rh": rec.get("rh"),
            "cmv": rec.get("cmv"), "tnc_per_kg": c.tnc_per_kg, "cd34_per_kg": c.cd34_per_kg,
            "dose_group": c.dose_group, "reasons": c.reasons}


def result_dict(result: SearchResult, limit: int) -> dict[str, Any]:
    return {"counts": result.counts, "seconds": result.seconds,
            "patient_imputation": result.patient.to_dict(5),
            "donors": [candidate_dict(c) for c in result.donors[:limit]],
            "cords": [candidate_dict(c) for c in result.cords[:limit]],
            "double_cords": [[a.record.get("ext_id") or a.row, b.record.get("ext_id") or b.row]
                             for a, b in result.double_cords]}
