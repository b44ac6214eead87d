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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class SearchResult:
    patient: Imputation
    donors: list[Candidate]
    cords: list[Candidate]
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
            d = _screen(idx.states, table, has, counted, limits)
            c = _screen(idx.states, table, has, cord_counted, limits)
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
        rec_mm = np.where(kind == 0, donor_mm[typing_of], cord_mm[typing_of])
        rec_limit = np.where(kind == 0, criteria.max_mismatches,
                             self.ranking.cord_max_mismatches)
        rows = np.flatnonzero(records & (rec_mm <= rec_limit))
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
        donors: list[Candidate] = []
        cords: list[Candidate] = []
        ks = np.searchsorted(cand_typings, typing_of[rows])
        for candidate in self._candidates(rows, ks, grades, probs, criteria, patient):
            fixed = exact.get(candidate.row)
            if fixed is not None:
                candidate.mismatches, candidate.loci = fixed
                limit = criteria.max_mismatches if candidate.kind == "donor" else \
                    self.ranking.cord_max_mismatches
                if candidate.mismatches > limit:
                    continue
            (donors if candidate.kind == "donor" else cords).append(candidate)
        donors = self._rank_donors(donors, patient)
        cords, doubles = self._rank_cords(cords, patient)
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
        if not 0 <= criteria.max_mismatches <= MAX_TOTAL:
            raise GraftmatchError(f"mismatches allowed must be 0 to {MAX_TOTAL}, not "
                                  f"{criteria.max_mismatches}")

    def _eligible(self, criteria: Criteria) -> npt.NDArray[np.bool_]:
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
            gl = texts[int(self.index.typing_ids[self.index.typing[row]])]
            loci = criteria.loci if self.index.kind[row] == 0 else self.ranking.cord_loci
            result = self.matcher.match(typing, self.reader.parse(gl), loci)
            out[int(row)] = (result.total_mismatches, {
                r.locus: {"typed": False} if not r.typed else {
                    **dict(zip(FIELDS, (v or 0 for v in (
                        r.mismatches, r.gvh_mismatches, r.hvg_mismatches, r.antigen_mismatches,
                        r.allele_mismatches, r.unknown_mismatches, r.potential_matches,
                        int(r.confidence))), strict=True)), "typed": True}
                for r in result.loci})
        return out

    # -- probabilities --------------------------------------------------------------------
    def _probabilities(self, patient: Imputation, typings: npt.NDArray[np.int64],
                       loci: Sequence[str]) -> dict[str, Any]:
        idx = self.index
        cols = [c for c, locus in enumerate(self.imputation_loci) if locus in loci]
        offsets = idx.geno_offsets
        starts, ends = offsets[typings], offsets[typings + 1]
        flat = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)]) \
            if len(typings) else np.empty(0, dtype=np.int64)
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
            p_texts = [pg.locus_text(g, pg.loci.index(locus)) for g in range(len(pg))]
            p_distinct = list(dict.fromkeys(p_texts))
            p_index[:, j] = [p_distinct.index(t) for t in p_texts]
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
        owner = np.repeat(np.arange(len(typings)), ends - starts)
        weighted = q[local.ravel()] * probs[:, None]
        p_k = np.stack([np.bincount(owner, weights=weighted[:, m], minlength=len(typings))
                        for m in range(n_counts)], axis=1)
        weighted_l = (q_locus[local.ravel()] * probs[:, None, None]).reshape(
            len(probs), 3 * len(cols))
        p_l = np.stack([np.bincount(owner, weights=weighted_l[:, m], minlength=len(typings))
                        for m in range(weighted_l.shape[1])], axis=1
                       ).reshape(len(typings), len(cols), 3)
        dpb1 = None
        if "DPB1" in self.imputation_loci and self.imputation_loci.index("DPB1") in cols:
            j = cols.index(self.imputation_loci.index("DPB1"))
            permissive = TCE_VERDICTS.index("permissive")
            per_g = _tce_share(p_index[:, j], pg.probabilities.astype(np.float64),
                               remapped[:, j], tce_tables[j], permissive)
            dpb1 = np.bincount(owner, weights=per_g[local.ravel()] * probs,
                               minlength=len(typings))
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
        genotype = self.reader.parse(text).blocks[0][0]
        first = genotype[0][0]
        return first, genotype[1][0] if len(genotype) > 1 else first

    # -- results and ranking ------------------------------------------------------------
    def _candidates(self, rows: npt.NDArray[np.int64], ks: npt.NDArray[np.int64],
                    grades: dict[str, Any], probs: dict[str, Any], criteria: Criteria,
                    patient: Patient) -> list[Candidate]:
        """Candidates for the given records (``ks``: their rows in ``grades`` and ``probs``);
        the per-locus detail is filled in only for those shown (:meth:`attach_records`)."""
        idx = self.index
        mm = grades["loci"][:, :, 0].astype(np.int64)
        typed = mm != 255
        counted = {kind: np.array([locus in loci for locus in self.loci])
                   for kind, loci in (("donor", criteria.loci), ("cord", self.ranking.cord_loci))}
        totals = {kind: np.where(typed & mask, mm, 0).sum(axis=1) for kind, mask in
                  counted.items()}
        col = {name: np.asarray(getattr(idx, name)[rows]).tolist() for name in (
            "kind", "typing", "age", "tnc_1e7", "cd34_1e5", "cmv", "sex", "abo")}
        truncated = np.asarray(idx.truncated[np.asarray(col["typing"], dtype=np.int64)])
        imputation = np.asarray(idx.imputation[np.asarray(col["typing"], dtype=np.int64)])
        p_k, tce = probs["p_k"], grades["tce"]
        dpb1 = probs["dpb1"]
        weight = patient.weight_kg
        out = []
        for j, (row, k) in enumerate(zip(rows.tolist(), ks.tolist(), strict=True)):
            kind = ix.KINDS[col["kind"][j]]
            age, tnc, cd34 = col["age"][j], col["tnc_1e7"][j], col["cd34_1e5"][j]
            code = int(tce[k])
            out.append(Candidate(
                row=row, kind=kind, typing=col["typing"][j], mismatches=int(totals[kind][k]),
                loci={}, p_mismatches=p_k[k].tolist(), p_locus={},
                p_permissive_dpb1=float(dpb1[k]) if dpb1 is not None else None,
                tce=TCE_VERDICTS[code] if code != 255 else None,
                truncated_mass=float(truncated[j]),
                imputation=ix.IMPUTATION_STATUS[int(imputation[j])],
                age=None if age != age else age,
                tnc_per_kg=tnc / weight if weight and tnc == tnc else None,
                cd34_per_kg=cd34 / weight if weight and cd34 == cd34 else None,
                codes=(col["cmv"][j], col["sex"][j], col["abo"][j]),
                detail=(grades["loci"], probs, k)))
        return out

    def _rank_donors(self, donors: list[Candidate], patient: Patient) -> list[Candidate]:
        r = self.ranking
        for c in donors:
            p0 = c.p_mismatches[0] if c.p_mismatches else 0.0
            c.reasons = [f"{c.mismatches} mismatch(es) by typing", f"P(0 mismatches) {p0:.2f}"]
            if c.age is not None:
                c.reasons.append(f"age {c.age:.0f}")
            if c.tce:
                c.reasons.append(f"DPB1 {c.tce}")
        def key(c: Candidate) -> tuple[float, ...]:
            parts: list[float] = []
            for name in r.donor_order:
                if name == "mismatches":
                    parts.append(c.mismatches)
                elif name == "probability":
                    p0 = c.p_mismatches[0] if c.p_mismatches else 0.0
                    parts.append(-np.floor(p0 / r.probability_bin + 1e-9))
                elif name == "age":
                    parts.append(np.floor(c.age / r.age_bin_years) if c.age is not None
                                 else 999.0)
                elif name == "dpb1":
                    parts.append(_dpb1_rank(c))
                elif name == "cmv":
                    donor_cmv = ix.CMV[c.codes[0]]
                    parts.append(1.0 if patient.cmv == "negative" and donor_cmv != "negative"
                                 else 0.0)
                elif name == "sex":
                    parts.append(1.0 if patient.sex == "M" and c.codes[1] == 1 else 0.0)
                elif name == "abo":
                    parts.append(_abo_major(patient.abo, ix.ABO[c.codes[2]]))
            parts.append(c.row)
            return tuple(parts)
        donors.sort(key=key)
        for n, c in enumerate(donors, 1):
            c.rank = n
        return donors

    def _rank_cords(self, cords: list[Candidate], patient: Patient
                    ) -> tuple[list[Candidate], list[tuple[Candidate, Candidate]]]:
        r = self.ranking
        kept = []
        for c in cords:
            if c.tnc_per_kg is not None and c.tnc_per_kg < r.double_min_tnc_per_kg_each:
                continue
            if c.cd34_per_kg is not None and c.cd34_per_kg < r.min_cd34_per_kg:
                continue
            c.reasons = [f"{c.mismatches} mismatch(es) over {'/'.join(r.cord_loci)}"]
            c.reasons.append(f"TNC {c.tnc_per_kg:.2f} x10^7/kg" if c.tnc_per_kg is not None
                             else "dose not judged (no patient weight)")
            kept.append(c)

        def key(c: Candidate) -> tuple[float, ...]:
            parts: list[float] = []
            dose = c.tnc_per_kg if c.tnc_per_kg is not None else 0.0
            for name in r.cord_order:
                if name == "mismatches":
                    parts.append(c.mismatches)
                elif name == "dose_target":
                    parts.append(0.0 if dose >= r.target_tnc_per_kg else 1.0)
                elif name == "tnc_per_kg":
                    parts.append(-dose)
            parts.append(c.row)
            return tuple(parts)
        kept.sort(key=key)
        # Without the patient's weight no dose can be judged: every unit is listed.
        singles = [c for c in kept if c.tnc_per_kg is None or c.tnc_per_kg >= r.min_tnc_per_kg]
        for n, c in enumerate(singles, 1):
            c.rank = n
        doubles: list[tuple[Candidate, Candidate]] = []
        if patient.weight_kg and not any((c.tnc_per_kg or 0) >= r.target_tnc_per_kg
                                         for c in singles):
            pool = [c for c in kept if (c.tnc_per_kg or 0) >= r.double_min_tnc_per_kg_each]
            for i, a in enumerate(pool[:50]):
                for b in pool[i + 1:50]:
                    if (a.tnc_per_kg or 0) + (b.tnc_per_kg or 0) >= r.target_tnc_per_kg:
                        doubles.append((a, b))
            doubles.sort(key=lambda ab: (ab[0].mismatches + ab[1].mismatches,
                                         -((ab[0].tnc_per_kg or 0) + (ab[1].tnc_per_kg or 0))))
        return singles, doubles[:20]

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


def _dpb1_rank(c: Candidate) -> float:
    if c.tce is not None:
        return 0.0 if c.tce == "permissive" else 1.0 if c.tce.startswith("non") else 0.5
    if c.p_permissive_dpb1 is not None:
        return 1.0 - c.p_permissive_dpb1
    return 0.5


def _abo_major(patient: str | None, donor: str) -> float:
    """1 when the donor's red cells carry an antigen the patient lacks (major mismatch)."""
    if not patient or not donor:
        return 0.5
    return 0.0 if set(donor.replace("O", "")) <= set(patient.replace("O", "")) else 1.0


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
def _screen(states, table, has, counted, limits):  # type: ignore[no-untyped-def]
    """Typing-based mismatches over the counted loci for every registry typing (127 when a
    locus exceeds its limit); untyped loci on either side count as potential matches."""
    n, n_loci = states.shape[0], states.shape[1]
    out = np.empty(n, dtype=np.int8)
    for t in numba.prange(n):
        total = 0
        for li in range(n_loci):
            if not counted[li] or not has[li]:
                continue
            b1 = states[t, li, 0]
            b2 = states[t, li, 1]
            if b1 < 0:
                continue
            res = kernels.orient(int(table[li, 0, b1]), int(table[li, 0, b2]),
                                 int(table[li, 1, b1]), int(table[li, 1, b2]))
            mm = res[1]
            if mm > limits[li]:
                total = 127
                break
            total += mm
        out[t] = total
    return out


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
