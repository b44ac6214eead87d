"""The patient record (SYNTHETIC data only): refused field by field with the field's path and
a plain reason, a C1q-deficient child's record round-trip through the store, several typings
over time with the current one chosen explicitly, centre scope."""

from __future__ import annotations

import copy
import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graftmatch.database import Database, upgrade
from graftmatch.pathway.patients import (
    Diagnosis,
    PatientError,
    PatientInput,
    PatientNotFound,
    Variant,
    clinical_lists,
    validate,
)
from graftmatch.services import patients as service

TODAY = dt.date(2026, 5, 1)
TYPING_1 = "A*01:01+A*02:01^B*08:01+B*44:02^C*07:01+C*05:01^DRB1*03:01+DRB1*04:01"
TYPING_2 = ("A*01:01:01+A*02:01:01^B*08:01:01+B*44:02:01^C*07:01:01+C*05:01:01"
            "^DRB1*03:01:01+DRB1*04:01:01^DQB1*02:01:01+DQB1*03:02:01")

#: SYNTHETIC: a made-up C1q-deficient child, shaped like the EBMT cohort's records (Buso 2024,
#: SOURCES.md [68]: C1QA most often, homozygous); no real person's data.
CHILD = {
    "id": "SYN-C1Q-0001", "centre": "SYN-CENTRE", "sex": "F", "birth_date": "2017-09-14",
    "weight_kg": 24.5, "abo": "O", "rh": "+", "cmv": "negative", "population": "CAU",
    "synthetic": True,
    "diagnosis": {
        "disease": "c1q-deficiency", "iuis_category": "complement", "gene": "C1QA",
        "variants": [{"hgvs": "NM_015991.4:c.622C>T", "zygosity": "homozygous"},
                     {"hgvs": "p.(Gln208Ter)", "zygosity": "homozygous"}],
        "lab_results": [
            {"test": "c1q-antigen", "value": 1, "comparator": "<", "unit": "mg/dL",
             "reference_range": {"low": 12, "high": 22}, "date": "2021-02-03",
             "laboratory": "SYN immunology lab"},
            {"test": "ch50", "value": 0, "unit": "U/mL",
             "reference_range": {"low": 30, "high": 75}, "date": "2021-02-03"},
        ],
    },
    "typings": [{"gl": TYPING_1, "laboratory": "SYN HLA lab", "date": "2021-03-01",
                 "method": "SSO", "resolution": "intermediate"}],
    "current_typing": 1,
}


def _record(**changes):
    record = copy.deepcopy(CHILD)
    record.update(changes)
    return record


def _problems(data, reader, model=PatientInput):
    with pytest.raises(PatientError) as caught:
        validate(model, data, reader=reader, today=TODAY)
    return caught.value.problems


@pytest.fixture
def db(database_url):
    upgrade(database_url)
    database = Database(database_url)
    service.add_centre(database, "SYN-CENTRE", "SYNTHETIC centre")
    service.add_centre(database, "SYN-OTHER", "Another SYNTHETIC centre")
    yield database
    database.close()


def test_the_synthetic_child_is_a_valid_record(reader):
    record = validate(PatientInput, CHILD, reader=reader, today=TODAY)
    assert record.diagnosis.disease_name == "C1q deficiency"
    assert [r.within_range for r in record.diagnosis.lab_results] == [False, False]


def test_bad_fields_are_refused_one_by_one_with_their_path(reader):
    bad = _record(sex="X", birth_date="2030-01-01", weight_kg=2400, abo="C", cmv="maybe",
                  id="Jane Doe", nickname="x")
    bad["diagnosis"]["variants"][0]["hgvs"] = "c622C>T"
    bad["diagnosis"]["lab_results"][0]["reference_range"] = {"low": 22, "high": 12}
    bad["typings"][0].update(gl="A*01:999+A*02:01", date="2021-13-01", method="PCR")
    assert _problems(bad, reader) == [
        ("id", "'Jane Doe' is not a pseudonymous id (letters, digits, '.', '_', '-'; at most "
               "64)"),
        ("sex", "'X' is not one of 'F', 'M' or 'U'"),
        ("birth_date", "2030-01-01 is in the future"),
        ("weight_kg", "2400 kg is outside the plausible 0.3 to 300 kg "
                      "(graftmatch/pathway/clinical.toml)"),
        ("abo", "'C' is not one of 'A', 'B', 'AB' or 'O'"),
        ("cmv", "'maybe' is not one of 'positive', 'negative' or 'unknown'"),
        ("diagnosis.variants[0].hgvs", "'c622C>T' is not a variant in HGVS form, e.g. c.622C>T, "
                                       "NM_015991.4:c.622C>T or p.Gln208Ter"),
        ("diagnosis.lab_results[0].reference_range.high", "12 is not above low (22)"),
        ("typings[0].gl", "unknown allele in IPD-IMGT/HLA 3.58.0: 'A*01:999' at position 1"),
        ("typings[0].date", "'2021-13-01' is not a date (write YYYY-MM-DD)"),
        ("typings[0].method", "'PCR' is not a typing method; known: 'NGS', 'SBT', 'SSO', "
                              "'SSP', 'serology', 'other' (graftmatch/pathway/clinical.toml)"),
        ("nickname", "is not a field of this record"),
    ]


def test_the_diagnosis_is_checked_against_the_clinical_lists(reader):
    def diagnosis(**changes):
        return _problems(_record(diagnosis={**CHILD["diagnosis"], **changes}), reader)

    assert diagnosis(gene="C1QZ") == [
        ("diagnosis.gene", "'C1QZ' is not a gene of C1q deficiency; known: C1QA, C1QB, C1QC "
                           "(graftmatch/pathway/clinical.toml)")]
    assert diagnosis(iuis_category="antibody") == [
        ("diagnosis.iuis_category", "'antibody' is not the category of C1q deficiency "
                                    "('complement', graftmatch/pathway/clinical.toml)")]
    assert diagnosis(iuis_category="complements")[0][0] == "diagnosis.iuis_category"
    assert diagnosis(disease="lupus")[0] == (
        "diagnosis.disease", "'lupus' is not a disease graftmatch knows (or 'other-iei'); "
                             "known: 'c1q-deficiency', 'other-iei' "
                             "(graftmatch/pathway/clinical.toml)")
    assert diagnosis(gene=None) == [("diagnosis.gene", "is required when variants are given")]
    assert diagnosis(disease="other-iei", iuis_category="combined", gene=None, variants=[],
                     lab_results=[]) == [
        ("diagnosis.name", "is required for 'other-iei': name the disease")]
    unit = copy.deepcopy(CHILD["diagnosis"]["lab_results"])
    unit[0]["unit"] = "g/L"
    assert diagnosis(lab_results=unit) == [
        ("diagnosis.lab_results[0].unit", "'g/L' is not a unit of C1q antigen; known: 'mg/dL', "
                                          "'mg/L' (graftmatch/pathway/clinical.toml)")]
    unit[0].update(unit="mg/dL", value=5000)
    assert diagnosis(lab_results=unit) == [
        ("diagnosis.lab_results[0].value", "5000 mg/dL is above the plausible 220 mg/dL for "
                                           "C1q antigen (graftmatch/pathway/clinical.toml)")]
    unit[0].update(value=True)
    assert diagnosis(lab_results=unit) == [
        ("diagnosis.lab_results[0].value", "True is not a number")]


def test_dates_lie_between_birth_and_today(reader):
    early = _record()
    early["typings"][0]["date"] = "2016-01-01"
    early["diagnosis"]["lab_results"][1]["date"] = "2027-01-01"
    assert _problems(early, reader) == [
        ("diagnosis.lab_results[1].date", "2027-01-01 is in the future")]
    early["diagnosis"]["lab_results"][1]["date"] = "2021-02-03"
    assert _problems(early, reader) == [
        ("typings[0].date", "2016-01-01 is before the birth date (2017-09-14)")]
    assert _problems(_record(current_typing=2), reader) == [
        ("current_typing", "2 names no typing (the record has 1)")]
    assert _problems(_record(birth_date="1900-01-01"), reader) == [
        ("birth_date", "1900-01-01 makes the patient older than the plausible 100 years "
                       "(graftmatch/pathway/clinical.toml)")]
    assert _problems(_record(birth_date=20170914), reader) == [
        ("birth_date", "20170914 is not a date (write YYYY-MM-DD)")]


@pytest.mark.parametrize("hgvs", ["c.622C>T", "NM_015991.4:c.622C>T", "NM_015991.4(C1QA):c.622C>T",
                                  "p.Gln208Ter", "p.(Gln208*)", "p.G34R", "c.100_102del",
                                  "c.88+1G>A", "c.-14A>G", "c.*25del", "p.Arg41ProfsTer12",
                                  "c.100dupA", "c.5_6insAT", "c.5_7delinsTT", "g.123A>G", "p.?",
                                  "p.0"])
def test_hgvs_shapes_accepted(hgvs):
    assert validate(Variant, {"hgvs": hgvs}).hgvs == hgvs


@pytest.mark.parametrize("hgvs", ["c622C>T", "Gln208Ter", "c.622C>", "c.622C>TT", "p.Glx3Ter",
                                  "x.622C>T", "c.622c>t", "C1QA c.622C>T", ""])
def test_hgvs_shapes_refused(hgvs):
    with pytest.raises(PatientError) as caught:
        validate(Variant, {"hgvs": hgvs})
    assert caught.value.problems[0][0] == "hgvs"


_FIELDS = st.fixed_dictionaries({}, optional={
    "sex": st.sampled_from(["F", "M", "U", "X", "", 1]),
    "weight_kg": st.one_of(st.floats(allow_nan=True), st.integers(-5, 500), st.text(max_size=3)),
    "birth_date": st.one_of(st.dates(dt.date(1900, 1, 1), dt.date(2030, 1, 1)).map(str),
                            st.text(max_size=10)),
    "abo": st.sampled_from(["A", "B", "AB", "O", "0", "C", None]),
    "cmv": st.sampled_from(["positive", "neg", "x", None]),
    "id": st.text(max_size=70),
})


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_FIELDS)
def test_the_validator_accepts_or_names_each_field_refused(reader, changes):
    """Whatever is given, the record is either valid with every given field within the
    lists, or refused with problems each naming a field given, or (a check across fields) a
    date the given birth date now comes after (never an exception of another kind)."""
    data = _record(**changes)
    try:
        record = validate(PatientInput, data, reader=reader, today=TODAY)
    except PatientError as exc:
        assert exc.problems
        for path, reason in exc.problems:
            named = path.split(".")[0].split("[")[0] in changes
            before_birth = "birth_date" in changes and "is before the birth date" in reason
            assert (named or before_birth) and reason, (path, reason)
        return
    lists = clinical_lists()
    assert record.birth_date <= TODAY
    assert record.weight_kg is None or lists.weight_min_kg <= record.weight_kg <= (
        lists.weight_max_kg)


def test_the_childs_record_round_trips_through_the_store(db, reader):
    created = service.create_patient(db, CHILD, reader)
    again = service.get_patient(db, "SYN-C1Q-0001")
    assert again == created
    assert again.model_dump(mode="json", include={"id", "centre", "sex", "birth_date",
                                                   "weight_kg", "abo", "rh", "cmv",
                                                   "population", "synthetic"}) == {
        k: CHILD[k] for k in ("id", "centre", "sex", "birth_date", "weight_kg", "abo", "rh",
                              "cmv", "population", "synthetic")}
    assert again.diagnosis == Diagnosis.model_validate(CHILD["diagnosis"])
    assert again.current is not None and again.current.gl == TYPING_1
    assert (again.current.release, again.current.number, again.version) == ("3.58.0", 1, 1)


def test_several_typings_over_time_and_the_current_one_is_chosen_explicitly(db, reader):
    service.create_patient(db, _record(current_typing=None), reader)
    assert service.get_patient(db, "SYN-C1Q-0001").current is None
    later = {"gl": TYPING_2, "laboratory": "SYN HLA lab", "date": "2023-06-01",
             "method": "NGS", "resolution": "allele"}
    patient = service.add_typing(db, "SYN-C1Q-0001", later, reader)
    assert [t.number for t in patient.typings] == [1, 2] and patient.current is None
    patient = service.choose_current_typing(db, "SYN-C1Q-0001", 2)
    assert patient.current is not None and patient.current.gl == TYPING_2
    patient = service.add_typing(db, "SYN-C1Q-0001", {**later, "date": "2024-01-01"},
                                 reader, current=True)
    assert patient.current_typing == 3
    patient = service.choose_current_typing(db, "SYN-C1Q-0001", 1)
    assert patient.current_typing == 1 and patient.version == 5
    with pytest.raises(PatientError, match=r"current_typing: 9 names no typing of patient "
                                           r"'SYN-C1Q-0001' \(it has 3\)"):
        service.choose_current_typing(db, "SYN-C1Q-0001", 9)
    with pytest.raises(PatientError, match=r"^date: 2010-01-01 is before the birth date"):
        service.add_typing(db, "SYN-C1Q-0001", {**later, "date": "2010-01-01"}, reader)
    with pytest.raises(PatientError, match=r"^gl: unknown allele"):
        service.add_typing(db, "SYN-C1Q-0001", {**later, "gl": "A*01:999"}, reader)
    assert len(service.get_patient(db, "SYN-C1Q-0001").typings) == 3


def test_a_patient_of_another_centre_is_not_found(db, reader):
    service.create_patient(db, CHILD, reader)
    assert [p.id for p in service.list_patients(db, centre="SYN-CENTRE")] == ["SYN-C1Q-0001"]
    assert service.list_patients(db, centre="SYN-OTHER") == []
    for call in (lambda: service.get_patient(db, "SYN-C1Q-0001", centre="SYN-OTHER"),
                 lambda: service.update_patient(db, "SYN-C1Q-0001", {"weight_kg": 30},
                                                centre="SYN-OTHER"),
                 lambda: service.choose_current_typing(db, "SYN-C1Q-0001", 1,
                                                       centre="SYN-OTHER")):
        with pytest.raises(PatientNotFound, match=r"^no patient 'SYN-C1Q-0001' in centre "
                                                  r"'SYN-OTHER'$"):
            call()
    # The same pseudonym in another centre is another patient.
    service.create_patient(db, _record(centre="SYN-OTHER", sex="M"), reader)
    with pytest.raises(PatientError, match="is in several centres"):
        service.get_patient(db, "SYN-C1Q-0001")
    assert service.get_patient(db, "SYN-C1Q-0001", centre="SYN-OTHER").sex.value == "M"
    with pytest.raises(PatientError, match=r"^id: 'SYN-C1Q-0001' exists already in centre"):
        service.create_patient(db, CHILD, reader)
    with pytest.raises(PatientError, match=r"^centre: 'NOWHERE' is not a centre"):
        service.create_patient(db, _record(centre="NOWHERE"), reader)


def test_updates_check_the_whole_record_and_keep_the_id(db, reader):
    service.create_patient(db, CHILD, reader)
    patient = service.update_patient(db, "SYN-C1Q-0001", {"weight_kg": 26.0, "cmv": "pos"})
    assert (patient.weight_kg, patient.cmv.value, patient.version) == (26.0, "positive", 2)
    with pytest.raises(PatientError) as caught:
        service.update_patient(db, "SYN-C1Q-0001", {"id": "X", "centre": "SYN-OTHER"})
    assert caught.value.problems == [("centre", "cannot be changed by an update"),
                                     ("id", "cannot be changed by an update")]
    with pytest.raises(PatientError, match=r"^typings\[0\]\.date: 2021-03-01 is before the "
                                           r"birth date \(2022-01-01\)"):
        service.update_patient(db, "SYN-C1Q-0001", {"birth_date": "2022-01-01",
                                                    "diagnosis": {**CHILD["diagnosis"],
                                                                  "lab_results": []}})
    with pytest.raises(PatientError, match=r"^version: the record is at version 2, not 1"):
        service.update_patient(db, "SYN-C1Q-0001", {"weight_kg": 27.0}, version=1)
    assert service.get_patient(db, "SYN-C1Q-0001").weight_kg == 26.0


def test_times_come_back_in_utc(db, reader):
    """graftmatch writes UTC and reads UTC back, whatever the database session's time zone
    (the PostgreSQL variant runs in Asia/Kathmandu, UTC+05:45)."""
    service.create_patient(db, CHILD, reader)
    stored = service.get_patient(db, CHILD["id"])
    for when in (stored.created_at, stored.updated_at, stored.typings[0].entered_at,
                 *(c.created_at for c in service.list_centres(db))):
        assert when.utcoffset() == dt.timedelta(0)


def test_concurrent_writers_to_one_patient_queue(db, reader):
    """Typings added at the same time by several writers are all kept, numbered one after
    the other (SQLite queues writers with BEGIN IMMEDIATE, PostgreSQL on the patient's row)."""
    service.create_patient(db, _record(typings=[], current_typing=None), reader)
    typing_ = {"gl": TYPING_1, "laboratory": "SYN HLA lab", "date": "2021-03-01",
               "method": "SSO", "resolution": "intermediate"}
    with ThreadPoolExecutor(4) as pool:
        done = list(pool.map(lambda _: service.add_typing(db, CHILD["id"], typing_, reader),
                             range(8)))
    assert len(done) == 8
    stored = service.get_patient(db, CHILD["id"])
    assert [t.number for t in stored.typings] == list(range(1, 9))
    assert stored.version == 9
