"""Grading many pairs at once: the same rules as :class:`Matcher`, compiled.

Each typing is read once into *states*: per locus, the two slots (typed position, acting
position). A registry repeats a few hundred distinct allele lists per locus millions of times, so
the comparison of a patient state with a donor state (:func:`.grades.match_code`) is tabulated
once per pair of distinct states; the per-pair work is then four table reads per locus and the
locus rules of :mod:`.kernels`, compiled with numba and run on every core.

Typings with alternative genotypes (``|``) at a graded locus are graded by the pair grader
itself, so results never depend on which path a pair took.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from graftmatch.errors import GraftmatchError
from graftmatch.matching import kernels
from graftmatch.matching.grader import MAX_JOINT_CHOICES, Matcher
from graftmatch.matching.grades import match_code
from graftmatch.matching.positions import Position, Slot
from graftmatch.typing.model import Typing
from graftmatch.typing.parser import TypingReader

Array = npt.NDArray[Any]
#: Fields per pair and locus in :attr:`PairBlock.loci`.
FIELDS = ("mismatches", "gvh", "hvg", "antigen", "allele", "unknown", "potential", "confidence",
          "permissive")
MM, GVH, HVG, ANTIGEN, ALLELE, UNKNOWN, POTENTIAL, CONFIDENCE, PERMISSIVE = range(len(FIELDS))
#: Marks an untyped locus (either side) in :attr:`PairBlock.loci`, and "no DPB1" for TCE.
UNTYPED = 255
#: Per-pair totals over the loci typed on both sides, in :attr:`PairBlock.totals`; ``untyped``
#: has bit l set when locus l is untyped, ``category`` indexes :data:`kernels.CATEGORIES`.
TOTALS = ("mismatches", "typed", "gvh", "hvg", "antigen", "potential", "untyped",
          "confidence", "category")


@dataclass
class Cohort:
    """Typings encoded for batch grading (patients or donors)."""

    ids: list[str]
    #: ``(n, loci, 2)`` state ids per locus copy; -1 where untyped.
    states: npt.NDArray[np.int32]
    #: DPB1 TCE groups the most immunogenic copy may have (bit g = group g).
    tce: npt.NDArray[np.int8]
    typings: list[Typing]
    #: Rows graded by the pair grader (alternative genotypes at a graded locus).
    complex: frozenset[int]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class PairBlock:
    """Results for a block of pairs, as arrays (one row per pair)."""

    patient_rows: npt.NDArray[np.int64]
    donor_rows: npt.NDArray[np.int64]
    #: ``(pairs, loci, len(FIELDS))``; :data:`UNTYPED` in every field of an untyped locus.
    loci: npt.NDArray[np.uint8]
    #: DPB1 TCE verdict code (:data:`kernels.TCE_VERDICTS`), :data:`UNTYPED` if not graded.
    tce: npt.NDArray[np.uint8]
    #: ``(pairs, len(TOTALS))``.
    totals: npt.NDArray[np.int16]


class BatchMatcher:
    """Encodes cohorts and grades pairs of them over fixed loci."""

    def __init__(self, matcher: Matcher, loci: Sequence[str] | None = None) -> None:
        self.matcher = matcher
        self.loci = matcher.check_loci(loci or matcher.policy.counted_loci)
        self.dpb1 = self.loci.index("DPB1") if "DPB1" in self.loci else -1
        self._state_ids: list[dict[tuple[str, str, str, str], int]] = [{} for _ in self.loci]
        self._states: list[list[Slot]] = [[] for _ in self.loci]

    def encode(self, rows: Sequence[tuple[str, Typing]]) -> Cohort:
        n = len(rows)
        states = np.full((n, len(self.loci), 2), -1, dtype=np.int32)
        tce = np.zeros(n, dtype=np.int8)
        complex_rows: set[int] = set()
        for row, (_, typing) in enumerate(rows):
            tce[row], is_complex = self.encode_into(typing, states[row])
            if is_complex:
                complex_rows.add(row)
        return Cohort([ident for ident, _ in rows], states, tce, [t for _, t in rows],
                      frozenset(complex_rows))

    def encode_into(self, typing: Typing, states: npt.NDArray[np.int32]) -> tuple[int, bool]:
        """Write one typing's states (``(loci, 2)``, -1 where untyped) into ``states``;
        return its DPB1 TCE groups and whether it needs the pair grader (alternatives)."""
        tce, is_complex = 0, False
        for block in self.matcher.blocks(typing):
            if len(block) > 1 and any(locus in self.loci for locus in block[0]):
                is_complex = True
            for locus, slots in block[0].items():
                if locus not in self.loci:
                    continue
                li = self.loci.index(locus)
                states[li] = self._state(li, slots)
                if li == self.dpb1:
                    masks = [self.matcher.tce.mask(s.acting) for s in slots]
                    tce = kernels.lowest_groups(masks[0], masks[1])
        return tce, is_complex

    def encode_readings(self, typing: Typing) -> list[tuple[npt.NDArray[np.int32], int]]:
        """Every reading of a typing with alternative genotypes (``|``), one combination of
        alternatives per reading, as ``(states, DPB1 TCE groups)``: a screen that takes the
        best reading never drops a pair the pair grader would keep."""
        blocks = [b for b in self.matcher.blocks(typing)
                  if any(locus in self.loci for locus in b[0])]
        count = 1
        for block in blocks:
            count *= len(block)
        if count > MAX_JOINT_CHOICES:
            raise GraftmatchError(f"the typing lists {count} combinations of alternative "
                                  f"genotypes; at most {MAX_JOINT_CHOICES} are searched")
        out = []
        for choice in itertools.product(*blocks):
            states = np.full((len(self.loci), 2), -1, dtype=np.int32)
            tce = 0
            for alternative in choice:
                for locus, slots in alternative.items():
                    if locus not in self.loci:
                        continue
                    li = self.loci.index(locus)
                    states[li] = self._state(li, slots)
                    if li == self.dpb1:
                        masks = [self.matcher.tce.mask(s.acting) for s in slots]
                        tce = kernels.lowest_groups(masks[0], masks[1])
            out.append((states, tce))
        return out

    def slot(self, li: int, state: int) -> Slot:
        """The slot behind a state id at locus ``li``."""
        return self._states[li][state]

    def state_keys(self) -> list[list[list[str]]]:
        """Per locus, each state as (typed allele list, acting allele list; an absent DRB3/4/5
        copy by its text, which says how its absence is known): enough to rebuild the states in
        another process (:meth:`restore`)."""
        return [[[slot.typed.text, slot.acting.text] for slot in states]
                for states in self._states]

    @classmethod
    def restore(cls, matcher: Matcher, loci: Sequence[str], keys: list[list[list[str]]],
                reader: TypingReader) -> BatchMatcher:
        """A batch matcher whose states are those :meth:`state_keys` listed, in that order."""
        out = cls(matcher, loci)
        for li, states in enumerate(keys):
            for typed, acting in states:
                slot = Slot(out._position(reader, typed), out._position(reader, acting))
                out._state(li, (slot, slot))
        return out

    def _position(self, reader: TypingReader, text: str) -> Position:
        positions = self.matcher.positions
        return positions.absent_named(text) or positions.position(
            reader.parse(text).blocks[0][0][0][0])

    def _state(self, li: int, slots: tuple[Slot, Slot]) -> tuple[int, int]:
        ids = self._state_ids[li]
        out = []
        for slot in slots:
            key = (slot.typed.locus, slot.typed.text, slot.acting.locus, slot.acting.text)
            sid = ids.get(key)
            if sid is None:
                sid = ids[key] = len(self._states[li])
                self._states[li].append(slot)
            out.append(sid)
        return out[0], out[1]

    def tables(self, patients: Cohort, donors: Cohort) -> tuple[
            npt.NDArray[np.uint8], npt.NDArray[np.int32], npt.NDArray[np.int32]]:
        """Comparison codes of every patient state with every donor state, per locus, and the
        cohorts' states renumbered into the tables' rows and columns."""
        loci = len(self.loci)
        p_used = [np.unique(patients.states[:, li][patients.states[:, li] >= 0])
                  for li in range(loci)]
        d_used = [np.unique(donors.states[:, li][donors.states[:, li] >= 0])
                  for li in range(loci)]
        rows = max((len(u) for u in p_used), default=0)
        cols = max((len(u) for u in d_used), default=0)
        table = np.zeros((loci, max(rows, 1), max(cols, 1)), dtype=np.uint8)
        p_states = np.full_like(patients.states, -1)
        d_states = np.full_like(donors.states, -1)
        for li in range(loci):
            states = self._states[li]
            for r, ps in enumerate(p_used[li]):
                for c, ds in enumerate(d_used[li]):
                    table[li, r, c] = match_code(states[ps], states[ds])
            for used, src, dst in ((p_used[li], patients.states, p_states),
                                   (d_used[li], donors.states, d_states)):
                remap = np.full(len(states) + 1, -1, dtype=np.int32)
                remap[used] = np.arange(len(used), dtype=np.int32)
                dst[:, li] = remap[src[:, li]]  # -1 indexes the trailing -1
        return table, p_states, d_states

    def grade(self, patients: Cohort, donors: Cohort, patient_rows: npt.NDArray[np.int64],
              donor_rows: npt.NDArray[np.int64],
              prepared: tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32],
                              npt.NDArray[np.int32]] | None = None) -> PairBlock:
        """Grade the pairs ``(patients[patient_rows[k]], donors[donor_rows[k]])``."""
        table, p_states, d_states = prepared or self.tables(patients, donors)
        n = len(patient_rows)
        out = np.empty((n, len(self.loci), len(FIELDS)), dtype=np.uint8)
        tce = np.full(n, UNTYPED, dtype=np.uint8)
        totals = np.empty((n, len(TOTALS)), dtype=np.int16)
        _grade_pairs(patient_rows, donor_rows, p_states, d_states, table, self.dpb1,
                     patients.tce, donors.tce, out, tce, totals)
        if patients.complex or donors.complex:
            self._grade_complex(patients, donors, patient_rows, donor_rows, out, tce, totals)
        return PairBlock(patient_rows, donor_rows, out, tce, totals)

    def _grade_complex(self, patients: Cohort, donors: Cohort,
                       patient_rows: npt.NDArray[np.int64], donor_rows: npt.NDArray[np.int64],
                       out: npt.NDArray[np.uint8], tce: npt.NDArray[np.uint8],
                       totals: npt.NDArray[np.int16]) -> None:
        """Pairs with alternative genotypes: graded by the pair grader, written alike."""
        involved = (np.isin(patient_rows, list(patients.complex))
                    | np.isin(donor_rows, list(donors.complex)))
        for k in np.flatnonzero(involved):
            result = self.matcher.match(patients.typings[patient_rows[k]],
                                        donors.typings[donor_rows[k]], self.loci)
            for li, locus in enumerate(result.loci):
                if not locus.typed:
                    out[k, li] = UNTYPED
                    continue
                out[k, li] = [v or 0 for v in (
                    locus.mismatches, locus.gvh_mismatches, locus.hvg_mismatches,
                    locus.antigen_mismatches, locus.allele_mismatches, locus.unknown_mismatches,
                    locus.potential_matches, int(locus.confidence),
                    locus.permissive_mismatches)]
                if locus.tce is not None:
                    tce[k] = kernels.TCE_VERDICTS.index(locus.tce.verdict)
            untyped = sum(1 << li for li, locus in enumerate(result.loci) if not locus.typed)
            typed = sum(1 for locus in result.loci if locus.typed)
            totals[k] = (result.total_mismatches, typed, result.gvh_mismatches,
                         result.hvg_mismatches, result.antigen_mismatches,
                         sum(locus.potential_matches or 0 for locus in result.loci), untyped,
                         int(result.confidence), kernels.CATEGORIES.index(result.category))


@numba.njit(parallel=True, cache=True)
def _grade_pairs(patient_rows: Array, donor_rows: Array, p_states: Array, d_states: Array,
                 table: Array, dpb1: int, p_tce: Array, d_tce: Array, out: Array,
                 tce_out: Array, totals: Array) -> None:
    """The compiled per-pair loop (runs in parallel over pairs)."""
    for k in numba.prange(patient_rows.shape[0]):
        i = patient_rows[k]
        j = donor_rows[k]
        t_mm = t_typed = t_gvh = t_hvg = t_antigen = t_potential = untyped = 0
        overall = 3
        dpb1_mm = 0
        verdict = kernels.TCE_UNKNOWN
        for li in range(p_states.shape[1]):
            a1 = p_states[i, li, 0]
            a2 = p_states[i, li, 1]
            b1 = d_states[j, li, 0]
            b2 = d_states[j, li, 1]
            if a1 < 0 or b1 < 0:
                for f in range(out.shape[2]):
                    out[k, li, f] = 255
                untyped |= 1 << li
                overall = min(overall, 1)
                continue
            c11 = int(table[li, a1, b1])
            c12 = int(table[li, a1, b2])
            c21 = int(table[li, a2, b1])
            c22 = int(table[li, a2, b2])
            cross, mm, gvh, hvg, potential, antigen, allele, unknown, permissive = kernels.orient(
                c11, c12, c21, c22)
            conf = min(c12 & 3, c21 & 3) if cross else min(c11 & 3, c22 & 3)
            out[k, li, 0] = mm
            out[k, li, 1] = gvh
            out[k, li, 2] = hvg
            out[k, li, 3] = antigen
            out[k, li, 4] = allele
            out[k, li, 5] = unknown
            out[k, li, 6] = potential
            out[k, li, 7] = conf
            out[k, li, 8] = permissive
            t_mm += mm
            t_typed += 1
            t_gvh += gvh
            t_hvg += hvg
            t_antigen += antigen
            t_potential += potential
            overall = min(overall, conf)
            if li == dpb1:
                dpb1_mm = mm
                verdict = kernels.tce_verdict(int(p_tce[i]), int(d_tce[j]), mm > 0)
                tce_out[k] = verdict
        totals[k, 0] = t_mm
        totals[k, 1] = t_typed
        totals[k, 2] = t_gvh
        totals[k, 3] = t_hvg
        totals[k, 4] = t_antigen
        totals[k, 5] = t_potential
        totals[k, 6] = untyped
        totals[k, 7] = overall
        totals[k, 8] = kernels.category(t_mm - dpb1_mm, dpb1_mm, verdict, overall)


class SummaryLociError(GraftmatchError, ValueError):
    """Summary loci that the batch does not grade."""


class MismatchSummary:
    """Distribution of total mismatches over a set of loci, for pairs typed at all of them,
    accumulated block by block; each count split into certain and potential pairs (a pair is
    potential when any of its matches at these loci holds only for some readings)."""

    def __init__(self, loci: Sequence[str], batch_loci: Sequence[str]) -> None:
        missing = [locus for locus in loci if locus not in batch_loci]
        if missing:
            raise SummaryLociError(f"summary loci {', '.join(missing)} are not graded in this "
                                   f"batch (graded: {', '.join(batch_loci)}); add them to --loci")
        self.loci = tuple(loci)
        self._columns = [list(batch_loci).index(locus) for locus in loci]
        self.pairs = np.zeros(2 * len(loci) + 1, dtype=np.int64)
        self.potential = np.zeros_like(self.pairs)
        self.untyped = 0

    def add(self, block: PairBlock) -> None:
        mm_all = block.loci[:, self._columns, MM]
        typed = (mm_all != UNTYPED).all(axis=1)
        self.untyped += int((~typed).sum())
        mm = mm_all[typed].sum(axis=1, dtype=np.int64)
        potential = block.loci[:, self._columns, POTENTIAL][typed].any(axis=1)
        self.pairs += np.bincount(mm, minlength=len(self.pairs))
        self.potential += np.bincount(mm[potential], minlength=len(self.pairs))

    def rows(self) -> list[dict[str, int]]:
        return [{"mismatches": k, "pairs": int(self.pairs[k]),
                 "certain": int(self.pairs[k] - self.potential[k]),
                 "potential": int(self.potential[k])}
                for k in range(len(self.pairs))]
