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
from graftmatch.matching.batch import FIELDS, BatchMatcher, Cohort
from graftmatch.matching.grader import Matcher
from graftmatch.matching.grades import match_code
from graftmatch.matching.kernels import TCE_VERDICTS
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
    mismatches: int
    loci: dict[str, dict[str, Any]]
    p_mismatches: list[float]
    p_locus: dict[str, list[float]]
    p_permissive_dpb1: float | None
    tce: str | None
    truncated_mass: float
    imputation: str
    age: float | None
    tnc_per_kg: float | None = None
    cd34_per_kg: float | None = None
    rank: int = 0
    reasons: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)
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
        probs = self._probabilities(patient_imp, cand_typings, criteria.loci)
        p_states, p_tce, table = readings[0]
        grades = self._grades(p_states, p_tce, table, cand_typings)
        exact = self._exact_grades(typing, exact_rows, criteria)
        times["grade_and_predict"] = time.perf_counter() - t

        t = time.perf_counter()
        found = _Found(self, rows, np.searchsorted(cand_typings, typing_of[rows]), grades,
                       probs, exact, criteria, patient)
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
                      ) -> dict[int, tuple[int, dict[str, dict[str, Any]]]]:
        """Pairs where either typing lists alternative genotypes: graded by the pair grader,
        reported with the same fields as the compiled grading."""
        if not len(rows):
            return {}
        texts = self.registry.typings(int(self.index.typing_ids[self.index.typing[r]])
                                      for r in rows)
        out = {}
        for row in rows:
            donor = self.reader.parse(texts[int(self.index.typing_ids[self.index.typing[row]])])
            loci = criteria.loci if self.index.kind[row] == 0 else self.ranking.cord_loci
            result = self.matcher.match(typing, donor, loci)
            over = any((r.mismatches or 0) > criteria.per_locus.get(r.locus, 2)
                       for r in result.loci if r.typed)  # as the screen does: then left out
            # The other search loci are shown too, graded apart so that they cannot change
            # which alternative genotypes the count chose.
            others = [locus for locus in self.loci if locus not in loci]
            shown = [*result.loci, *(self.matcher.match(typing, donor, others).loci
                                     if others else ())]
            out[int(row)] = (MAX_EXCLUDED if over else result.total_mismatches, {
                r.locus: {"typed": False} if not r.typed else {
                    **dict(zip(FIELDS, (v or 0 for v in (
                        r.mismatches, r.gvh_mismatches, r.hvg_mismatches, r.antigen_mismatches,
                        r.allele_mismatches, r.unknown_mismatches, r.potential_matches,
                        int(r.confidence))), strict=True)), "typed": True}
                for r in shown})
        return out

    # -- probabilities --------------------------------------------------------------------
    def _probabilities(self, patient: Imputation, typings: npt.NDArray[np.int64],
                       loci: Sequence[str]) -> dict[str, Any]:
        idx = self.index
        cols = [c for c, locus in enumerate(self.imputation_loci) if locus in loci]
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
        n_counts = 2 * len(cols) + 1
        q, q_locus = _genotype_tables(p_index, pg.probabilities.astype(np.float64),
                                             remapped, _pack(tables), n_counts)
        probs = idx.geno_probs[flat].astype(np.float64)
        local = local.ravel()
        p_k = _segment_sums(q[local] * probs[:, None], lengths)
        p_l = _segment_sums(q_locus[local] * probs[:, None, None], lengths)
        dpb1 = None
        if "DPB1" in self.imputation_loci and self.imputation_loci.index("DPB1") in cols:
            j = cols.index(self.imputation_loci.index("DPB1"))
            permissive = TCE_VERDICTS.index("permissive")
            per_g = _tce_share(p_index[:, j], pg.probabilities.astype(np.float64),
                               remapped[:, j], tce_tables[j], permissive)
            dpb1 = _segment_sums(per_g[local] * probs, lengths)
        return {"p_k": p_k, "p_locus": p_l, "loci": [self.imputation_loci[c] for c in cols],
                "dpb1": dpb1}

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
                keys.append(found.mismatches[at])
            elif name == "probability":
                keys.append(-np.floor(found.p0[at] / r.probability_bin + 1e-9))
            elif name == "age":
                age = found.age[at]
                keys.append(np.where(np.isnan(age), 999.0, np.floor(age / r.age_bin_years)))
            elif name == "dpb1":
                keys.append(found.dpb1_rank[at])
            elif name == "cmv":
                negative = patient.cmv == "negative"
                keys.append(negative & (found.cmv[at] != ix.CMV.index("negative")))
            elif name == "sex":
                keys.append((patient.sex == "M") & (found.sex[at] == ix.SEXES.index("F")))
            elif name == "abo":
                major = np.array([_abo_major(patient.abo, g) for g in ix.ABO])
                keys.append(major[found.abo[at]])
        order = at[np.lexsort([found.rows[at], *reversed(keys)])]
        return Ranked(len(order), lambda i: found.donor(int(order[i]), i + 1))

    def _rank_cords(self, found: _Found, patient: Patient
                    ) -> tuple[Ranked, list[tuple[Candidate, Candidate]]]:
        """Cord units by the cord scheme of ``ranking.toml``, dropping units below the dose
        floors, with double-unit pairs when no single unit reaches the target dose."""
        r = self.ranking
        at = found.positions(1)
        tnc, cd34 = found.tnc_per_kg[at], found.cd34_per_kg[at]
        with np.errstate(invalid="ignore"):
            at = at[~(tnc < r.double_min_tnc_per_kg_each) & ~(cd34 < r.min_cd34_per_kg)]
        dose = np.nan_to_num(found.tnc_per_kg[at], nan=0.0)
        keys: list[npt.NDArray[Any]] = []
        for name in r.cord_order:
            if name == "mismatches":
                keys.append(found.mismatches[at])
            elif name == "dose_target":
                keys.append(dose < r.target_tnc_per_kg)
            elif name == "tnc_per_kg":
                keys.append(-dose)
        kept = at[np.lexsort([found.rows[at], *reversed(keys)])]
        # Without the patient's weight no dose can be judged: every unit is listed.
        tnc = found.tnc_per_kg[kept]
        with np.errstate(invalid="ignore"):
            singles = kept[np.isnan(tnc) | (tnc >= r.min_tnc_per_kg)]
        single_dose = np.nan_to_num(found.tnc_per_kg[singles], nan=0.0)
        ranked = Ranked(len(singles), lambda i: found.cord(int(singles[i]), i + 1))
        doubles: list[tuple[Candidate, Candidate]] = []
        if patient.weight_kg and not (single_dose >= r.target_tnc_per_kg).any():
            position = {int(j): i for i, j in enumerate(singles)}
            pool = [ranked[position[int(j)]] if int(j) in position else found.cord(int(j), 0)
                    for j in kept[np.nan_to_num(tnc, nan=0.0)
                                  >= r.double_min_tnc_per_kg_each][:50]]
            for i, a in enumerate(pool):
                for b in pool[i + 1:]:
                    if (a.tnc_per_kg or 0) + (b.tnc_per_kg or 0) >= r.target_tnc_per_kg:
                        doubles.append((a, b))
            doubles.sort(key=lambda ab: (ab[0].mismatches + ab[1].mismatches,
                                         -((ab[0].tnc_per_kg or 0) + (ab[1].tnc_per_kg or 0))))
        return ranked, doubles[:20]

    def attach_records(self, candidates: Sequence[Candidate]) -> None:
        """Fill in the stored record (ids, attributes, typing) and the per-locus detail of the
        candidates shown."""
        records = self.registry.rows(int(self.index.row[c.row]) for c in candidates)
        for c in candidates:
            c.record = records.get(int(self.index.row[c.row]), {})
            if not c.detail:
                continue
            grades, probs, k = c.detail
            if not c.loci:
                for li, locus in enumerate(self.loci):
                    f = grades[k, li]
                    c.loci[locus] = {"typed": False} if f[0] == 255 else {
                        **{name: int(f[i]) for i, name in enumerate(FIELDS)}, "typed": True}
            c.p_locus = {locus: probs["p_locus"][k, j].tolist()
                         for j, locus in enumerate(probs["loci"])}


def _abo_major(patient: str | None, donor: str) -> float:
    """1 when the donor's red cells carry an antigen the patient lacks (major mismatch)."""
    if not patient or not donor:
        return 0.5
    return 0.0 if set(donor.replace("O", "")) <= set(patient.replace("O", "")) else 1.0


class _Found:
    """Everything a search found, as arrays over the records within the criteria (before
    ranking); :meth:`donor` and :meth:`cord` build the candidates that are read."""

    def __init__(self, searcher: Searcher, rows: npt.NDArray[np.int64],
                 ks: npt.NDArray[np.int64], grades: dict[str, Any], probs: dict[str, Any],
                 exact: dict[int, tuple[int, dict[str, dict[str, Any]]]], criteria: Criteria,
                 patient: Patient) -> None:
        idx, ranking = searcher.index, searcher.ranking
        self.searcher, self.grades, self.probs, self.exact = searcher, grades, probs, exact
        mm = grades["loci"][:, :, 0].astype(np.int64)
        typed = mm != 255
        kind = np.asarray(idx.kind[rows])
        totals = []
        for loci in (criteria.loci, ranking.cord_loci):
            counted = np.array([locus in loci for locus in searcher.loci])
            totals.append(np.where(typed & counted, mm, 0).sum(axis=1)[ks])
        mismatches = np.where(kind == 0, totals[0], totals[1])
        per_locus = mm[ks]
        for row, (total, graded) in exact.items():  # alternatives: the pair grader's grades
            j = np.searchsorted(rows, row)
            mismatches[j] = total
            per_locus[j] = [graded[locus]["mismatches"] if graded[locus]["typed"] else 255
                            for locus in searcher.loci]
        limit = np.where(kind == 0, criteria.max_mismatches, ranking.cord_max_mismatches)
        keep = mismatches <= limit
        self.rows, self.ks, self.kind = rows[keep], ks[keep], kind[keep]
        self.mismatches = mismatches[keep]
        #: Mismatches per candidate and search locus (255: untyped on either side), counted or
        #: not: what a tie-breaker on DRB3/4/5 (or any graded locus) reads.
        self.locus_mismatches = per_locus[keep]
        rows = self.rows
        self.typing = np.asarray(idx.typing[rows]).astype(np.int64)
        self.age = np.asarray(idx.age[rows], dtype=np.float64)
        self.cmv, self.sex = np.asarray(idx.cmv[rows]), np.asarray(idx.sex[rows])
        self.abo = np.asarray(idx.abo[rows])
        weight = patient.weight_kg or np.nan
        self.tnc_per_kg = np.asarray(idx.tnc_1e7[rows], dtype=np.float64) / weight
        self.cd34_per_kg = np.asarray(idx.cd34_1e5[rows], dtype=np.float64) / weight
        p_k = probs["p_k"]
        self.p0 = p_k[self.ks, 0] if p_k.shape[1] else np.zeros(len(rows))
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

    def positions(self, kind: int) -> npt.NDArray[np.int64]:
        return np.flatnonzero(self.kind == kind)

    def _candidate(self, j: int, rank: int) -> Candidate:
        idx = self.searcher.index
        k, t = int(self.ks[j]), int(self.typing[j])
        code = int(self.tce[j])
        dpb1 = self.probs["dpb1"]
        age, tnc, cd34 = (float(a[j]) for a in (self.age, self.tnc_per_kg, self.cd34_per_kg))
        row = int(self.rows[j])
        fixed = self.exact.get(row)
        return Candidate(
            row=row, kind=ix.KINDS[int(self.kind[j])], typing=t,
            mismatches=int(self.mismatches[j]), loci=dict(fixed[1]) if fixed else {},
            p_mismatches=self.probs["p_k"][k].tolist(), p_locus={},
            p_permissive_dpb1=float(dpb1[k]) if dpb1 is not None else None,
            tce=TCE_VERDICTS[code] if code != 255 else None,
            truncated_mass=float(idx.truncated[t]),
            imputation=ix.IMPUTATION_STATUS[int(idx.imputation[t])],
            age=None if np.isnan(age) else age, tnc_per_kg=None if np.isnan(tnc) else tnc,
            cd34_per_kg=None if np.isnan(cd34) else cd34, rank=rank,
            codes=(int(self.cmv[j]), int(self.sex[j]), int(self.abo[j])),
            detail=(self.grades["loci"], self.probs, k))

    def donor(self, j: int, rank: int) -> Candidate:
        c = self._candidate(j, rank)
        p0 = c.p_mismatches[0] if c.p_mismatches else 0.0
        c.reasons = [f"{c.mismatches} mismatch(es) by typing", f"P(0 mismatches) {p0:.2f}"]
        if c.age is not None:
            c.reasons.append(f"age {c.age:.0f}")
        if c.tce:
            c.reasons.append(f"DPB1 {c.tce}")
        return c

    def cord(self, j: int, rank: int) -> Candidate:
        c = self._candidate(j, rank)
        c.reasons = [f"{c.mismatches} mismatch(es) over "
                     f"{'/'.join(self.searcher.ranking.cord_loci)}",
                     f"TNC {c.tnc_per_kg:.2f} x10^7/kg" if c.tnc_per_kg is not None
                     else "dose not judged (no patient weight)"]
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
def _genotype_tables(p_index, p_prob, d_rows, packed, n_counts):  # type: ignore[no-untyped-def]
    """Per registry genotype: the probability of each total mismatch count against the
    patient's genotypes, and per locus of 0/1/2 mismatches."""
    flat, offsets, widths = packed
    n_g, n_loci = d_rows.shape
    q = np.zeros((n_g, n_counts))
    q_locus = np.zeros((n_g, n_loci, 3))
    for g in range(n_g):
        for a in range(p_index.shape[0]):
            k = 0
            for j in range(n_loci):
                m = flat[offsets[j] + p_index[a, j] * widths[j] + d_rows[g, j]]
                q_locus[g, j, m] += p_prob[a]
                k += m
            q[g, k] += p_prob[a]
    return q, q_locus


@numba.njit(cache=True)
def _tce_share(p_index, p_prob, d_col, tce, permissive):  # type: ignore[no-untyped-def]
    out = np.zeros(len(d_col))
    for g in range(len(d_col)):
        for a in range(len(p_index)):
            if tce[p_index[a], d_col[g]] == permissive:
                out[g] += p_prob[a]
    return out
