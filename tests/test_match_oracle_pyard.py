"""Oracle: per-locus P-group mismatch counts of WMDA study pairs agree with a matcher built on
py-ard 2.4.2 (the peer of benchmarks/bench_match.py: py-ard's own P reduction of each allele
list, two orientations). The two share no code: py-ard reads the release with its own
parser, so an agreement checks graftmatch's reading of allele lists, P groups and pairing."""

from __future__ import annotations

import numpy as np
import pytest

from graftmatch.matching.batch import MM, UNTYPED, BatchMatcher
from graftmatch.matching.grader import Matcher
from tests.conftest import IMGT_DIR, read_wmda

pytest.importorskip("pyard")


def test_wmda_mismatch_counts_agree_with_pyard(index, reader, request):
    from benchmarks.bench_match import LOCI, PyardPeer
    from benchmarks.peers.pyard_offline import open_pyard

    peer = PyardPeer(open_pyard(IMGT_DIR, request.config.cache.mkdir("pyard-offline-match")))
    patients = read_wmda("pat.gl.txt.gz")[:60]
    donors = read_wmda("don.gl.txt.gz")[:1500]
    batch = BatchMatcher(Matcher(index), LOCI)
    p = batch.encode([(i, reader.parse(gl)) for i, gl in patients])
    d = batch.encode([(i, reader.parse(gl)) for i, gl in donors])
    p_rows = np.repeat(np.arange(len(patients)), len(donors)).astype(np.int64)
    d_rows = np.tile(np.arange(len(donors)), len(patients)).astype(np.int64)
    ours = batch.grade(p, d, p_rows, d_rows).loci[:, :, MM]
    p_peer = [peer.encode(gl) for _, gl in patients]
    d_peer = [peer.encode(gl) for _, gl in donors]
    disagreements = []
    for k, (i, j) in enumerate(zip(p_rows, d_rows, strict=True)):
        theirs = [UNTYPED if v is None else v for v in peer.grade(p_peer[i], d_peer[j])]
        if list(ours[k]) != theirs:
            disagreements.append((patients[i][0], donors[j][0], list(ours[k]), theirs))
    assert len(p_rows) == 90_000
    assert disagreements == []
