"""The batch engine gives exactly the pair grader's answers, pair by pair and field by field."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import read_wmda

from graftmatch.matching import kernels
from graftmatch.matching.batch import TOTALS, UNTYPED, BatchMatcher, MismatchSummary
from graftmatch.matching.grader import Matcher

#: Typings exercising every path: nulls, serology, XX, MAC-free lists, DPB1, untyped loci,
#: single copies, alternative genotypes (graded by the pair grader inside the batch), a
#: permissive C mismatch.
CURATED = [
    "A*01:01+A*02:01^B*08:01+B*44:02^C*07:01+C*05:01^DRB1*03:01+DRB1*04:01"
    "^DQB1*02:01+DQB1*03:02^DPB1*04:01+DPB1*02:01",
    "A*01:01+A*24:09N^B*08:01+B*08:01^DRB1*03:01+DRB1*15:01^DPB1*04:01+DPB1*61:01N",
    "A*01:01/A*01:16N+A*02:XX^B*44:XX+B*08:01^C*07:01^DRB1*03:01+DRB1*04:01",
    "A2+A9^B8+B44^DR17+DR4",
    "A*02:01+A*24:02^B*44:02+B*08:01^DRB1*03:01+DRB1*04:01^DQB1*02:01+DQB1*03:02"
    "^DPB1*09:01+DPB1*03:01/DPB1*05:01",
    "A*01:01+A*02:01|A*01:01+A*03:01^B*08:01+B*44:02^DRB1*03:01+DRB1*04:01",
    "A*01:01~B*08:01+A*02:01~B*44:02|A*01:01~B*44:02+A*02:01~B*08:01^DRB1*03:01",
    "A*02:05+A*01:01:01:01^B*07:02+B*08:01^C*07:01+C*07:02^DRB1*03:01+DRB1*03:01"
    "^DQB1*02:01^DPB1*06:01+DPB1*02:01",
    "A*24:09N+A*01:15N^B*08:01",
    "A*01:01+A*02:01^C*03:03+C*07:01^DQB1*03:01+DQB1*06:02",  # C*03:03 vs C*03:04: permissive
    "A*01:01+A*02:01^C*03:04+C*03:04^DQB1*03:02+DQB1*06:02",
]
LOCI = ["A", "B", "C", "DRB1", "DQB1", "DPB1"]


def _expected(result):
    loci = []
    for r in result.loci:
        if not r.typed:
            loci.append((UNTYPED,) * 9)
        else:
            loci.append((r.mismatches, r.gvh_mismatches, r.hvg_mismatches, r.antigen_mismatches,
                         r.allele_mismatches, r.unknown_mismatches, r.potential_matches,
                         int(r.confidence), r.permissive_mismatches))
    dpb1 = next((r for r in result.loci if r.locus == "DPB1" and r.typed), None)
    tce = kernels.TCE_VERDICTS.index(dpb1.tce.verdict) if dpb1 else UNTYPED
    untyped = sum(1 << i for i, r in enumerate(result.loci) if not r.typed)
    totals = (result.total_mismatches, sum(r.typed for r in result.loci), result.gvh_mismatches,
              result.hvg_mismatches, result.antigen_mismatches,
              sum(r.potential_matches or 0 for r in result.loci), untyped,
              int(result.confidence), kernels.CATEGORIES.index(result.category))
    return loci, tce, totals


def _compare(batch, matcher, patients, donors, p_rows, d_rows, loci):
    p, d = batch.encode(patients), batch.encode(donors)
    block = batch.grade(p, d, p_rows, d_rows)
    for k in range(len(p_rows)):
        result = matcher.match(patients[p_rows[k]][1], donors[d_rows[k]][1], loci)
        loci_exp, tce_exp, totals_exp = _expected(result)
        got = [tuple(int(v) for v in row) for row in block.loci[k]]
        assert got == loci_exp, (patients[p_rows[k]][0], donors[d_rows[k]][0])
        assert int(block.tce[k]) == tce_exp
        assert tuple(int(v) for v in block.totals[k]) == totals_exp, dict(
            zip(TOTALS, block.totals[k], strict=True))


def _all_pairs(index, reader, typings: list[str], loci: list[str]) -> None:
    """Every typing against every typing, both engines."""
    matcher = Matcher(index)
    rows = [(f"T{i}", reader.parse(gl)) for i, gl in enumerate(typings)]
    n = len(rows)
    p_rows = np.repeat(np.arange(n), n).astype(np.int64)
    d_rows = np.tile(np.arange(n), n).astype(np.int64)
    _compare(BatchMatcher(matcher, loci), matcher, rows, rows, p_rows, d_rows, loci)


def test_curated_typings_all_pairs(index, reader):
    _all_pairs(index, reader, CURATED, LOCI)


def test_wmda_sample_matches_the_pair_grader(index, reader):
    matcher = Matcher(index)
    loci = ["A", "C", "B", "DRB1", "DQB1"]
    batch = BatchMatcher(matcher, loci)
    patients = [(i, reader.parse(gl)) for i, gl in read_wmda("pat.gl.txt.gz")[:200]]
    donors = [(i, reader.parse(gl)) for i, gl in read_wmda("don.gl.txt.gz")[:1000]]
    rng = np.random.default_rng(7)
    p_rows = rng.integers(0, len(patients), 2000).astype(np.int64)
    d_rows = rng.integers(0, len(donors), 2000).astype(np.int64)
    _compare(batch, matcher, patients, donors, p_rows, d_rows, loci)


def test_mismatch_summary_counts_by_hand(index, reader):
    batch = BatchMatcher(Matcher(index), ["A", "B", "DRB1"])
    patient = [("P1", reader.parse("A*01:01+A*02:01^B*08:01+B*44:02^DRB1*03:01+DRB1*04:01"))]
    donors = [
        ("D0", reader.parse("A*01:01+A*02:01^B*08:01+B*44:02^DRB1*03:01+DRB1*04:01")),  # 0
        ("D1", reader.parse("A*01:01+A*02:XX^B*08:01+B*44:02^DRB1*03:01+DRB1*04:01")),  # 0 pot.
        ("D2", reader.parse("A*01:01+A*03:01^B*08:01+B*07:02^DRB1*03:01+DRB1*04:01")),  # 2
        ("D3", reader.parse("A*01:01+A*03:01^B*08:01+B*07:02")),  # DRB1 untyped: left out
    ]
    p, d = batch.encode(patient), batch.encode(donors)
    summary = MismatchSummary(["A", "B", "DRB1"], batch.loci)
    summary.add(batch.grade(p, d, np.zeros(4, dtype=np.int64), np.arange(4, dtype=np.int64)))
    rows = {row["mismatches"]: (row["certain"], row["potential"]) for row in summary.rows()}
    assert rows[0] == (1, 1) and rows[2] == (1, 0) and rows[1] == (0, 0)
    assert summary.untyped == 1
    with pytest.raises(ValueError, match="DPB1"):
        MismatchSummary(["DPB1"], batch.loci)


#: DRB3/4/5 present, typed with one copy, absent by DRB1, untyped, and alternatives.
DR_CURATED = [
    "DRB1*04:01+DRB1*03:01^DRB4*01:01",
    "DRB1*03:01+DRB1*15:01^DRB5*01:01",
    "DRB1*01:01+DRB1*08:01",
    "DRB1*03:01+DRB1*01:01^DRB3*01:01",
    "DRB1*04:01+DRB1*07:01^DRB4*01:01+DRB4*01:03:01:02N",
    "DRB1*03:01/DRB1*04:01+DRB1*01:01",
    "DRB1*03:01+DRB1*04:01^DRB3*01:01+DRB4*01:01|DRB3*01:01+DRB3*02:02",
    "DRB1*01:01+DRB1*04:01|DRB1*01:01+DRB1*15:01",
    "DRB1*03:01~DRB3*02:02+DRB1*15:01~DRB5*01:01",
    "DR17+DR1",
    "DRB3*02:02+DRB5*01:01",
    "A*01:01+A*02:01",
]


@pytest.mark.parametrize("loci", [["DRB1", "DRB3", "DRB4", "DRB5"], ["DRB4", "DRB5", "DRB3"]])
def test_drb345_presence_and_absence_agree_with_the_pair_grader(index, reader, loci):
    _all_pairs(index, reader, DR_CURATED, loci)


def test_absent_states_round_trip_through_their_keys(index, reader):
    """A registry index stores states by key and a search rebuilds them (restore): an absent
    copy, typed or read from DRB1, must come back as the same absent copy."""
    loci = ["DRB1", "DRB3", "DRB4", "DRB5"]
    batch = BatchMatcher(Matcher(index), loci)
    cohort = batch.encode([(f"T{i}", reader.parse(gl)) for i, gl in enumerate(DR_CURATED)])
    keys = json.loads(json.dumps(batch.state_keys()))
    restored = BatchMatcher.restore(Matcher(index), loci, keys, reader)
    assert restored.state_keys() == keys
    texts = {text for locus in keys for key in locus for text in key}
    assert {"DRB4 absent", "DRB4 absent (by DRB1)", "DRB5 absent (by DRB1)"} <= texts
    for li in range(len(loci)):
        for state in range(len(keys[li])):
            assert restored.slot(li, state) == batch.slot(li, state)
    every = np.arange(len(cohort), dtype=np.int64)
    p_rows, d_rows = np.repeat(every, len(cohort)), np.tile(every, len(cohort))
    a = batch.grade(cohort, cohort, p_rows, d_rows)
    b = restored.grade(cohort, cohort, p_rows, d_rows)
    assert (a.loci == b.loci).all() and (a.totals == b.totals).all()
