"""All 11,000 typings of the WMDA matching-validation study (Bochtler et al., HLA 2016)."""

from __future__ import annotations

from collections import Counter

from tests.conftest import read_wmda


def test_every_wmda_patient_and_donor_typing_parses(reader):
    subjects = read_wmda("pat.gl.txt.gz") + read_wmda("don.gl.txt.gz")
    assert len(subjects) == 11_000
    loci: Counter[tuple[str, ...]] = Counter()
    for _, gl in subjects:
        typing_ = reader.parse(gl)
        assert typing_.notices == ()  # every name is current in 3.58.0
        loci[typing_.loci] += 1
    # Patients are typed at A, C, B, DRB1, DQB1; many donors lack C and DQB1.
    assert loci[("A", "C", "B", "DRB1", "DQB1")] >= 1000
    assert loci[("A", "B", "DRB1")] > 0
    assert set().union(*loci) == {"A", "B", "C", "DRB1", "DQB1"}
