"""Donor search: every adult donor and cord unit within the criteria, graded, with match
probabilities, ranked by the published rules.

1. **Screen** every distinct registry typing against the patient with the compiled grading of
   the matching stage (a table of patient-state x registry-state comparisons, then per typing
   the locus rules): the typing-based mismatch count (P group; potential matches count as
   matches, untyped loci as potential). No shortcut prunes here, so no donor within the
   criteria is missed: the screen is the grading itself.
2. **Grade** the candidates in full (per locus grades, GvH/HvG, DPB1 TCE); typings with
   alternative genotypes go through the pair grader.
3. **Predict** P(k mismatches) overall and per locus from the precomputed imputed genotypes:
   each distinct registry genotype is compared once with the patient's genotypes.
4. **Rank** by ``ranking.toml``; cords by HLA and cell dose per kg, with double-unit pairs
   when no single unit reaches the target dose.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numba
import numpy as np
import numpy.typing as npt

from graftmatch.errors import GraftmatchError
from graftmatch.matching import kernels
from graftmatch.matching.batch import (
    FIELDS,
    GVH,
    MM,
    PERMISSIVE,
    UNTYPED,
    BatchMatcher,
    Cohort,
)
from graftmatch.matching.grader import Matcher
from graftmatch.matching.grades import match_code
from graftmatch.matching.kernels import TCE_VERDICTS
from graftmatch.matching.result import MatchResult
from graftmatch.prediction.haplotypes import HaplotypeTable
from graftmatch.prediction.imputation import Imputation, Imputer
from graftmatch.prediction.settings import ImputationSettings, default_settings
from graftmatch.registry import index as ix
from graftmatch.registry.index import SearchIndex
from graftmatch.registry.store import Registry
from graftmatch.search.ranking import Ranking, default_ranking
from graftmatch.typing.model import AlleleList
from graftmatch.typing.parser import TypingReader

MAX_TOTAL = 4
#: A mismatch count above any limit: a record over a per-locus limit.
MAX_EXCLUDED = 127


@dataclass(frozen=True)
class Patient:
    typing: str
    weight_kg: float | None = None
    cmv: str = "unknown"  # negative | positive | unknown
    abo: str | None = None
    sex: str = "U"
    age: float | None = None


@dataclass(frozen=True)
class Criteria:
    loci: tuple[str, ...] = ("A", "B", "C", "DRB1", "DQB1")
    max_mismatches: int = 2
    #: Mismatches allowed at one locus (default: 2, i.e. no per-locus limit).
    per_locus: dict[str, int] = field(default_factory=dict)
    kinds: tuple[str, ...] = ("donor", "cord")
    sources: tuple[str, ...] | None = None
    statuses: tuple[str, ...] = ("available",)


@dataclass
class Candidate:
    row: int
    kind: str
    typing: int
    #: Typing-based mismatches over the counted loci (the search's) or the cord loci.
    mismatches: int
    #: Per locus, as ``graftmatch match`` reports it (filled for the candidates shown).
    loci: dict[str, dict[str, Any]]
    p_mismatches: list[float]
    p_locus: dict[str, list[float]]
    p_permissive_dpb1: float | None
    tce: str | None
    truncated_mass: float
    imputation: str
    age: float | None
    #: Typing-based mismatches at the ranking's core loci (A, B, C, DRB1 counted) and the
    #: probability of none there.
    core_mismatches: int = 0
    p_core_match: float | None = None
    tnc_per_kg: float | None = None
    cd34_per_kg: float | None = None
    #: Cord units: the HLA-and-dose group of ranking.toml (None without the patient's weight).
    dose_group: int | None = None
    rank: int = 0
    reasons: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)
    #: The pair grader's result against the patient (filled for the candidates shown): the
    #: same grades, count and label as ``graftmatch match``.
    match: MatchResult | None = None
    #: CMV, sex and ABO codes of the record (see :mod:`graftmatch.registry.index`).
    codes: tuple[int, int, int] = (0, 0, 0)
    #: Where the per-locus detail is read from when the candidate is shown.
    detail: tuple[Any, ...] = ()


class Ranked(Sequence[Candidate]):
    """Candidates in rank order, built when read: a search at registry scale may find
    hundreds of thousands, of which a coordinator reads the first few."""

    def __init__(self, size: int, make: Callable[[int], Candidate]) -> None:
        self._size, self._make = size, make
        self._built: dict[int, Candidate] = {}

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, i: int) -> Candidate: ...
    @overload
    def __getitem__(self, i: slice) -> list[Candidate]: ...

    def __getitem__(self, i: int | slice) -> Candidate | list[Candidate]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._size))]
        if not -self._size <= i < self._size:
            raise IndexError(i)
        i %= self._size
        hit = self._built.get(i)
        if hit is None:
            hit = self._built[i] = self._make(i)
        return hit


@dataclass
class SearchResult:
    patient: Imputation
    donors: Ranked
    cords: Ranked
    double_cords: list[tuple[Candidate, Candidate]]
    counts: dict[str, int]
    seconds: dict[str, float]


class Searcher:
    """Searches one registry. Reuse one for many patients: the registry's match states and
    genotype dictionary are read once. ``table`` holds the haplotypes of the patient's
    population (donors were imputed when the index was built); ``population_steps`` are the
    fallback steps taken to choose it, reported with the patient's imputation."""

    def __init__(self, registry: Registry, reader: TypingReader, table: HaplotypeTable,
                 ranking: Ranking | None = None, settings: ImputationSettings | None = None,
                 population_steps: Sequence[str] = ()) -> None:
        self.registry, self.reader = registry, reader
        self.index: SearchIndex = ix.open_index(registry)
        self.loci = tuple(self.index.info["search_loci"])
        self.matcher = Matcher(reader.index)
        self.batch = BatchMatcher.restore(self.matcher, self.loci,
                                          self.index.info["state_keys"], reader)
        self.n_states = [len(k) for k in self.index.info["state_keys"]]
        self.imputer = Imputer(table, settings or default_settings(),
                               population_steps=population_steps)
        self.ranking = ranking or default_ranking()
        self.ranking.check_loci(self.loci)
        self.imputation_loci = tuple(self.index.info["imputation_loci"])
        self._graded: dict[tuple[str, str, str], tuple[int, int]] = {}
        self._parsed: dict[str, tuple[AlleleList, AlleleList]] = {}
        self._eligible_cache: dict[tuple[Any, ...], npt.NDArray[np.bool_]] = {}

    # -- the search ----------------------------------------------------------------------
    def search(self, patient: Patient, criteria: Criteria) -> SearchResult:
        times: dict[str, float] = {}
        t0 = time.perf_counter()
        self._check(criteria, patient)
        typing = self.reader.parse(patient.typing)
        # One reading per combination of the patient's alternative genotypes (usually one).
        readings = [(states, tce, self._table(states))
                    for states, tce in self.batch.encode_readings(typing)]
        times["patient"] = time.perf_counter() - t0

        t = time.perf_counter()
        idx = self.index
        counted = np.array([locus in criteria.loci for locus in self.loci], dtype=np.bool_)
        cord_counted = np.array([locus in self.ranking.cord_loci for locus in self.loci],
                                dtype=np.bool_)
        limits = np.array([criteria.per_locus.get(locus, 2) for locus in self.loci],
                          dtype=np.int8)
        donor_mm = cord_mm = None
        for states, _, table in readings:  # the best reading counts, as in the pair grader
            has = (states[:, 0] >= 0).astype(np.bool_)
            d, c = _screen(idx.states, table, has, counted, cord_counted, limits)
            donor_mm = d if donor_mm is None else np.minimum(donor_mm, d)
            cord_mm = c if cord_mm is None else np.minimum(cord_mm, c)
        assert donor_mm is not None and cord_mm is not None
        # Registry typings with alternative genotypes were indexed by their first reading:
        # they pass the screen and are graded exactly below, so none is dropped by it.
        donor_mm[idx.complex] = 0
        cord_mm[idx.complex] = 0
        records = self._eligible(criteria)
        kind = idx.kind
        typing_of = idx.typing
        # Per typing first (fewer than records), then one boolean gather per record.
        donor_ok = donor_mm <= criteria.max_mismatches
        cord_ok = cord_mm <= self.ranking.cord_max_mismatches
        rows = np.flatnonzero(records & np.where(kind == 0, donor_ok[typing_of],
                                                 cord_ok[typing_of]))
        exact_rows = rows if len(readings) > 1 else rows[idx.complex[typing_of[rows]]]
        times["screen"] = time.perf_counter() - t

        t = time.perf_counter()
        patient_imp = self.imputer.impute(typing)
        cand_typings = np.unique(typing_of[rows])
        probs = self._probabilities(patient_imp, cand_typings, criteria)
        p_states, p_tce, table = readings[0]
        grades = self._grades(p_states, p_tce, table, cand_typings)
        exact = self._exact_grades(typing, exact_rows, criteria)
        times["grade_and_predict"] = time.perf_counter() - t

        t = time.perf_counter()
        found = _Found(self, rows, np.searchsorted(cand_typings, typing_of[rows]), grades,
                       probs, exact, criteria, patient, typing)
        donors = self._rank_donors(found, patient)
        cords, doubles = self._rank_cords(found, patient)
        times["rank"] = time.perf_counter() - t
        times["total"] = time.perf_counter() - t0
        counts = {"records": len(kind), "typings": len(idx.tce),
                  "donors": len(donors), "cords": len(cords)}
        return SearchResult(patient_imp, donors, cords, doubles, counts, times)

    def _check(self, criteria: Criteria, patient: Patient) -> None:
        """Refuse criteria and patient details the search cannot honour, naming the value."""
        for name, values, allowed in (
                ("donor type", criteria.kinds, ix.KINDS),
                ("status", criteria.statuses, ix.STATUSES),
                ("patient CMV", (patient.cmv,), ix.CMV),
                ("patient sex", (patient.sex,), ix.SEXES),
                ("patient ABO", (patient.abo or "",), ix.ABO)):
            bad = [v for v in values if v not in allowed]
            if bad:
                raise GraftmatchError(f"{name} {bad[0]!r} is not one of "
                                      f"{', '.join(a for a in allowed if a)}")
        if patient.weight_kg is not None and not patient.weight_kg > 0:
            raise GraftmatchError(f"patient weight {patient.weight_kg!r} kg must be above 0")
        unknown = [locus for locus in criteria.loci if locus not in self.loci]
        if unknown:
            raise GraftmatchError(f"cannot search on {', '.join(unknown)}: the registry index "
                                  f"grades {', '.join(self.loci)}")
        for locus, allowed_here in criteria.per_locus.items():
            if locus not in self.loci:
                raise GraftmatchError(f"per-locus limit for {locus!r}: the registry index "
                                      f"grades {', '.join(self.loci)}")
            if not 0 <= allowed_here <= 2:
                raise GraftmatchError(f"per-locus limit {locus}={allowed_here} must be 0, 1 "
                                      "or 2")
        known = self.index.info["sources"]
        for source in criteria.sources or ():
            if source not in known:
                raise GraftmatchError(f"registry or bank {source!r} is not in this registry "
                                      f"(it holds {', '.join(known)})")
        if not 0 <= criteria.max_mismatches <= MAX_TOTAL:
            raise GraftmatchError(f"mismatches allowed must be 0 to {MAX_TOTAL}, not "
                                  f"{criteria.max_mismatches}")

    def _eligible(self, criteria: Criteria) -> npt.NDArray[np.bool_]:
        """Records of the kinds, statuses and registries asked for (kept for the next search
        with the same ones)."""
        key = (criteria.kinds, criteria.statuses, criteria.sources)
        if key not in self._eligible_cache:
            self._eligible_cache = {key: self._select(criteria)}
        return self._eligible_cache[key]

    def _select(self, criteria: Criteria) -> npt.NDArray[np.bool_]:
        idx = self.index
        ok = np.isin(idx.kind, [ix.KINDS.index(k) for k in criteria.kinds])
        ok &= np.isin(idx.status, [ix.STATUSES.index(s) for s in criteria.statuses])
        if criteria.sources is not None:
            codes = [i for i, s in enumerate(idx.info["sources"]) if s in criteria.sources]
            ok &= np.isin(idx.source, codes)
        return np.asarray(ok)

    def _table(self, p_states: npt.NDArray[np.int32]) -> npt.NDArray[np.uint8]:
        """Comparison codes of the patient's two states with every registry state, per locus
        (the patient's states are rows 0 and 1)."""
        width = max(max(self.n_states, default=0), 1)
        table = np.zeros((len(self.loci), 2, width), dtype=np.uint8)
        for li in range(len(self.loci)):
            if p_states[li, 0] < 0:
                continue
            for r in range(2):
                mine = self.batch.slot(li, p_states[li, r])
                for c in range(self.n_states[li]):
                    table[li, r, c] = match_code(mine, self.batch.slot(li, c))
        return table

    # -- grading ------------------------------------------------------------------------
    def _grades(self, p_states: npt.NDArray[np.int32], p_tce: int,
                table: npt.NDArray[np.uint8], typings: npt.NDArray[np.int64]
                ) -> dict[str, npt.NDArray[Any]]:
        n = len(typings)
        patient = Cohort([], np.where(p_states >= 0, np.arange(2, dtype=np.int32)[None, :],
                                      -1)[None], np.array([p_tce], dtype=np.int8), [],
                         frozenset())
        d_states = np.ascontiguousarray(self.index.states[typings])
        donors = Cohort([], d_states, np.ascontiguousarray(self.index.tce[typings]), [],
                        frozenset())
        block = self.batch.grade(patient, donors, np.zeros(n, dtype=np.int64),
                                 np.arange(n, dtype=np.int64),
                                 prepared=(table, patient.states, d_states))
        return {"loci": block.loci, "tce": block.tce}

    def _exact_grades(self, typing: Any, rows: npt.NDArray[np.int64], criteria: Criteria
                      ) -> dict[int, tuple[int, npt.NDArray[np.uint8]]]:
        """Pairs where either typing lists alternative genotypes: graded by the pair grader;
        per row its count and its per-locus fields in the compiled layout (:data:`FIELDS`)."""
        if not len(rows):
            return {}
        texts = self.registry.typings(int(self.index.typing_ids[self.index.typing[r]])
                                      for r in rows)
        out = {}
        for row in rows:
            gl = texts[int(self.index.typing_ids[self.index.typing[row]])]
            counted = criteria.loci if self.index.kind[row] == 0 else self.ranking.cord_loci
            result = self.matcher.match(typing, self.reader.parse(gl), counted,
                                        graded=self.loci)
            by_locus = {r.locus: r for r in result.loci}
            over = any((r.mismatches or 0) > criteria.per_locus.get(r.locus, 2)
                       for r in result.loci if r.typed)  # as the screen does: then left out
            fields = np.full((len(self.loci), len(FIELDS)), UNTYPED, dtype=np.uint8)
            for li, locus in enumerate(self.loci):
                r = by_locus.get(locus)
                if r is not None and r.typed:
                    fields[li] = [v or 0 for v in (
                        r.mismatches, r.gvh_mismatches, r.hvg_mismatches, r.antigen_mismatches,
                        r.allele_mismatches, r.unknown_mismatches, r.potential_matches,
                        int(r.confidence), r.permissive_mismatches)]
            out[int(row)] = (MAX_EXCLUDED if over else result.total_mismatches, fields)
        return out

    # -- probabilities --------------------------------------------------------------------
    def _probabilities(self, patient: Imputation, typings: npt.NDArray[np.int64],
                       criteria: Criteria) -> dict[str, Any]:
        """P(k mismatches) over the counted loci, P(no mismatch) at the core loci, and per
        locus P(0/1/2) at the counted and tie-break loci the frequency set covers."""
        idx = self.index
        wanted = {*criteria.loci, *self.ranking.tiebreak_loci}
        cols = [c for c, locus in enumerate(self.imputation_loci) if locus in wanted]
        counted = np.array([self.imputation_loci[c] in criteria.loci for c in cols],
                           dtype=np.bool_)
        core = np.array([self.imputation_loci[c] in self._core(criteria) for c in cols],
                        dtype=np.bool_)
        offsets = idx.geno_offsets
        starts, ends = offsets[typings], offsets[typings + 1]
        lengths = ends - starts
        # Every genotype entry of the candidate typings: starts[i] .. ends[i] - 1, in order.
        flat = np.arange(lengths.sum()) + np.repeat(starts - np.cumsum(lengths) + lengths,
                                                    lengths)
        geno = idx.geno_ids[flat]
        used, local = np.unique(geno, return_inverse=True)
        rows = idx.genotypes[used][:, cols] if len(used) else np.empty((0, len(cols)), np.int32)
        pg = patient.genotypes
        tables, tce_tables, remapped = [], [], np.zeros_like(rows)
        p_index = np.zeros((len(pg), len(cols)), dtype=np.int64)
        for j, col in enumerate(cols):
            locus = self.imputation_loci[col]
            d_ids, d_local = np.unique(rows[:, j], return_inverse=True) if len(rows) else (
                np.empty(0, np.int32), np.empty(0, np.int64))
            remapped[:, j] = d_local.ravel()
            p_col = pg.loci.index(locus)
            _, p_first, p_local = np.unique(np.sort(pg.codes[:, p_col, :], axis=1),
                                                  axis=0, return_index=True,
                                                  return_inverse=True)
            p_distinct = [pg.locus_text(int(g), p_col) for g in p_first]
            p_index[:, j] = p_local.ravel()
            mm = np.zeros((len(p_distinct), len(d_ids)), dtype=np.int8)
            tce = np.zeros_like(mm)
            for u, p_text in enumerate(p_distinct):
                for v, d in enumerate(d_ids):
                    mm[u, v], tce[u, v] = self._grade_locus(
                        locus, p_text, idx.info["locus_genotypes"][col][int(d)])
            tables.append(mm)
            tce_tables.append(tce)
        n_counts = 2 * int(counted.sum()) + 1
        q, q_core, q_locus = _genotype_tables(p_index, pg.probabilities.astype(np.float64),
                                              remapped, _pack(tables), n_counts, counted, core)
        probs = idx.geno_probs[flat].astype(np.float64)
        local = local.ravel()
        p_k = _segment_sums(q[local] * probs[:, None], lengths)
        p_core = _segment_sums(q_core[local] * probs, lengths)
        p_l = _segment_sums(q_locus[local] * probs[:, None, None], lengths)
        dpb1 = None
        if "DPB1" in self.imputation_loci and self.imputation_loci.index("DPB1") in cols:
            j = cols.index(self.imputation_loci.index("DPB1"))
            permissive = TCE_VERDICTS.index("permissive")
            per_g = _tce_share(p_index[:, j], pg.probabilities.astype(np.float64),
                               remapped[:, j], tce_tables[j], permissive)
            dpb1 = _segment_sums(per_g[local] * probs, lengths)
        return {"p_k": p_k, "p_core": p_core, "p_locus": p_l,
                "loci": [self.imputation_loci[c] for c in cols], "dpb1": dpb1}

    def _core(self, criteria: Criteria) -> tuple[str, ...]:
        """The ranking's core loci that this search counts (A, B, C, DRB1 of a 10/10)."""
        return tuple(locus for locus in self.ranking.core_loci if locus in criteria.loci)

    def _tiebreak(self, criteria: Criteria) -> tuple[str, ...]:
        """Counted loci outside the core, then the ranking's tie-break loci the index grades."""
        core = self._core(criteria)
        return tuple(dict.fromkeys(
            locus for locus in (*criteria.loci, *self.ranking.tiebreak_loci)
            if locus not in core and locus in self.loci))

    def _grade_locus(self, locus: str, p_text: str, d_text: str) -> tuple[int, int]:
        key = (locus, p_text, d_text)
        hit = self._graded.get(key)
        if hit is None:
            result = self.matcher.grade_copies(locus, self._copies(p_text),
                                               self._copies(d_text))
            verdict = result.tce.verdict if result.tce is not None else "unknown"
            hit = self._graded[key] = (result.mismatches or 0, TCE_VERDICTS.index(verdict))
        return hit

    def _copies(self, text: str) -> tuple[AlleleList, AlleleList]:
        hit = self._parsed.get(text)
        if hit is None:
            genotype = self.reader.parse(text).blocks[0][0]
            first = genotype[0][0]
            hit = self._parsed[text] = (first, genotype[1][0] if len(genotype) > 1 else first)
        return hit

    # -- ranking ----------------------------------------------------------------------
    def _rank_donors(self, found: _Found, patient: Patient) -> Ranked:
        """Adult donors in the order of ``ranking.toml`` (keys computed for all at once)."""
        r = self.ranking
        at = found.positions(0)
        keys: list[npt.NDArray[Any]] = []
        for name in r.donor_order:
            if name == "mismatches":
                keys.append(found.core_mm[at])
            elif name == "probability":
                keys.append(-np.floor(found.p_core[at] / r.probability_bin + 1e-9))
            elif name == "permissive":
                keys.append(found.core_mm[at] - found.core_permissive[at])
            elif name == "age":
                age = found.age[at]
                band = np.searchsorted(np.asarray(r.age_bands), age, side="right")
                keys.append(np.where(np.isnan(age), len(r.age_bands) + 1, band))
            elif name == "dpb1":
                keys.append(found.dpb1_rank[at])
            elif name == "class_ii":
                keys.append(np.round(found.tiebreak_mm[at], 1))
            elif name == "direction":
                keys.append(found.core_not_hvg_only[at])
            elif name == "cmv":
                keys.append(_cmv_key(patient)[found.cmv[at]])
            elif name == "sex":
                keys.append((patient.sex == "M") & (found.sex[at] == ix.SEXES.index("F")))
            elif name == "abo":
                keys.append(_abo_keys(patient)[found.abo[at]])
        order = at[np.lexsort([found.rows[at], *reversed(keys)])]
        return Ranked(len(order), lambda i: found.donor(int(order[i]), i + 1))

    def _rank_cords(self, found: _Found, patient: Patient
                    ) -> tuple[Ranked, list[tuple[Candidate, Candidate]]]:
        """Cord units by the cord scheme of ``ranking.toml``: units below the double-unit
        floor are dropped, units below the single-unit floor appear only in double-unit
        pairs, offered when no single unit reaches the target dose."""
        r = self.ranking
        at = found.positions(1)
        tnc, cd34 = found.tnc_per_kg[at], found.cd34_per_kg[at]
        pool = at[_dose_ok(tnc, cd34, r.double_min_tnc_per_kg_each,
                           r.double_min_cd34_per_kg_each, r.single_floor)]
        tnc, cd34 = found.tnc_per_kg[pool], found.cd34_per_kg[pool]
        singles = pool[_dose_ok(tnc, cd34, r.single_min_tnc_per_kg, r.single_min_cd34_per_kg,
                                r.single_floor)]
        dose = found.tnc_per_kg[singles]
        judged = not np.isnan(dose).all() if len(dose) else patient.weight_kg is not None
        keys: list[npt.NDArray[Any]] = []
        for name in r.cord_order:
            if name == "group":
                keys.append(found.dose_group[singles])
            elif name == "dose_target":
                keys.append(~(dose >= r.target_tnc_per_kg))
            elif name == "mismatches":
                keys.append(found.mismatches[singles])
            elif name == "hla_c":
                keys.append(found.c_mismatched[singles])
            elif name == "tnc_per_kg":  # without a weight, the total cell count
                keys.append(-np.nan_to_num(dose if judged else found.tnc_total[singles],
                                           nan=0.0))
        singles = singles[np.lexsort([found.rows[singles], *reversed(keys)])]
        ranked = Ranked(len(singles), lambda i: found.cord(int(singles[i]), i + 1))
        doubles: list[tuple[Candidate, Candidate]] = []
        single_dose = np.nan_to_num(found.tnc_per_kg[singles], nan=0.0)
        if patient.weight_kg and not (single_dose >= r.target_tnc_per_kg).any():
            position = {int(j): i for i, j in enumerate(singles)}
            best = pool[np.lexsort([found.rows[pool], -found.tnc_per_kg[pool],
                                    found.mismatches[pool]])][:50]
            units = [ranked[position[int(j)]] if int(j) in position else found.cord(int(j), 0)
                     for j in best]
            for i, a in enumerate(units):
                for b in units[i + 1:]:
                    if (a.tnc_per_kg or 0) + (b.tnc_per_kg or 0) >= r.target_tnc_per_kg:
                        doubles.append((a, b))
            doubles.sort(key=lambda ab: (ab[0].mismatches + ab[1].mismatches,
                                         -((ab[0].tnc_per_kg or 0) + (ab[1].tnc_per_kg or 0))))
        return ranked, doubles[:20]

    def attach_records(self, candidates: Sequence[Candidate]) -> None:
        """Fill in the stored record (ids, attributes, typing), the pair grader's result
        against the patient and the per-locus detail of the candidates shown."""
        records = self.registry.rows(int(self.index.row[c.row]) for c in candidates)
        for c in candidates:
            c.record = records.get(int(self.index.row[c.row]), {})
            if not c.detail:
                continue
            found, _ = c.detail
            counted = found.criteria.loci if c.kind == "donor" else self.ranking.cord_loci
            if c.match is None and c.record.get("gl"):
                c.match = self.matcher.match(found.typing, self.reader.parse(c.record["gl"]),
                                             counted, graded=self.loci)
                c.loci = {r.locus: r.to_dict() for r in c.match.loci}
            k = found.ks[c.detail[1]]
            c.p_locus = {locus: found.probs["p_locus"][k, j].tolist()
                         for j, locus in enumerate(found.probs["loci"])}


def _cmv_key(patient: Patient) -> npt.NDArray[np.float64]:
    """Per donor CMV code: 1 for a CMV-positive or unknown donor of a CMV-negative patient."""
    if patient.cmv != "negative":
        return np.zeros(len(ix.CMV))
    return np.array([0.0 if c == "negative" else 0.5 if c == "unknown" else 1.0
                     for c in ix.CMV])


def _abo_keys(patient: Patient) -> npt.NDArray[np.float64]:
    return np.array([_abo_major(patient.abo, g) for g in ix.ABO])


def _abo_major(patient: str | None, donor: str) -> float:
    """1 when the donor's red cells carry an antigen the patient lacks (major mismatch)."""
    if not patient or not donor:
        return 0.5
    return 0.0 if set(donor.replace("O", "")) <= set(patient.replace("O", "")) else 1.0


def _dose_ok(tnc: npt.NDArray[np.float64], cd34: npt.NDArray[np.float64], min_tnc: float,
             min_cd34: float, rule: str) -> npt.NDArray[np.bool_]:
    """Units meeting a TNC and a CD34 floor per kg, combined by ``rule`` ("and": both, a CD34
    not measured passing; "or": either known one). A dose that cannot be judged (no weight,
    no count) is not held against a unit."""
    with np.errstate(invalid="ignore"):
        tnc_ok, cd34_ok = tnc >= min_tnc, cd34 >= min_cd34
    unknown_tnc, unknown_cd34 = np.isnan(tnc), np.isnan(cd34)
    if rule == "and":
        return np.asarray((tnc_ok | unknown_tnc) & (cd34_ok | unknown_cd34))
    return np.asarray(tnc_ok | cd34_ok | (unknown_tnc & unknown_cd34))


class _Found:
    """Everything a search found, as arrays over the records within the criteria (before
    ranking); :meth:`donor` and :meth:`cord` build the candidates that are read."""

    def __init__(self, searcher: Searcher, rows: npt.NDArray[np.int64],
                 ks: npt.NDArray[np.int64], grades: dict[str, Any], probs: dict[str, Any],
                 exact: dict[int, tuple[int, npt.NDArray[np.uint8]]], criteria: Criteria,
                 patient: Patient, typing: Any) -> None:
        idx, ranking = searcher.index, searcher.ranking
        self.searcher, self.grades, self.probs = searcher, grades, probs
        self.criteria, self.patient, self.typing = criteria, patient, typing
        fields = grades["loci"][ks]  # per record: (loci, FIELDS)
        for row, (_, exact_fields) in exact.items():  # alternatives: the pair grader's
            fields[np.searchsorted(rows, row)] = exact_fields
        mm_all = fields[:, :, MM].astype(np.int64)
        typed = mm_all != UNTYPED
        mm = np.where(typed, mm_all, 0)
        kind = np.asarray(idx.kind[rows])
        loci = searcher.loci

        def over(names: Sequence[str], values: npt.NDArray[np.int64] = mm
                 ) -> npt.NDArray[np.int64]:
            columns = np.array([locus in names for locus in loci], dtype=np.bool_)
            return np.asarray(values[:, columns].sum(axis=1))

        mismatches = np.where(kind == 0, over(criteria.loci), over(ranking.cord_loci))
        for row, (total, _) in exact.items():
            mismatches[np.searchsorted(rows, row)] = total
        limit = np.where(kind == 0, criteria.max_mismatches, ranking.cord_max_mismatches)
        keep = mismatches <= limit
        self.rows, self.ks, self.kind = rows[keep], ks[keep], kind[keep]
        self.mismatches = mismatches[keep]
        fields, mm, typed = fields[keep], mm[keep], typed[keep]
        rows = self.rows
        core = searcher._core(criteria)
        self.core_loci, self.tiebreak_loci = core, searcher._tiebreak(criteria)
        self.core_mm = over(core, mm)
        self.core_untyped = ~typed[:, [loci.index(locus) for locus in core]]
        self.core_permissive = over(core, np.where(typed, fields[:, :, PERMISSIVE], 0))
        # Core mismatches that are not host-versus-graft only (GvH count above 0).
        self.core_not_hvg_only = over(core, np.where(fields[:, :, GVH] > 0, mm, 0))
        self.c_mismatched = (mm[:, loci.index("C")] > 0) if "C" in loci \
            else np.zeros(len(rows), np.bool_)
        # Tie-break loci: the expected mismatches where the set predicts the locus, else
        # the typing-based count.
        self.tiebreak_mm = np.zeros(len(rows))
        predicted = probs["loci"]
        for locus in self.tiebreak_loci:
            if locus in predicted:
                p = probs["p_locus"][self.ks, predicted.index(locus)]
                self.tiebreak_mm += p[:, 1] + 2 * p[:, 2]
            else:
                self.tiebreak_mm += mm[:, loci.index(locus)]
        self.typing_rows = np.asarray(idx.typing[rows]).astype(np.int64)
        self.age = np.asarray(idx.age[rows], dtype=np.float64)
        self.cmv, self.sex = np.asarray(idx.cmv[rows]), np.asarray(idx.sex[rows])
        self.abo = np.asarray(idx.abo[rows])
        self.population = np.asarray(idx.population_substituted[rows])
        weight = patient.weight_kg or np.nan
        self.tnc_total = np.asarray(idx.tnc_1e7[rows], dtype=np.float64)
        self.tnc_per_kg = self.tnc_total / weight
        self.cd34_per_kg = np.asarray(idx.cd34_1e5[rows], dtype=np.float64) / weight
        self.dose_group = self._dose_groups(ranking)
        self.p_core = probs["p_core"][self.ks]
        tce = grades["tce"][self.ks]
        self.tce = tce
        # DPB1 tie-break: permissive (or matched) 0, non-permissive 1, unknown 0.5, and for a
        # DPB1 not typed on both sides, the probability of a non-permissive pair.
        by_verdict = np.array([0.0 if v == "permissive" else 1.0 if v.startswith("non")
                               else 0.5 for v in TCE_VERDICTS] + [0.5])
        dpb1 = probs["dpb1"]
        unknown = 1.0 - dpb1[self.ks] if dpb1 is not None else np.full(len(rows), 0.5)
        self.dpb1_rank = np.where(tce != 255, by_verdict[np.minimum(tce, len(TCE_VERDICTS))],
                                  unknown)

    def _dose_groups(self, ranking: Ranking) -> npt.NDArray[np.int64]:
        """The HLA-and-dose group of each unit (0 without a weight: not judged; one past
        the last group when no group's rule is met)."""
        if np.isnan(self.tnc_per_kg).all():
            return np.zeros(len(self.rows), dtype=np.int64)
        worst = max(g.group for g in ranking.dose_groups) + 1
        out = np.full(len(self.rows), worst, dtype=np.int64)
        with np.errstate(invalid="ignore"):
            for g in ranking.dose_groups:
                hit = (self.mismatches == g.mismatches) & (self.tnc_per_kg >= g.min_tnc_per_kg)
                out = np.where(hit, np.minimum(out, g.group), out)
        return out

    def positions(self, kind: int) -> npt.NDArray[np.int64]:
        return np.flatnonzero(self.kind == kind)

    def _candidate(self, j: int, rank: int) -> Candidate:
        idx = self.searcher.index
        k, t = int(self.ks[j]), int(self.typing_rows[j])
        code = int(self.tce[j])
        dpb1 = self.probs["dpb1"]
        age, tnc, cd34 = (float(a[j]) for a in (self.age, self.tnc_per_kg, self.cd34_per_kg))
        # Donors were imputed with the registry's population, whatever the record states; an
        # exact typing read no frequencies, so its status stays as it is.
        imputation = ix.IMPUTATION_STATUS[int(idx.imputation[t])]
        stated = int(self.population[j])
        reasons = []
        if stated and not idx.exact[t]:
            if imputation == "ok":
                imputation = "population-substituted"
            reasons.append(f"imputation {imputation} (lowered confidence): stated population "
                           f"{idx.info['population_substituted'][stated - 1]}, imputed with "
                           f"population {idx.info['population']}")
        elif imputation != "ok":
            reasons.append(f"imputation {imputation} (lowered confidence)")
        return Candidate(
            row=int(self.rows[j]), kind=ix.KINDS[int(self.kind[j])], typing=t,
            mismatches=int(self.mismatches[j]), loci={},
            p_mismatches=self.probs["p_k"][k].tolist(), p_locus={},
            p_permissive_dpb1=float(dpb1[k]) if dpb1 is not None else None,
            tce=TCE_VERDICTS[code] if code != 255 else None,
            truncated_mass=float(idx.truncated[t]),
            imputation=imputation, reasons=reasons,
            age=None if np.isnan(age) else age, core_mismatches=int(self.core_mm[j]),
            p_core_match=float(self.p_core[j]),
            tnc_per_kg=None if np.isnan(tnc) else tnc,
            cd34_per_kg=None if np.isnan(cd34) else cd34, rank=rank,
            codes=(int(self.cmv[j]), int(self.sex[j]), int(self.abo[j])),
            detail=(self, j))

    def donor(self, j: int, rank: int) -> Candidate:
        c = self._candidate(j, rank)
        c.reasons = [*(reason for name in self.searcher.ranking.donor_order
                       if (reason := self._donor_reason(name, c, j))), *c.reasons]
        return c

    def _donor_reason(self, name: str, c: Candidate, j: int) -> str:
        """Why the candidate stands where it does on one criterion, as a coordinator reads
        it (empty where the criterion says nothing about this donor)."""
        core, n = self.core_loci, 2 * len(self.core_loci)
        mismatched = c.core_mismatches > 0
        if name == "mismatches":
            untyped = [locus for locus, u in zip(core, self.core_untyped[j], strict=True) if u]
            if not untyped:
                return f"{n - c.core_mismatches}/{n} at {', '.join(core)} by typing"
            typed = [locus for locus in core if locus not in untyped]
            return (f"{c.core_mismatches} mismatch(es) at {', '.join(typed) or 'no locus'} by "
                    f"typing; {', '.join(untyped)} untyped (potential matches)")
        if name == "probability":
            return f"P({n}/{n}) {c.p_core_match:.2f}"
        if name == "permissive" and mismatched:
            permissive = int(self.core_permissive[j])
            return f"{permissive} of {c.core_mismatches} core mismatch(es) permissive"
        if name == "age":
            band = self.searcher.ranking.age_band(c.age) if c.age is not None else ""
            return f"age {c.age:.0f} (band {band})" if c.age is not None else "age unknown"
        if name == "dpb1":
            return (f"DPB1 {c.tce}" if c.tce else f"P(DPB1 permissive) "
                    f"{c.p_permissive_dpb1:.2f}" if c.p_permissive_dpb1 is not None
                    else "DPB1 not known")
        if name == "class_ii" and self.tiebreak_loci:
            return (f"{self.tiebreak_mm[j]:.1f} mismatch(es) expected at "
                    f"{', '.join(self.tiebreak_loci)}")
        if name == "direction" and mismatched:
            return ("host-versus-graft only (patient homozygous)"
                    if not self.core_not_hvg_only[j] else "mismatch in the GvH direction")
        cmv, sex, abo = (ix.CMV[c.codes[0]], ix.SEXES[c.codes[1]], ix.ABO[c.codes[2]])
        if name == "cmv":
            return f"CMV {cmv}"
        if name == "abo":
            major = _abo_major(self.patient.abo, abo)
            return (f"ABO {abo or 'unknown'}" + (": major mismatch" if major == 1 else ""))
        if name == "sex":
            return "female donor, male patient" if self.patient.sex == "M" and sex == "F" \
                else f"sex {sex}"
        return ""

    def cord(self, j: int, rank: int) -> Candidate:
        c = self._candidate(j, rank)
        r = self.searcher.ranking
        group = int(self.dose_group[j])
        c.dose_group = group or None
        loci = "/".join(r.cord_loci)
        imputation = c.reasons  # the imputation's own notes, if any, come last
        c.reasons = [f"{c.mismatches} mismatch(es) over {loci}"]
        if c.tnc_per_kg is None:
            c.reasons.append("dose not judged (no patient weight or no TNC count)")
        else:
            c.reasons.append(f"TNC {c.tnc_per_kg:.2f} x10^7/kg"
                             + (f", CD34 {c.cd34_per_kg:.2f} x10^5/kg"
                                if c.cd34_per_kg is not None else ""))
            worst = max(g.group for g in r.dose_groups) + 1
            c.reasons.append(f"HLA-dose group {group}" if group < worst else
                             "in no HLA-dose group")
            c.reasons.append(f"target {r.target_tnc_per_kg:g} x10^7/kg "
                             + ("reached" if c.tnc_per_kg >= r.target_tnc_per_kg
                                else "not reached"))
        if self.c_mismatched[j]:
            c.reasons.append("HLA-C mismatch")
        c.reasons += imputation
        return c


def _segment_sums(values: npt.NDArray[np.float64], lengths: npt.NDArray[np.int64]
                  ) -> npt.NDArray[np.float64]:
    """Sums of consecutive runs of ``values`` rows, run ``i`` being ``lengths[i]`` long (an
    empty run sums to 0)."""
    out = np.zeros((len(lengths), *values.shape[1:]))
    filled = lengths > 0
    if filled.any():
        out[filled] = np.add.reduceat(values, (np.cumsum(lengths) - lengths)[filled], axis=0)
    return out


def _pack(tables: list[npt.NDArray[np.int8]]) -> tuple[npt.NDArray[np.int8],
                                                       npt.NDArray[np.int64],
                                                       npt.NDArray[np.int64]]:
    offsets, widths, flat = [], [], []
    at = 0
    for t in tables:
        offsets.append(at)
        widths.append(t.shape[1])
        flat.append(t.ravel())
        at += t.size
    return (np.concatenate(flat) if flat else np.zeros(1, np.int8),
            np.asarray(offsets, dtype=np.int64), np.asarray(widths, dtype=np.int64))


@numba.njit(parallel=True, cache=True)
def _screen(states, table, has, counted, cord_counted, limits):  # type: ignore[no-untyped-def]
    """Typing-based mismatches over the counted loci of adult donors and of cords, for every
    registry typing in one pass (127 when a locus exceeds its limit); untyped loci on either
    side count as potential matches."""
    n, n_loci = states.shape[0], states.shape[1]
    donor = np.empty(n, dtype=np.int8)
    cord = np.empty(n, dtype=np.int8)
    for t in numba.prange(n):
        d_total = 0
        c_total = 0
        for li in range(n_loci):
            if not has[li] or not (counted[li] or cord_counted[li]):  # graded later, not here
                continue
            b1 = states[t, li, 0]
            b2 = states[t, li, 1]
            if b1 < 0:
                continue
            mm = kernels.orient(int(table[li, 0, b1]), int(table[li, 0, b2]),
                                int(table[li, 1, b1]), int(table[li, 1, b2]))[1]
            over = 127 if mm > limits[li] else mm
            if counted[li]:
                d_total = min(d_total + over, 127)
            if cord_counted[li]:
                c_total = min(c_total + over, 127)
        donor[t] = d_total
        cord[t] = c_total
    return donor, cord


@numba.njit(cache=True)
def _genotype_tables(p_index, p_prob, d_rows, packed, n_counts, counted, core):  # type: ignore[no-untyped-def]
    """Per registry genotype: the probability of each total mismatch count over the counted
    columns against the patient's genotypes, of no mismatch at the core columns, and per
    column of 0/1/2 mismatches."""
    flat, offsets, widths = packed
    n_g, n_loci = d_rows.shape
    q = np.zeros((n_g, n_counts))
    q_core = np.zeros(n_g)
    q_locus = np.zeros((n_g, n_loci, 3))
    for g in range(n_g):
        for a in range(p_index.shape[0]):
            k = 0
            k_core = 0
            for j in range(n_loci):
                m = flat[offsets[j] + p_index[a, j] * widths[j] + d_rows[g, j]]
                q_locus[g, j, m] += p_prob[a]
                if counted[j]:
                    k += m
                if core[j]:
                    k_core += m
            q[g, k] += p_prob[a]
            if k_core == 0:
                q_core[g] += p_prob[a]
    return q, q_core, q_locus


@numba.njit(cache=True)
def _tce_share(p_index, p_prob, d_col, tce, permissive):  # type: ignore[no-untyped-def]
    out = np.zeros(len(d_col))
    for g in range(len(d_col)):
        for a in range(len(p_index)):
            if tce[p_index[a], d_col[g]] == permissive:
                out[g] += p_prob[a]
    return out
