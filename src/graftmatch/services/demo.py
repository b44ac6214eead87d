"""The end-to-end demo's data: real-world typings read and reduced, typings refused, example
matches graded, a prediction, and a search of a synthetic registry for a C1q-deficient child.
``graftmatch demo`` renders it; a demo page can too."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from graftmatch.errors import TypingError
from graftmatch.matching.grader import Matcher
from graftmatch.matching.result import MatchResult
from graftmatch.nomenclature.reduce import Level, Reducer
from graftmatch.nomenclature.release import home_dir
from graftmatch.prediction.frequencies import FrequencySet, read_frequency_set
from graftmatch.prediction.haplotypes import HaplotypeTable
from graftmatch.prediction.imputation import Imputation, Imputer
from graftmatch.prediction.match_probability import MatchPrediction, MatchPredictor
from graftmatch.search.engine import Criteria, Patient
from graftmatch.services.common import Notify, Progress, no_notice, no_progress
from graftmatch.services.registries import IndexRefresh, demo_registry
from graftmatch.services.search import SearchOutcome, run_search, searcher_for
from graftmatch.typing.model import Typing
from graftmatch.typing.parser import TypingReader

#: Real-world typings the demo reads: the forms labs and registries send.
DEMO_TYPINGS: tuple[tuple[str, str], ...] = (
    ("high resolution, 4 fields", "A*01:01:01:01+A*02:01:01:01^B*08:01:01:01+B*44:02:01:01"),
    ("registry allele lists (WMDA study style)",
     "A*01:01/A*01:02/A*01:03/A*01:16N+A*03:01/A*03:02^DRB1*03:01+DRB1*15:01"),
    ("shorthand allele list", "A*01:06/07+A*24:02"),
    ("XX code and first-field typing", "B*44:XX+B*08"),
    ("G and P groups", "C*07:01:01G+C*07:02P"),
    ("serology (broad and split)", "A9+A2^B12+B8^DR17+DR15"),
    ("DR51/52/53 and DPB1", "DRB3*01:01+DRB4*01:01^DPB1*04:01+DPB1*02:01"),
    ("renamed allele", "A*02:01:08+A*01:01"),
    ("pre-2010 name", "B*0801+B*15101"),
    ("null allele", "C*04:09N+C*07:01"),
)
DEMO_INVALID: tuple[str, ...] = ("A*01:999+A*02:01", "A*01:01+B*08:01", "A*01:AB", "A*01:04")

#: An example patient and donors for the matching part of the demo: made-up typings built from
#: real allele names, each donor showing one situation a coordinator meets.
DEMO_PATIENT = ("A*01:01+A*02:01^B*08:01+B*44:02^C*07:01+C*05:01^DRB1*03:01+DRB1*04:01"
                "^DQB1*02:01+DQB1*03:02^DPB1*04:01+DPB1*02:01")
DEMO_DONORS: tuple[tuple[str, str], ...] = (
    ("identical, permissive DPB1 mismatch",
     "A*01:01+A*02:01^B*08:01+B*44:02^C*07:01+C*05:01^DRB1*03:01+DRB1*04:01"
     "^DQB1*02:01+DQB1*03:02^DPB1*04:01+DPB1*01:01"),
    ("homozygous at C (GvH-only mismatch)",
     "A*01:01+A*02:01^B*08:01+B*44:02^C*07:01+C*07:01^DRB1*03:01+DRB1*04:01"
     "^DQB1*02:01+DQB1*03:02^DPB1*04:01+DPB1*03:01"),
    ("allele-level mismatch at A (A*02:05, still A2)",
     "A*01:01+A*02:05^B*08:01+B*44:02^C*07:01+C*05:01^DRB1*03:01+DRB1*04:01"
     "^DQB1*02:01+DQB1*03:02"),
    ("registry typing: XX codes, C and DQB1 untyped",
     "A*01:XX+A*02:XX^B*08:01+B*44:XX^DRB1*03:01/DRB1*03:02+DRB1*04:XX"),
)

#: The demo's patient: a made-up C1q-deficient child (typing built from real allele names).
DEMO_C1Q_PATIENT = Patient(
    typing="A*01:01+A*02:01^B*08:01+B*44:02^C*07:01+C*05:01^DRB1*03:01+DRB1*04:01"
           "^DQB1*02:01+DQB1*03:01",
    weight_kg=18.0, cmv="negative", abo="A", sex="M", age=6)

#: The levels each demo typing is shown at.
DEMO_LEVELS = (Level.LGX, Level.P, Level.SEROLOGY)


@dataclass(frozen=True)
class DemoTyping:
    label: str
    text: str
    typing: Typing
    reduced: dict[Level, str]


def demo_typings(reader: TypingReader) -> list[DemoTyping]:
    """The real-world typings read and reduced at :data:`DEMO_LEVELS`."""
    reducers = {level: Reducer(reader, level) for level in DEMO_LEVELS}
    shown = []
    for label, text in DEMO_TYPINGS:
        typing_ = reader.parse(text)
        shown.append(DemoTyping(label, text, typing_, {level: r.reduce_typing(typing_)
                                                       for level, r in reducers.items()}))
    return shown


def demo_refusals(reader: TypingReader) -> list[tuple[str, TypingError]]:
    """The typings refused, each with its error."""
    refused = []
    for text in DEMO_INVALID:
        try:
            reader.parse(text)
        except TypingError as exc:
            refused.append((text, exc))
    return refused


def demo_matches(reader: TypingReader) -> list[tuple[str, MatchResult]]:
    """The example donors graded against the example patient."""
    matcher = Matcher(reader.index)
    patient = reader.parse(DEMO_PATIENT)
    return [(label, matcher.match(patient, reader.parse(text))) for label, text in DEMO_DONORS]


@dataclass(frozen=True)
class DemoPrediction:
    path: Path
    frequency_set: FrequencySet
    population: str
    haplotypes: int
    steps: tuple[str, ...]
    donor_label: str
    donor_text: str
    donor: Imputation
    prediction: MatchPrediction


def demo_prediction(reader: TypingReader, hf: Path | None, population: str | None
                    ) -> DemoPrediction:
    """Match probabilities for the registry-typed demo donor, from ``hf`` (default: a
    SYNTHETIC set generated into the cache, labelled as such)."""
    from graftmatch.prediction.synthetic import write_synthetic_set

    if hf is None:
        hf = home_dir() / f"synthetic-demo-{reader.index.release}.json.gz"
        if not hf.exists():
            write_synthetic_set(hf, reader.index, ["A", "C", "B", "DRB1", "DQB1"], 20_000,
                                seed=1)
    freq_set = read_frequency_set(hf, reader)
    chosen, steps = freq_set.choose(population)
    imputer = Imputer(HaplotypeTable.compile(chosen, reader), population_steps=steps)
    predictor = MatchPredictor(Matcher(reader.index))
    patient = imputer.impute(reader.parse(DEMO_PATIENT))
    label, donor_text = DEMO_DONORS[-1]
    donor = imputer.impute(reader.parse(donor_text))
    return DemoPrediction(hf, freq_set, chosen.name, len(chosen.haplotypes), steps, label,
                          donor_text, donor, predictor.predict(patient, donor))


@dataclass(frozen=True)
class DemoSearch:
    index: IndexRefresh
    outcome: SearchOutcome


def demo_search(reader: TypingReader, hf: Path, population: str | None,
                donors: int = 100_000, cords: int = 5_000, *,
                progress: Progress = no_progress, notify: Notify = no_notice) -> DemoSearch:
    """Build (once, in the cache) the synthetic demo registry and search it for the demo
    patient, the first 10 candidates per kind shown."""
    reg, refreshed = demo_registry(reader, hf, population, donors, cords, progress=progress,
                                   notify=notify)
    session = searcher_for(reg, reader)
    return DemoSearch(refreshed, run_search(session, DEMO_C1Q_PATIENT, Criteria(), 10))
