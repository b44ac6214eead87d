"""Compiled inner loops of imputation (numba).

A typing is given as ``K`` alternative readings (``|`` lists; usually one). For each reading
``k``, locus ``l`` and gene copy ``c``, ``compat[k, c, l, v]`` says whether vocabulary entry
``v`` of the set may be that copy. A haplotype's *signature* is, per reading, two bit masks
over loci: ``a`` (loci where it may be copy 0) and ``b`` (copy 1). Two haplotypes explain a
reading when, for every phase group ``g`` of its typed loci (one locus when unphased, the loci
joined by ``~`` when phased), one of them is copy 0 and the other copy 1 across the whole group.
Signatures take few distinct values, so pair compatibility and the exact total prior are
computed per signature group, and only pairs above the cut are ever listed.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# numba's typed signatures are left to inference; every array is contiguous.


@njit(cache=True, nogil=True)
def _pivot(by_code, starts, compat, typed):  # type: ignore[no-untyped-def]
    """The locus typed in every reading whose compatible entries cover fewest haplotypes, and
    those entries; -1 when no locus is typed in every reading."""
    common = typed[0]
    for k in range(1, len(typed)):
        common &= typed[k]
    n_loci, width = compat.shape[2], compat.shape[3]
    best, best_count = -1, by_code.shape[1] + 1
    for col in range(n_loci):
        if not (common >> np.uint32(col)) & np.uint32(1):
            continue
        count = 0
        for v in range(width):
            if _allowed(compat, col, v):
                count += starts[col, v + 1] - starts[col, v]
        if count < best_count:
            best, best_count = col, count
    return best


@njit(cache=True, nogil=True)
def candidates(codes, by_code, starts, compat, typed):  # type: ignore[no-untyped-def]
    """Haplotypes that can be one copy of the typing under some reading, in table order
    (descending frequency), with their signatures ``(a, b)`` per reading, side by side."""
    n_hap, n_loci = codes.shape
    n_alt, _, _, width = compat.shape
    pivot = _pivot(by_code, starts, compat, typed)
    if pivot < 0:
        ids = np.arange(n_hap).astype(np.int32)
    else:
        total = 0
        for v in range(width):
            if _allowed(compat, pivot, v):
                total += starts[pivot, v + 1] - starts[pivot, v]
        ids = np.empty(total, dtype=np.int32)
        at = 0
        for v in range(width):
            if _allowed(compat, pivot, v):
                lo, hi = starts[pivot, v], starts[pivot, v + 1]
                ids[at:at + hi - lo] = by_code[pivot, lo:hi]
                at += hi - lo
        ids.sort()
    keep = np.empty(len(ids), dtype=np.int32)
    sig = np.zeros((len(ids), 2 * n_alt), dtype=np.int64)
    n = 0
    for h in ids:
        ok = False
        for k in range(n_alt):
            a = 0
            b = 0
            for col in range(n_loci):
                bit = 1 << col
                if typed[k] & bit:
                    if compat[k, 0, col, codes[h, col]]:
                        a |= bit
                    if compat[k, 1, col, codes[h, col]]:
                        b |= bit
            sig[n, 2 * k] = a
            sig[n, 2 * k + 1] = b
            if (a | b) & typed[k] == typed[k]:
                ok = True
        if ok:
            keep[n] = h
            n += 1
    return keep[:n], sig[:n]


@njit(cache=True, nogil=True)
def _allowed(compat, col, v):  # type: ignore[no-untyped-def]
    for k in range(compat.shape[0]):  # noqa: SIM110 (numba compiles loops, not generators)
        if compat[k, 0, col, v] or compat[k, 1, col, v]:
            return True
    return False


@njit(cache=True, nogil=True)
def group_rows(rows):  # type: ignore[no-untyped-def]
    """Exact grouping of equal rows: (group id per row, first row of each group). Rows are
    hashed and sorted by hash; rows sharing a hash are compared in full, so a collision can
    never merge two different rows."""
    n, w = rows.shape
    keys = np.empty(n, dtype=np.int64)
    for i in range(n):
        h = np.int64(1469598103934665603)
        for j in range(w):
            h = (h ^ np.int64(rows[i, j])) * np.int64(1099511628211)
        keys[i] = h
    order = np.argsort(keys, kind="mergesort")
    group = np.empty(n, dtype=np.int64)
    first = np.empty(n, dtype=np.int64)
    n_groups = 0
    i = 0
    while i < n:
        end = i
        while end < n and keys[order[end]] == keys[order[i]]:
            end += 1
        start_group = n_groups
        for x in range(i, end):
            r = order[x]
            found = -1
            for g in range(start_group, n_groups):
                same = True
                for j in range(w):
                    if rows[first[g], j] != rows[r, j]:
                        same = False
                        break
                if same:
                    found = g
                    break
            if found < 0:
                first[n_groups] = r
                found = n_groups
                n_groups += 1
            group[r] = found
        i = end
    return group, first[:n_groups]


@njit(cache=True, nogil=True)
def _pair_ok(s1, s2, groups, n_groups):  # type: ignore[no-untyped-def]
    for k in range(len(n_groups)):
        ok = True
        a1, b1, a2, b2 = s1[2 * k], s1[2 * k + 1], s2[2 * k], s2[2 * k + 1]
        for g in range(n_groups[k]):
            mask = groups[k, g]
            if (a1 & b2) & mask != mask and (b1 & a2) & mask != mask:
                ok = False
                break
        if ok:
            return True
    return False


@njit(cache=True, nogil=True)
def group_compatibility(sig, groups, n_groups):  # type: ignore[no-untyped-def]
    """Which signature groups can pair (symmetric)."""
    n = sig.shape[0]
    out = np.zeros((n, n), dtype=np.bool_)
    for i in range(n):
        for j in range(i, n):
            if _pair_ok(sig[i], sig[j], groups, n_groups):
                out[i, j] = True
                out[j, i] = True
    return out


@njit(cache=True, nogil=True)
def pair_total(group_mass, compatible):  # type: ignore[no-untyped-def]
    """Sum of priors over every explaining unordered pair: the sum over ordered compatible
    pairs of f1*f2 (2*f1*f2 per unordered pair of distinct haplotypes, f^2 for a homozygote)."""
    total = 0.0
    n = len(group_mass)
    for i in range(n):
        for j in range(n):
            if compatible[i, j]:
                total += group_mass[i] * group_mass[j]
    return total


@njit(cache=True, nogil=True)
def enumerate_pairs(freqs, members, group_start, compatible, cut):  # type: ignore[no-untyped-def]
    """Every explaining pair whose prior is at least ``cut``, as candidate positions and prior.

    ``members[group_start[g]:group_start[g + 1]]`` are group ``g``'s candidates, by descending
    frequency, so each scan stops at the first pair below the cut.
    """
    cap = 256
    first = np.empty(cap, dtype=np.int32)
    second = np.empty(cap, dtype=np.int32)
    prior = np.empty(cap, dtype=np.float64)
    n = 0
    n_groups = len(group_start) - 1
    for g1 in range(n_groups):
        for g2 in range(g1, n_groups):
            if not compatible[g1, g2]:
                continue
            lo2, hi2 = group_start[g2], group_start[g2 + 1]
            top2 = freqs[members[lo2]]
            for x in range(group_start[g1], group_start[g1 + 1]):
                i = members[x]
                fi = freqs[i]
                if 2.0 * fi * top2 < cut and fi * fi < cut:
                    break
                start = x if g1 == g2 else lo2
                for y in range(start, hi2):
                    j = members[y]
                    p = fi * fi if i == j else 2.0 * fi * freqs[j]
                    if p < cut:
                        if i == j:
                            continue
                        break
                    if n == cap:
                        cap *= 2
                        first = _grow_int(first, cap)
                        second = _grow_int(second, cap)
                        prior = _grow_float(prior, cap)
                    first[n] = i
                    second[n] = j
                    prior[n] = p
                    n += 1
    return first[:n], second[:n], prior[:n]


@njit(cache=True, nogil=True)
def _grow_int(a, cap):  # type: ignore[no-untyped-def]
    out = np.empty(cap, dtype=a.dtype)
    out[:len(a)] = a
    return out


@njit(cache=True, nogil=True)
def _grow_float(a, cap):  # type: ignore[no-untyped-def]
    out = np.empty(cap, dtype=a.dtype)
    out[:len(a)] = a
    return out


@njit(cache=True, nogil=True)
def impute(codes, freqs, by_code, starts, compat, typed, groups, n_groups, min_posterior):  # type: ignore[no-untyped-def]
    """The whole imputation of one typing against one table.

    Returns the explaining pairs above the cut (haplotype ids and posterior) and the exact sum
    of priors over all explaining pairs (0 when nothing explains the typing).
    """
    ids, sig = candidates(codes, by_code, starts, compat, typed)
    empty = np.empty(0, dtype=np.int32)
    if len(ids) == 0:
        return empty, empty, np.empty(0, dtype=np.float64), 0.0
    group, first = group_rows(sig)
    n_groups_sig = len(first)
    mass = np.zeros(n_groups_sig, dtype=np.float64)
    cand_freqs = np.empty(len(ids), dtype=np.float64)
    for i in range(len(ids)):
        cand_freqs[i] = freqs[ids[i]]
        mass[group[i]] += cand_freqs[i]
    compatible = group_compatibility(sig[first], groups, n_groups)
    total = pair_total(mass, compatible)
    if not total > 0.0:
        return empty, empty, np.empty(0, dtype=np.float64), 0.0
    members = np.argsort(group, kind="mergesort").astype(np.int32)
    group_start = np.zeros(n_groups_sig + 1, dtype=np.int64)
    for i in range(len(ids)):
        group_start[group[i] + 1] += 1
    for g in range(n_groups_sig):
        group_start[g + 1] += group_start[g]
    first_pos, second_pos, prior = enumerate_pairs(cand_freqs, members, group_start,
                                                   compatible, min_posterior * total)
    h1 = np.empty(len(prior), dtype=np.int32)
    h2 = np.empty(len(prior), dtype=np.int32)
    for i in range(len(prior)):
        h1[i] = ids[first_pos[i]]
        h2[i] = ids[second_pos[i]]
    return h1, h2, prior / total, total


@njit(cache=True, nogil=True)
def unphased(codes, h1, h2, posterior):  # type: ignore[no-untyped-def]
    """Haplotype pairs merged into unphased genotypes (per locus, lower code first):
    the distinct genotypes as rows of 2 * loci codes, and their summed posterior."""
    n_loci = codes.shape[1]
    rows = np.empty((len(h1), 2 * n_loci), dtype=np.int32)
    for i in range(len(h1)):
        for col in range(n_loci):
            x, y = codes[h1[i], col], codes[h2[i], col]
            rows[i, 2 * col] = min(x, y)
            rows[i, 2 * col + 1] = max(x, y)
    group, first = group_rows(rows)
    probs = np.zeros(len(first), dtype=np.float64)
    for i in range(len(h1)):
        probs[group[i]] += posterior[i]
    return rows[first], probs


@njit(cache=True, nogil=True)
def join_mismatches(p_index, p_prob, d_index, d_prob, tables, offsets, widths, n_counts):  # type: ignore[no-untyped-def]
    """Probability of each total mismatch count over a patient-donor genotype join.

    ``p_index[a, l]`` is patient genotype ``a``'s locus-genotype id at locus ``l`` (likewise the
    donor); the mismatch count of a locus pair is ``tables[offsets[l] + u * widths[l] + v]``.
    """
    out = np.zeros(n_counts, dtype=np.float64)
    n_loci = p_index.shape[1]
    for a in range(p_index.shape[0]):
        pa = p_prob[a]
        for b in range(d_index.shape[0]):
            k = 0
            for col in range(n_loci):
                k += tables[offsets[col] + p_index[a, col] * widths[col] + d_index[b, col]]
            out[k] += pa * d_prob[b]
    return out
