"""Imputation: the posterior over a subject's genotypes given a typing and a frequency set.

Under Hardy-Weinberg equilibrium a pair of haplotypes {h1, h2} has prior 2*f1*f2 (f^2 when
h1 = h2); the posterior of a pair that explains the typing in some phase is its prior over the
sum of the priors of all explaining pairs (DOMAIN 3.2). graftmatch computes that sum exactly
(per signature group, see :mod:`.kernels`), lists the pairs above ``min_posterior`` and merges
them into unphased genotypes; the pairs not listed are reported as truncated mass.

Typings with no explaining pair are not left without an answer. In order, each step flagged in
the result with its reason:

1. ``ok``: full haplotypes explain the typing (or it is exact at every locus: no imputation);
2. ``unrepresented``, full haplotypes: a typed allele is absent from the set at its locus. It
   is added as a haplotype with every partial haplotype of the other loci, at the frequency of
   the rarest allele there (times ``unrepresented_factor``) spread in proportion to those
   partial haplotypes (GRIM's plan C with linkage kept): the allele is assumed in linkage
   equilibrium, while the other loci keep their linkage and its typed partner still phases;
3. ``fallback``: loci are imputed in blocks (``fallback_blocks``, GRIM's plan B) assumed in
   linkage equilibrium, each block with missing alleles added as in 2., and within a block
   that still fails, locus by locus (``unrepresented`` when an allele had to be added).

Frequencies of another population than the one asked for (``population_steps``: a broader
population, the set's only one, the pooled set) lower confidence too: an ``ok`` imputation then
reads ``population-substituted``, and every imputed status gets the population reason. An exact
typing reads no frequencies, so it stays ``ok``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from graftmatch.errors import GraftmatchError
from graftmatch.nomenclature.names import sort_key
from graftmatch.prediction import kernels
from graftmatch.prediction.haplotypes import HaplotypeTable, LocusVocabulary, vocabulary
from graftmatch.prediction.settings import ImputationSettings, default_settings
from graftmatch.typing.model import AlleleList, CallKind, Typing

IntArray = npt.NDArray[np.int32]
FloatArray = npt.NDArray[np.float64]

#: Tables extended with missing alleles kept per imputer (least recently used dropped first):
#: a registry's typings repeat their missing alleles, and each table is as large as the set.
EXTENDED_TABLES_KEPT = 16

#: Call kinds that name one allele or one allele group: a typing made only of these, at every
#: locus of the set, is exact and needs no imputation (DOMAIN 3.2 step 5).
EXACT_KINDS = frozenset({CallKind.ALLELE, CallKind.G_GROUP, CallKind.P_GROUP})


class ImputationError(GraftmatchError):
    """A typing that cannot be imputed as asked (too many alternatives, no usable locus)."""


@dataclass(frozen=True)
class GenotypeSet:
    """Unphased multi-locus genotypes with probabilities, most likely first.

    ``codes[g, l]`` holds the two vocabulary entries of genotype ``g`` at locus ``l`` (lower
    code first); ``vocab[l]`` names them.
    """

    loci: tuple[str, ...]
    vocab: tuple[LocusVocabulary, ...]
    codes: IntArray = field(repr=False)
    probabilities: FloatArray = field(repr=False)

    def __len__(self) -> int:
        return len(self.probabilities)

    def genotype(self, g: int) -> str:
        """Genotype ``g`` as a GL String (loci joined by ``^``, copies in name order)."""
        return "^".join(self.locus_text(g, col) for col in range(len(self.loci)))

    def locus_text(self, g: int, col: int) -> str:
        names = self.vocab[col].names
        return "+".join(sorted((names[c] for c in self.codes[g, col]), key=sort_key))

    def locus_genotype(self, g: int, col: int) -> tuple[AlleleList, AlleleList]:
        v = self.vocab[col]
        return v.entries[self.codes[g, col, 0]], v.entries[self.codes[g, col, 1]]


@dataclass(frozen=True)
class HaplotypePairs:
    """The most likely phased haplotype pairs (named only when shown)."""

    table: HaplotypeTable | None
    first: IntArray
    second: IntArray
    probabilities: FloatArray

    def to_list(self, limit: int) -> list[dict[str, Any]]:
        if self.table is None:
            return []
        return [{"haplotypes": [self.table.haplotype(int(self.first[i])),
                                self.table.haplotype(int(self.second[i]))],
                 "probability": float(self.probabilities[i])}
                for i in range(min(limit, len(self.probabilities)))]


NO_PAIRS = HaplotypePairs(None, np.empty(0, dtype=np.int32), np.empty(0, dtype=np.int32),
                          np.empty(0))


#: Imputation statuses, worst first. Any but ``ok`` is shown as lowered confidence.
STATUSES = ("unrepresented", "fallback", "population-substituted", "ok")


@dataclass(frozen=True)
class Imputation:
    """The imputed genotypes of one typing, with how they were obtained."""

    #: The typing as read (shown as a canonical GL String).
    typing: Typing = field(repr=False)
    status: str  # one of STATUSES
    method: str  # typed | haplotypes | blocks
    population: str
    population_steps: tuple[str, ...]
    genotypes: GenotypeSet
    #: Posterior mass of explaining haplotype pairs not listed (pairs below ``min_posterior``,
    #: genotypes beyond ``max_genotypes``); listed probabilities fall short of 1 by this much.
    truncated_mass: float
    typed_loci: tuple[str, ...]
    imputed_loci: tuple[str, ...]
    #: Typed loci the frequency set does not cover; they are not imputed.
    ignored_loci: tuple[str, ...]
    reasons: tuple[str, ...] = ()
    #: Phased pairs, when full haplotypes explained the typing.
    pairs: HaplotypePairs = NO_PAIRS

    def to_dict(self, limit: int | None = None) -> dict[str, Any]:
        n = len(self.genotypes) if limit is None else min(limit, len(self.genotypes))
        return {
            "typing": self.typing.to_gl(),
            "status": self.status,
            "confidence": confidence(self.status),
            "method": self.method,
            "population": self.population,
            "population_steps": list(self.population_steps),
            "reasons": list(self.reasons),
            "loci": list(self.genotypes.loci),
            "typed_loci": list(self.typed_loci),
            "imputed_loci": list(self.imputed_loci),
            "ignored_loci": list(self.ignored_loci),
            "truncated_mass": self.truncated_mass,
            "genotype_count": len(self.genotypes),
            "genotypes": [{"genotype": self.genotypes.genotype(g),
                           "probability": float(self.genotypes.probabilities[g])}
                          for g in range(n)],
            "haplotype_pairs": self.pairs.to_list(n),
        }


def confidence(status: str) -> str:
    """``normal`` for an ``ok`` status, ``lowered`` for any other."""
    return "normal" if status == "ok" else "lowered"


@dataclass(frozen=True)
class _Reading:
    """A typing over a table's loci: per reading, per locus, its two copies (None: untyped),
    and phase groups (bit masks over locus columns)."""

    copies: tuple[tuple[tuple[AlleleList, AlleleList] | None, ...], ...]
    groups: tuple[tuple[int, ...], ...]

    def typed_mask(self, k: int) -> int:
        return sum(1 << col for col, c in enumerate(self.copies[k]) if c is not None)


@dataclass
class _Result:
    genotypes: GenotypeSet
    truncated: float
    pairs: HaplotypePairs = NO_PAIRS


class Imputer:
    """Imputes typings against one population's haplotype table. Reuse one: compatibility
    of typed copies is cached."""

    def __init__(self, table: HaplotypeTable, settings: ImputationSettings | None = None, *,
                 population_steps: Sequence[str] = (), pairs_listed: int = 20) -> None:
        self.table = table
        self.settings = settings or default_settings()
        self.population_steps = tuple(population_steps)
        self.pairs_listed = pairs_listed
        #: (vocabulary id, copy) -> (vocabulary, mask); the vocabulary is kept so that an id
        #: reused after garbage collection can never return another vocabulary's mask.
        self._compat: dict[tuple[int, str], tuple[LocusVocabulary, npt.NDArray[np.bool_]]] = {}
        #: (table loci, (locus column, missing names)...) -> the table with them added.
        self._extended: dict[tuple[Any, ...], HaplotypeTable] = {}

    # -- reading a typing -----------------------------------------------------------------
    def _reading(self, typing: Typing, loci: tuple[str, ...]) -> tuple[_Reading, set[str]]:
        col_of = {locus: col for col, locus in enumerate(loci)}
        per_block = []
        seen: set[str] = set()
        for block in typing.blocks:
            alternatives = []
            for genotype in block:
                copies: dict[str, list[AlleleList]] = {}
                groups: list[int] = []
                for hap in genotype:
                    mask = 0
                    for alleles in hap:
                        locus = alleles[0].locus
                        seen.add(locus)
                        if locus in col_of:
                            copies.setdefault(locus, []).append(alleles)
                            mask |= 1 << col_of[locus]
                    groups.append(mask)
                phased = {m for m in groups if m & (m - 1)}  # masks of two or more loci
                alternatives.append((copies, phased))
            if any(copies for copies, _ in alternatives):  # blocks of the set's loci only
                per_block.append(alternatives)
        count = 1
        for alternatives in per_block:
            count *= len(alternatives)
        if count > self.settings.max_alternatives:
            raise ImputationError(
                f"the typing lists {count} alternative genotypes; at most "
                f"{self.settings.max_alternatives} are imputed (setting max_alternatives)")
        readings, all_groups = [], []
        for choice in itertools.product(*per_block):
            copies_by_col: list[tuple[AlleleList, AlleleList] | None] = [None] * len(loci)
            phased_masks: set[int] = set()
            for copies, phased in choice:
                for locus, c in copies.items():
                    copies_by_col[col_of[locus]] = (c[0], c[1] if len(c) > 1 else c[0])
                phased_masks |= phased
            in_phase = 0
            for m in phased_masks:
                in_phase |= m
            singles = [1 << col for col, c in enumerate(copies_by_col)
                       if c is not None and not (in_phase >> col) & 1]
            readings.append(tuple(copies_by_col))
            all_groups.append(tuple(sorted(phased_masks)) + tuple(singles))
        return _Reading(tuple(readings), tuple(all_groups)), seen

    def _mask(self, table: HaplotypeTable, col: int, copy: AlleleList) -> npt.NDArray[np.bool_]:
        vocab = table.vocab[col]
        key = (id(vocab), "/".join(c.text for c in copy))
        hit = self._compat.get(key)
        if hit is None or hit[0] is not vocab:
            mask = np.zeros(len(vocab.entries), dtype=np.bool_)
            mask[list(vocab.compatible(copy))] = True
            hit = self._compat[key] = (vocab, mask)
        return hit[1]

    # -- imputing -----------------------------------------------------------------------
    def impute(self, typing: Typing) -> Imputation:
        table = self.table
        reading, seen = self._reading(typing, table.loci)
        typed = tuple(locus for col, locus in enumerate(table.loci)
                      if any(r[col] is not None for r in reading.copies))
        untyped = tuple(locus for locus in table.loci if locus not in typed)
        ignored = tuple(sorted(seen - set(table.loci)))
        common = dict(typing=typing, population=table.name,
                      population_steps=self.population_steps, typed_loci=typed,
                      ignored_loci=ignored)
        if not untyped and self._exact(reading):
            return Imputation(status="ok", method="typed", genotypes=_typed_set(
                table.loci, reading.copies[0]), truncated_mass=0.0, imputed_loci=(),
                **common)  # type: ignore[arg-type]
        substituted = ["frequencies of another population than asked for: "
                       + "; ".join(self.population_steps)] if self.population_steps else []
        result = self._run(table, reading)
        if result is not None:
            return Imputation(status="population-substituted" if substituted else "ok",
                              method="haplotypes", genotypes=result.genotypes,
                              truncated_mass=result.truncated, imputed_loci=untyped,
                              reasons=tuple(substituted), pairs=result.pairs,
                              **common)  # type: ignore[arg-type]
        reasons = [*substituted, f"no pair of {'~'.join(table.loci)} haplotypes in population "
                   f"{table.name} explains the typing"]
        result = self._run_with_missing(table, reading, reasons)
        if result is not None:
            return Imputation(status="unrepresented", method="haplotypes",
                              genotypes=result.genotypes, truncated_mass=result.truncated,
                              imputed_loci=untyped, reasons=tuple(reasons), pairs=result.pairs,
                              **common)  # type: ignore[arg-type]
        parts, unrepresented = self._blocks(reading, reasons)
        genotypes, truncated = self._product(parts)
        return Imputation(status="unrepresented" if unrepresented else "fallback",
                          method="blocks", genotypes=genotypes, truncated_mass=truncated,
                          imputed_loci=untyped, reasons=tuple(reasons),
                          **common)  # type: ignore[arg-type]

    @staticmethod
    def _exact(reading: _Reading) -> bool:
        if len(reading.copies) != 1:
            return False
        return all(len(copy) == 1 and copy[0].kind in EXACT_KINDS
                   for pair in reading.copies[0] if pair is not None for copy in pair)

    def _run(self, table: HaplotypeTable, reading: _Reading) -> _Result | None:
        """Impute with one table; None when no pair of its haplotypes explains the typing."""
        n_alt, n_loci = len(reading.copies), len(table.loci)
        width = table.starts.shape[1] - 1
        compat = np.zeros((n_alt, 2, n_loci, width), dtype=np.bool_)
        typed = np.zeros(n_alt, dtype=np.uint32)
        max_groups = max(len(g) for g in reading.groups) or 1
        groups = np.zeros((n_alt, max_groups), dtype=np.uint32)
        n_groups = np.zeros(n_alt, dtype=np.int32)
        for k, copies in enumerate(reading.copies):
            typed[k] = reading.typed_mask(k)
            n_groups[k] = len(reading.groups[k])
            groups[k, :n_groups[k]] = reading.groups[k]
            for col, pair in enumerate(copies):
                if pair is not None:
                    size = len(table.vocab[col].entries)
                    compat[k, 0, col, :size] = self._mask(table, col, pair[0])
                    compat[k, 1, col, :size] = self._mask(table, col, pair[1])
        h1, h2, posterior, total = kernels.impute(
            table.codes, table.freqs, table.by_code, table.starts, compat, typed, groups,
            n_groups, self.settings.min_posterior)
        if not total > 0:
            return None
        rows, probs = kernels.unphased(table.codes, h1, h2, posterior)
        # Most likely first; equal probabilities (to 12 digits) in the set's order of codes, so
        # that ties list the same way on every run and machine.
        rank = -np.round(probs, 12)
        order = np.argsort(rank, kind="stable")
        if len(order) > 1 and np.any(rank[order[1:]] == rank[order[:-1]]):
            order = np.lexsort((*rows.T[::-1], rank))
        order = order[:self.settings.max_genotypes]
        genotypes = GenotypeSet(table.loci, table.vocab,
                                rows[order].reshape(len(order), len(table.loci), 2),
                                probs[order])
        top = np.argsort(-posterior, kind="stable")[:self.pairs_listed]
        pairs = HaplotypePairs(table, h1[top], h2[top], posterior[top])
        return _Result(genotypes, max(0.0, 1.0 - float(probs[order].sum())), pairs)

    # -- fallbacks ----------------------------------------------------------------------
    def _run_with_missing(self, table: HaplotypeTable, reading: _Reading, reasons: list[str]
                          ) -> _Result | None:
        """Impute with the typed copies ``table`` has no entry for added (see the module
        docstring, step 2); None when none is missing or the typing is still unexplained.
        On success the added alleles are named in ``reasons``."""
        missing: dict[int, list[AlleleList]] = {}
        for copies in reading.copies:
            for col, pair in enumerate(copies):
                for copy in pair or ():
                    if not self._mask(table, col, copy).any():
                        found = missing.setdefault(col, [])
                        if copy not in found:
                            found.append(copy)
        if not missing:
            return None
        names = {col: [_name(copy) for copy in copies] for col, copies in missing.items()}
        key = (table.loci, *((col, tuple(n)) for col, n in sorted(names.items())))
        extended = self._extended.pop(key, None)
        if extended is None:
            extended = table
            for col in sorted(missing):
                floor = self._rarest(table.loci[col]) * self.settings.unrepresented_factor
                extended = _with_alleles(extended, col, missing[col], floor)
            while len(self._extended) >= EXTENDED_TABLES_KEPT:
                del self._extended[next(iter(self._extended))]
        self._extended[key] = extended  # (re)inserted last: the most recently used
        result = self._run(extended, reading)
        if result is None:
            return None
        for col in sorted(missing):
            locus = table.loci[col]
            others = [other for other in table.loci if other != locus]
            reasons.append(
                f"{locus}: {', '.join(names[col])} not in population {self.table.name}; given "
                f"the frequency of its rarest {locus} allele"
                + (f", on every {'~'.join(others)} haplotype of the set in proportion to its "
                   f"frequency: {'~'.join(others)} keep their linkage" if others else ""))
        return result

    def _rarest(self, locus: str) -> float:
        return float(self.table.marginal((locus,)).freqs.min())

    def _blocks(self, reading: _Reading, reasons: list[str]
                ) -> tuple[list[_Result], bool]:
        """Impute block by block; a block that fails even with its missing alleles added goes
        locus by locus."""
        loci = self.table.loci
        blocks: list[tuple[str, ...]] = []
        for block in self.settings.fallback_blocks:
            inside = tuple(locus for locus in loci if locus in block)
            if inside:
                blocks.append(inside)
        placed = {locus for b in blocks for locus in b}
        blocks += [(locus,) for locus in loci if locus not in placed]
        reasons.append("imputed in blocks " + ", ".join("~".join(b) for b in blocks)
                       + ", assumed in linkage equilibrium with each other")
        parts: list[_Result] = []
        unrepresented = False
        for block in blocks:
            marginal, sub = self.table.marginal(block), _restrict(reading, loci, block)
            part = self._run(marginal, sub)
            if part is None:
                part = self._run_with_missing(marginal, sub, reasons)
                unrepresented |= part is not None
            if part is not None:
                parts.append(part)
                continue
            reasons.append(f"block {'~'.join(block)} is not explained by its haplotypes; "
                           "imputed locus by locus")
            for locus in block:
                single = self.table.marginal((locus,))
                sub = _restrict(reading, loci, (locus,))
                part = self._run(single, sub)
                if part is None:
                    unrepresented = True
                    part = self._run_with_missing(single, sub, reasons)
                    assert part is not None  # every typed copy now has an entry
                parts.append(part)
        return parts, unrepresented

    def _product(self, parts: list[_Result]) -> tuple[GenotypeSet, float]:
        """Independent blocks combined: probabilities multiply, codes concatenate."""
        codes = parts[0].genotypes.codes
        probs = parts[0].genotypes.probabilities
        loci, vocab = list(parts[0].genotypes.loci), list(parts[0].genotypes.vocab)
        for part in parts[1:]:
            g = part.genotypes
            joint = np.outer(probs, g.probabilities).ravel()
            keep = np.flatnonzero(joint >= self.settings.min_posterior)
            keep = keep[np.argsort(-joint[keep], kind="stable")][:self.settings.max_genotypes]
            left, right = np.divmod(keep, len(g))
            codes = np.concatenate([codes[left], g.codes[right]], axis=1)
            probs = joint[keep]
            loci += g.loci
            vocab += g.vocab
        order = [loci.index(locus) for locus in self.table.loci]
        genotypes = GenotypeSet(tuple(self.table.loci), tuple(vocab[i] for i in order),
                                np.ascontiguousarray(codes[:, order]), probs)
        return genotypes, max(0.0, 1.0 - float(probs.sum()))


def _name(copy: AlleleList) -> str:
    return "/".join(c.text for c in copy)


def _with_alleles(table: HaplotypeTable, col: int, copies: Sequence[AlleleList],
                  frequency: float) -> HaplotypeTable:
    """``table`` with each copy added at locus column ``col`` on every partial haplotype of
    the other loci: ``r~X`` at ``frequency * f(r) / total``, so each added allele sums to
    ``frequency``, in linkage equilibrium with the other loci, which keep their linkage. The
    other loci keep their vocabularies (the registry index recodes only changed ones)."""
    others = [c for c in range(len(table.loci)) if c != col]
    if others:
        rest = table.marginal(tuple(table.loci[c] for c in others))
        rest_codes, weights = rest.codes, rest.freqs / table.total
    else:  # a one-locus table: the allele alone
        rest_codes, weights = np.empty((1, 0), dtype=np.int32), np.ones(1)
    vocab = table.vocab[col]
    codes = [table.codes]
    for i in range(len(copies)):
        block = np.empty((len(weights), len(table.loci)), dtype=np.int32)
        block[:, others] = rest_codes
        block[:, col] = len(vocab.entries) + i
        codes.append(block)
    vocabs = list(table.vocab)
    vocabs[col] = vocabulary(vocab.locus, [*vocab.entries, *copies])
    return HaplotypeTable(table.name, table.loci, tuple(vocabs), np.concatenate(codes),
                          np.concatenate([table.freqs, *([weights * frequency] * len(copies))]))


def _restrict(reading: _Reading, loci: tuple[str, ...], block: tuple[str, ...]) -> _Reading:
    """A reading limited to some loci (phase groups cut to the block's columns)."""
    cols = [loci.index(locus) for locus in block]
    copies = tuple(tuple(r[c] for c in cols) for r in reading.copies)
    groups = []
    for k, gs in enumerate(reading.groups):
        new = set()
        for g in gs:
            mask = sum(1 << i for i, c in enumerate(cols) if (g >> c) & 1)
            if mask:
                new.add(mask)
        groups.append(tuple(sorted(new)))
        assert all(copies[k][i] is not None for g in new for i in range(len(cols))
                   if (g >> i) & 1)
    return _Reading(copies, tuple(groups))


def _typed_set(loci: tuple[str, ...], copies: Sequence[tuple[AlleleList, AlleleList] | None]
               ) -> GenotypeSet:
    """An exact typing as a one-genotype set over its own names."""
    vocab, codes = [], np.zeros((1, len(loci), 2), dtype=np.int32)
    for col, (locus, pair) in enumerate(zip(loci, copies, strict=True)):
        assert pair is not None
        entries = list(dict.fromkeys(pair))
        vocab.append(vocabulary(locus, entries))
        codes[0, col] = sorted((entries.index(pair[0]), entries.index(pair[1])))
    return GenotypeSet(loci, tuple(vocab), codes, np.ones(1))
