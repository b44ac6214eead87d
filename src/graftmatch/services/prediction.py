"""Match prediction from haplotype frequencies: frequency sets (check, write a synthetic one),
imputation of one typing, match probabilities of a pair."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graftmatch.matching.grader import Matcher
from graftmatch.prediction.frequencies import FrequencySet, read_frequency_set
from graftmatch.prediction.haplotypes import HaplotypeTable
from graftmatch.prediction.imputation import Imputation, Imputer
from graftmatch.prediction.match_probability import MatchPrediction, MatchPredictor
from graftmatch.prediction.settings import ImputationSettings, default_settings, load_settings
from graftmatch.prediction.synthetic import write_synthetic_set
from graftmatch.services.common import Notify, no_notice
from graftmatch.services.reference import open_reader
from graftmatch.typing.parser import TypingReader


@dataclass(frozen=True)
class Prepared:
    """What a prediction needs: the reader, the imputation settings, the checked set."""

    reader: TypingReader
    settings: ImputationSettings
    frequency_set: FrequencySet


def prepare(hf: Path, settings: Path | None = None, reader: TypingReader | None = None,
            notify: Notify = no_notice) -> Prepared:
    """Open the reader, a site's imputation settings (default: the built-in ones) and the
    frequency set ``hf``, checked; its notices (``frequency_set.notices``) are told to
    ``notify`` as soon as it is read."""
    reader = reader or open_reader()
    chosen = load_settings(settings) if settings else default_settings()
    freq_set = read_frequency_set(hf, reader)
    for notice in freq_set.notices:
        notify(notice)
    return Prepared(reader, chosen, freq_set)


def compile_population(freq_set: FrequencySet, spec: str | None, reader: TypingReader
                       ) -> tuple[HaplotypeTable, tuple[str, ...]]:
    """The set's population ``spec`` (e.g. CAU, or a mix CAU:0.7,AFA:0.3; default: the
    set's own choice) compiled, with the fallback steps taken to choose it."""
    population, steps = freq_set.choose(spec)
    return HaplotypeTable.compile(population, reader), steps


def imputer(prepared: Prepared, population: str | None) -> Imputer:
    table, steps = compile_population(prepared.frequency_set, population, prepared.reader)
    return Imputer(table, prepared.settings, population_steps=steps)


@dataclass(frozen=True)
class ImputationOutcome:
    imputation: Imputation
    notices: tuple[str, ...]

    def to_dict(self, limit: int | None = None) -> dict[str, Any]:
        """The JSON form, with the ``limit`` most likely genotypes (None: all)."""
        return self.imputation.to_dict(limit)


def impute(typing_text: str, hf: Path, population: str | None = None,
           settings: Path | None = None, notify: Notify = no_notice) -> ImputationOutcome:
    """The likely genotypes of a typing, with probabilities, and its status (ok,
    population-substituted, fallback, unrepresented) with the reasons."""
    prepared = prepare(hf, settings, notify=notify)
    result = imputer(prepared, population).impute(prepared.reader.parse(typing_text))
    return ImputationOutcome(result, tuple(prepared.frequency_set.notices))


@dataclass(frozen=True)
class PredictionOutcome:
    prediction: MatchPrediction
    notices: tuple[str, ...]

    def to_dict(self, limit: int | None = None) -> dict[str, Any]:
        """The JSON form: ``p_mismatches`` keys "0".."4" (up to 2 per locus), ``loci``."""
        doc = self.prediction.to_dict(limit)
        doc["loci"] = doc.pop("loci_probabilities")
        doc["counted_loci"] = list(self.prediction.loci)
        return doc


def predict(patient: str, donor: str, hf: Path, *, patient_population: str | None = None,
            donor_population: str | None = None, loci: Sequence[str] | None = None,
            settings: Path | None = None, notify: Notify = no_notice) -> PredictionOutcome:
    """Match probabilities for a patient and a donor: P(0..4 mismatches), per locus P(0/1/2),
    and the DPB1 permissive-TCE probability when the set has DPB1."""
    prepared = prepare(hf, settings, notify=notify)
    p_imputer = imputer(prepared, patient_population)
    d_imputer = p_imputer if donor_population == patient_population else \
        imputer(prepared, donor_population)
    reader = prepared.reader
    predictor = MatchPredictor(Matcher(reader.index), prepared.settings)
    result = predictor.predict(p_imputer.impute(reader.parse(patient)),
                               d_imputer.impute(reader.parse(donor)), loci)
    return PredictionOutcome(result, tuple(prepared.frequency_set.notices))


def frequency_set_info(path: Path) -> FrequencySet:
    """Read and check a frequency set (``frequency_set_dict`` is its JSON summary)."""
    return read_frequency_set(path, open_reader())


def frequency_set_dict(hf: FrequencySet) -> dict[str, Any]:
    return {
        "source": hf.source, "loci": list(hf.loci), "resolution": hf.resolution,
        "release": hf.release, "licence": hf.licence, "synthetic": hf.synthetic,
        "fallback": hf.fallback, "notices": list(hf.notices),
        "populations": {name: {"haplotypes": len(p.haplotypes), "sum": p.total}
                        for name, p in hf.populations.items()},
    }


def write_synthetic_frequencies(path: Path, loci: Sequence[str], haplotypes: int = 200_000,
                                seed: int = 0) -> dict[str, Any]:
    """Write a SYNTHETIC frequency set over real allele names (labelled synthetic); return
    its metadata (haplotypes, loci, release)."""
    reader = open_reader()
    Matcher(reader.index).check_loci(loci)
    return write_synthetic_set(path, reader.index, list(loci), haplotypes, seed=seed)
