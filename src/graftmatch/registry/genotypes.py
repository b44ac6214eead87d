"""The index's dictionary of distinct imputed genotypes.

A registry of millions of donors holds tens of millions of imputed genotypes, most of them
shared between donors. Each is stored once, as a row of per-locus genotype ids (``A*01:01+
A*02:01`` at locus A is one id), and donors point at rows. Locus genotypes are few (thousands
per locus) and kept in a Python dict; rows are many, so they live in a compiled open-addressing
hash table over a numpy array (see ``docs/adr/0006-registry-search.md``): exact, with memory
linear in the rows, and no Python object per row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from numba import njit

IntArray = npt.NDArray[np.int32]
#: Room for this many allele entries per locus in a packed pair key.
_PAIR_BASE = 1 << 24


@njit(cache=True)
def _row_hash(row: npt.NDArray[np.int32]) -> np.uint64:
    h = np.uint64(14695981039346656037)
    for v in row:
        h = (h ^ np.uint64(v)) * np.uint64(1099511628211)
    return h ^ (h >> np.uint64(29))


@njit(cache=True)
def _insert(rows: IntArray, store: IntArray, count: int, slots: npt.NDArray[np.int64],
            out: IntArray) -> int:
    """Look up (or add) each row; ``out`` gets its id. Returns the new row count. The caller
    guarantees room in ``store`` and a table at most half full."""
    mask = np.uint64(len(slots) - 1)
    width = rows.shape[1]
    for i in range(rows.shape[0]):
        j = _row_hash(rows[i]) & mask
        while True:
            s = slots[j]
            if s < 0:
                store[count] = rows[i]
                slots[j] = count
                out[i] = count
                count += 1
                break
            same = True
            for c in range(width):
                if store[s, c] != rows[i, c]:
                    same = False
                    break
            if same:
                out[i] = s
                break
            j = (j + np.uint64(1)) & mask
    return count


@njit(cache=True)
def _rehash(store: IntArray, count: int, slots: npt.NDArray[np.int64]) -> None:
    mask = np.uint64(len(slots) - 1)
    for s in range(count):
        j = _row_hash(store[s]) & mask
        while slots[j] >= 0:
            j = (j + np.uint64(1)) & mask
        slots[j] = s


class GenotypeDictionary:
    """Distinct genotypes over a frequency set's loci.

    Alleles are given as codes: ``0..V-1`` are the set's vocabulary entries at that locus, and
    further names (typed alleles a fallback imputation added) are given by name.
    """

    def __init__(self, loci: Sequence[str], vocab_names: Sequence[Sequence[str]]) -> None:
        self.loci = tuple(loci)
        self._names: list[list[str]] = [list(names) for names in vocab_names]
        self._name_ids: list[dict[str, int]] = [{n: i for i, n in enumerate(names)}
                                                for names in self._names]
        self._vocab = [len(names) for names in self._names]
        #: Per locus: the genotype texts, and packed allele pair -> genotype id.
        self.texts: list[list[str]] = [[] for _ in self.loci]
        self._pairs: list[dict[int, int]] = [{} for _ in self.loci]
        self._store = np.empty((1024, len(self.loci)), dtype=np.int32)
        self._slots = np.full(2048, -1, dtype=np.int64)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, codes: IntArray, extra: Sequence[Sequence[str]]) -> IntArray:
        """Ids of genotypes ``codes[g, locus, copy]``; a code ``V + k`` at a locus with ``V``
        vocabulary entries names ``extra[locus][k]``."""
        rows = np.empty(codes.shape[:2], dtype=np.int32)
        for col in range(len(self.loci)):
            alleles = codes[:, col, :].astype(np.int64)
            if extra[col]:
                alleles = self._global(col, alleles, extra[col])
            keys = np.minimum(alleles[:, 0], alleles[:, 1]) * _PAIR_BASE + np.maximum(
                alleles[:, 0], alleles[:, 1])
            distinct, inverse = np.unique(keys, return_inverse=True)
            ids = np.array([self._pair_id(col, int(k)) for k in distinct], dtype=np.int32)
            rows[:, col] = ids[inverse.ravel()]
        return self._rows(rows)

    def _global(self, col: int, alleles: npt.NDArray[np.int64], extra: Sequence[str]
                ) -> npt.NDArray[np.int64]:
        """Codes past the vocabulary, renumbered from chunk-local to dictionary-wide."""
        names, ids, vocab = self._names[col], self._name_ids[col], self._vocab[col]
        mapping = np.empty(len(extra), dtype=np.int64)
        for k, name in enumerate(extra):
            gid = ids.get(name)
            if gid is None:
                gid = ids[name] = len(names)
                names.append(name)
            mapping[k] = gid
        out = alleles.copy()
        past = alleles >= vocab
        out[past] = mapping[alleles[past] - vocab]
        return out

    def _pair_id(self, col: int, key: int) -> int:
        pairs = self._pairs[col]
        lid = pairs.get(key)
        if lid is None:
            names = self._names[col]
            lid = pairs[key] = len(self.texts[col])
            self.texts[col].append("+".join(sorted((names[key // _PAIR_BASE],
                                                    names[key % _PAIR_BASE]))))
        return lid

    def _rows(self, rows: IntArray) -> IntArray:
        need = self._count + len(rows)
        if need > len(self._store):
            grown = np.empty((max(need, 2 * len(self._store)), len(self.loci)), np.int32)
            grown[:self._count] = self._store[:self._count]
            self._store = grown
        if 2 * need > len(self._slots):
            size = len(self._slots)
            while 2 * need > size:
                size *= 2
            self._slots = np.full(size, -1, dtype=np.int64)
            _rehash(self._store, self._count, self._slots)
        out = np.empty(len(rows), dtype=np.int32)
        self._count = _insert(np.ascontiguousarray(rows), self._store, self._count,
                              self._slots, out)
        return out

    def rows(self) -> IntArray:
        return self._store[:self._count].copy()
