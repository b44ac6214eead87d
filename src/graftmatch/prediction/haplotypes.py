"""A population's haplotypes compiled for imputation: integer codes, sorted by frequency.

Each locus of the set gets a vocabulary of the allele names the set uses there (``A*01:01`` in
a 2-field set, ``A*01:01:01G`` in a G set), each resolved to the release's allele ids. A
typed copy is compatible with a vocabulary entry when the two share an allele id, so typings and
sets at any resolution meet without string conversion (XX codes, MACs, G groups and serology
included). Haplotypes are sorted by descending frequency (the enumeration relies on it) and
indexed per locus, so the candidates for a typing are found from its most selective locus.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from graftmatch.prediction.frequencies import Population
from graftmatch.typing.model import AlleleList, Call
from graftmatch.typing.parser import TypingReader

IntArray = npt.NDArray[np.int32]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class LocusVocabulary:
    """The allele names a set uses at one locus, each as a parsed one-element allele list."""

    locus: str
    entries: tuple[AlleleList, ...]

    @cached_property
    def by_allele(self) -> dict[int, tuple[int, ...]]:
        """allele id -> the entries containing it."""
        out: dict[int, list[int]] = {}
        for code, entry in enumerate(self.entries):
            for allele in {a for call in entry for a in call.alleles}:
                out.setdefault(allele, []).append(code)
        return {a: tuple(v) for a, v in out.items()}

    @cached_property
    def names(self) -> list[str]:
        return ["/".join(c.text for c in entry) for entry in self.entries]

    def compatible(self, copy: AlleleList) -> set[int]:
        """Entries sharing at least one allele with a typed copy."""
        out: set[int] = set()
        for call in copy:
            for allele in call.alleles:
                out.update(self.by_allele.get(allele, ()))
        return out


def vocabulary(locus: str, entries: Sequence[AlleleList]) -> LocusVocabulary:
    """A vocabulary of allele lists (a set's names, or typed copies added by a fallback)."""
    return LocusVocabulary(locus, tuple(entries))


class HaplotypeTable:
    """One population's haplotypes over fixed loci, ready for imputation."""

    def __init__(self, name: str, loci: tuple[str, ...], vocab: tuple[LocusVocabulary, ...],
                 codes: IntArray, freqs: FloatArray) -> None:
        order = np.argsort(-freqs, kind="stable")
        self.name, self.loci, self.vocab = name, loci, vocab
        self.codes: IntArray = np.ascontiguousarray(codes[order], dtype=np.int32)
        self.freqs: FloatArray = np.ascontiguousarray(freqs[order], dtype=np.float64)
        width = max(len(v.entries) for v in vocab) + 1
        #: Per locus, haplotype ids grouped by code: ids ``by_code[l, starts[l, c]:starts[l,
        #: c + 1]]`` carry entry ``c``, in descending frequency.
        self.by_code: IntArray = np.empty((len(loci), len(self.freqs)), dtype=np.int32)
        self.starts: IntArray = np.zeros((len(loci), width), dtype=np.int32)
        for col in range(len(loci)):
            self.by_code[col] = np.argsort(self.codes[:, col], kind="stable")
            counts = np.bincount(self.codes[:, col], minlength=len(vocab[col].entries))
            self.starts[col, 1:len(counts) + 1] = np.cumsum(counts)
            self.starts[col, len(counts) + 1:] = len(self.freqs)
        self._marginals: dict[tuple[str, ...], HaplotypeTable] = {}

    @classmethod
    def compile(cls, population: Population, reader: TypingReader) -> HaplotypeTable:
        """Compile a population read by :func:`read_frequency_set` (names already checked)."""
        if not population.haplotypes:
            raise ValueError(f"population {population.name} has no haplotypes")
        width = len(population.haplotypes[0])
        names: list[dict[str, int]] = [{} for _ in range(width)]
        codes = np.empty((len(population.haplotypes), width), dtype=np.int32)
        for row, hap in enumerate(population.haplotypes):
            for col, name in enumerate(hap):
                codes[row, col] = names[col].setdefault(name, len(names[col]))
        loci, vocab = [], []
        for table in names:
            calls = [_single_call(reader, name) for name in table]
            loci.append(calls[0].locus)
            vocab.append(vocabulary(calls[0].locus, [(c,) for c in calls]))
        return cls(population.name, tuple(loci), tuple(vocab), codes,
                   np.asarray(population.frequencies, dtype=np.float64))

    def __len__(self) -> int:
        return len(self.freqs)

    @cached_property
    def total(self) -> float:
        return float(self.freqs.sum())

    def marginal(self, loci: Sequence[str]) -> HaplotypeTable:
        """The table summed over every other locus (frequencies of the partial haplotypes)."""
        key = tuple(loci)
        if key == self.loci:
            return self
        if key not in self._marginals:
            cols = [self.loci.index(locus) for locus in key]
            sub = self.codes[:, cols]
            rows, inverse = np.unique(sub, axis=0, return_inverse=True)
            freqs = np.bincount(inverse.ravel(), weights=self.freqs, minlength=len(rows))
            self._marginals[key] = HaplotypeTable(
                f"{self.name} ({'~'.join(key)})", key, tuple(self.vocab[c] for c in cols),
                rows.astype(np.int32), freqs.astype(np.float64))
        return self._marginals[key]

    def haplotype(self, row: int) -> str:
        return "~".join(v.names[c] for v, c in zip(self.vocab, self.codes[row], strict=True))


def _single_call(reader: TypingReader, name: str) -> Call:
    typing = reader.parse(name)
    return typing.blocks[0][0][0][0][0]
