"""Simulation check of match prediction: are predicted match probabilities calibrated?

As the published validations do (Madbouly 2014 [24]; Bochtler 2016 [13]): draw subjects from a
frequency set under Hardy-Weinberg, so their true genotypes are known; mask the donors' typings
to registry resolution (first field only, ``A*01:XX``, at A, B, DRB1; C and DQB1 untyped);
keep the patient-donor pairs a search would list (donor antigens compatible with the patient at
A, B, DRB1, a choice made on the masked typing alone, so it does not bias the posterior);
predict, then compare the predicted P(10/10) with the observed rate of true 10/10 matches,
binned. Patients are typed exactly (2-field, as at a transplant centre).

Run: ``python benchmarks/calibration.py [--patients N] [--donors N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CAU = (REPO.parent / "shared" / "data" / "haplotype-frequencies"
       / "nmdp-py-graph-imputation-example" / "CAU.freqs.gz")
MASKED = ("A", "B", "DRB1")  # typed at first-field resolution; the others untyped
BIN_EDGES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0 + 1e-9)


@dataclass(frozen=True)
class Pair:
    predicted: float  # P(0 mismatches over the set's loci)
    observed: bool  # the true genotypes match at every locus
    expected_mismatches: float
    true_mismatches: int


def _genotype(table, h1: int, h2: int) -> str:  # type: ignore[no-untyped-def]
    a, b = table.haplotype(h1).split("~"), table.haplotype(h2).split("~")
    return "^".join(f"{x}+{y}" for x, y in zip(a, b, strict=True))


def _masked(table, h1: int, h2: int) -> str:  # type: ignore[no-untyped-def]
    a, b = table.haplotype(h1).split("~"), table.haplotype(h2).split("~")
    return "^".join(f"{x.split(':')[0]}:XX+{y.split(':')[0]}:XX"
                    for locus, x, y in zip(table.loci, a, b, strict=True) if locus in MASKED)


def _antigens(table, h1: int, h2: int) -> tuple[tuple[str, ...], ...]:  # type: ignore[no-untyped-def]
    a, b = table.haplotype(h1).split("~"), table.haplotype(h2).split("~")
    return tuple(tuple(sorted((x.split(":")[0], y.split(":")[0])))
                 for locus, x, y in zip(table.loci, a, b, strict=True) if locus in MASKED)


def simulate(reader, table, n_patients: int, n_donors: int, seed: int = 0  # type: ignore[no-untyped-def]
             ) -> list[Pair]:
    """Simulated patient-donor pairs with predicted and true outcomes."""
    from graftmatch.matching.grader import Matcher
    from graftmatch.prediction.imputation import Imputer
    from graftmatch.prediction.match_probability import MatchPredictor

    rng = np.random.default_rng(seed)
    p = table.freqs / table.freqs.sum()
    patients = rng.choice(len(table), size=(n_patients, 2), p=p)
    donors = rng.choice(len(table), size=(n_donors, 2), p=p)
    by_antigens: dict[tuple[tuple[str, ...], ...], list[int]] = {}
    for d, (h1, h2) in enumerate(donors):
        by_antigens.setdefault(_antigens(table, h1, h2), []).append(d)
    imputer, matcher = Imputer(table), Matcher(reader.index)
    predictor = MatchPredictor(matcher)
    donor_cache: dict[int, object] = {}
    out = []
    for h1, h2 in patients:
        patient_typing = reader.parse(_genotype(table, h1, h2))
        patient = imputer.impute(patient_typing)
        for d in by_antigens.get(_antigens(table, h1, h2), []):
            if d not in donor_cache:
                donor_cache[d] = imputer.impute(reader.parse(_masked(table, *donors[d])))
            result = predictor.predict(patient, donor_cache[d])  # type: ignore[arg-type]
            truth = matcher.match(patient_typing, reader.parse(_genotype(table, *donors[d])),
                                  table.loci)
            expected = sum(k * q for k, q in enumerate(result.p_mismatches))
            out.append(Pair(result.p_mismatches[0], truth.total_mismatches == 0, expected,
                            truth.total_mismatches))
    return out


@dataclass(frozen=True)
class Bin:
    low: float
    high: float
    pairs: int
    mean_predicted: float
    observed_rate: float


def calibration_bins(pairs: list[Pair]) -> list[Bin]:
    predicted = np.array([x.predicted for x in pairs])
    observed = np.array([x.observed for x in pairs], dtype=float)
    bins = []
    for low, high in itertools.pairwise(BIN_EDGES):
        inside = (predicted >= low) & (predicted < high)
        if inside.any():
            bins.append(Bin(low, min(high, 1.0), int(inside.sum()),
                            float(predicted[inside].mean()), float(observed[inside].mean())))
    return bins


def weighted_city_block(bins: list[Bin]) -> float:
    """Mean |predicted - observed| over bins, weighted by pairs (Madbouly 2014 [24])."""
    total = sum(b.pairs for b in bins)
    return sum(b.pairs * abs(b.mean_predicted - b.observed_rate) for b in bins) / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--donors", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("GRAFTMATCH_IMGT_DIR",
                          str(REPO.parent / "shared" / "data" / "imgt-hla" / "3.58.0"))
    sys.path.insert(0, str(REPO / "src"))
    from graftmatch.nomenclature.release import load_index
    from graftmatch.prediction.frequencies import read_frequency_set
    from graftmatch.prediction.haplotypes import HaplotypeTable
    from graftmatch.typing.parser import TypingReader

    reader = TypingReader(load_index())
    population, _ = read_frequency_set(CAU, reader).select("CAU")
    table = HaplotypeTable.compile(population, reader)
    pairs = simulate(reader, table, args.patients, args.donors, args.seed)
    bins = calibration_bins(pairs)
    print(f"CAU example set; {args.patients} exact patients, {args.donors} donors typed "
          f"{'/'.join(MASKED)} at first field; {len(pairs)} antigen-compatible pairs")
    print(f"{'predicted P(10/10)':>20} {'pairs':>7} {'mean predicted':>15} {'observed':>9}")
    for b in bins:
        print(f"{b.low:>9.1f} - {b.high:<8.1f} {b.pairs:>7} {b.mean_predicted:>15.3f} "
              f"{b.observed_rate:>9.3f}")
    expected = np.mean([x.expected_mismatches for x in pairs])
    true = np.mean([x.true_mismatches for x in pairs])
    print(f"weighted city-block distance: {weighted_city_block(bins):.4f}")
    print(f"mean mismatches: predicted {expected:.4f}, observed {true:.4f}")


if __name__ == "__main__":
    main()
