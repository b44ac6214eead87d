"""Match prediction checked by simulation, as published validations do: subjects drawn from
the GRIM example CAU set, donors masked to registry resolution, predicted vs observed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.calibration import calibration_bins, simulate, weighted_city_block
from graftmatch.prediction.frequencies import read_frequency_set
from graftmatch.prediction.haplotypes import HaplotypeTable
from graftmatch.prediction.imputation import Imputer
from graftmatch.prediction.settings import default_settings
from tests.test_frequencies import CAU


@pytest.fixture(scope="module")
def cau_table(index):
    from graftmatch.typing.parser import TypingReader

    reader = TypingReader(index)
    population, _ = read_frequency_set(CAU, reader).select("CAU")
    return reader, HaplotypeTable.compile(population, reader)


def test_predicted_full_match_probabilities_are_calibrated(cau_table):
    reader, table = cau_table
    pairs = simulate(reader, table, n_patients=300, n_donors=20_000, seed=1)
    bins = calibration_bins(pairs)
    assert len(pairs) > 1000
    # Madbouly 2014 reports weighted city-block distances of a few percent for HapLogic;
    # the simulation draws from the model itself, so only sampling noise remains.
    assert weighted_city_block(bins) < 0.03
    for b in bins:
        if b.pairs >= 100:
            assert abs(b.mean_predicted - b.observed_rate) < 0.05, b
    expected = np.mean([p.expected_mismatches for p in pairs])
    observed = np.mean([p.true_mismatches for p in pairs])
    assert abs(expected - observed) < 0.05


LEVELS = st.sampled_from(["exact", "first-field", "untyped"])


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), masks=st.lists(LEVELS, min_size=5, max_size=5))
def test_the_true_genotype_is_never_lost(cau_table, seed, masks):
    """Whatever the masking, the genotype a subject really has is among the imputed ones, the
    posterior sums to 1 and is listed most likely first."""
    reader, table = cau_table
    rng = np.random.default_rng(seed)
    h1, h2 = rng.choice(len(table), size=2, p=table.freqs / table.freqs.sum())
    a, b = table.haplotype(h1).split("~"), table.haplotype(h2).split("~")
    parts = []
    for mask, x, y in zip(masks, a, b, strict=True):
        if mask == "exact":
            parts.append(f"{x}+{y}")
        elif mask == "first-field":
            parts.append(f"{x.split(':')[0]}:XX+{y.split(':')[0]}:XX")
    if len(parts) < 2:  # one locus or none: millions of explaining pairs, listed in full
        return
    # No cut: every explaining genotype is listed, so the truth must be among them.
    whole = dataclasses.replace(default_settings(), min_posterior=1e-300, max_genotypes=10**9)
    result = Imputer(table, whole).impute(reader.parse("^".join(parts)))
    assert result.status == "ok"
    g = result.genotypes
    truth = "^".join("+".join(sorted((x, y))) for x, y in zip(a, b, strict=True))
    listed = {"^".join("+".join(sorted(t.split("+"))) for t in g.genotype(i).split("^"))
              for i in range(len(g))}
    assert truth in listed
    assert float(g.probabilities.sum()) == pytest.approx(1.0)
    assert np.all(np.diff(g.probabilities) <= 1e-12)  # ties (to 12 digits) in code order
