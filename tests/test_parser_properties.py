"""Property tests: valid typings round-trip through GL String output, and no input makes the
parser raise anything but TypingError."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graftmatch.errors import TypingError
from graftmatch.nomenclature.names import split_name
from graftmatch.typing.parser import TypingReader

LOCI = ("A", "B", "C", "DRB1", "DQB1", "DPB1", "DRB3", "DQA1")
SEROLOGY = ("A1", "A2", "A9", "A24", "B8", "B12", "B44", "Cw4", "Cw7", "DR15", "DR17", "DQ7")


_BY_LOCUS: dict[str, list[str]] = {}


@st.composite
def element(draw, index, locus):
    """One allele-level element of ``locus`` in a randomly chosen real-world form."""
    if not _BY_LOCUS:
        for n in index.names:
            _BY_LOCUS.setdefault(n.partition("*")[0], []).append(n)
    name = draw(st.sampled_from(_BY_LOCUS[locus]))
    loc, fields, suffix = split_name(name)
    form = draw(st.sampled_from(["full", "two", "three", "xx", "g", "p"]))
    if form == "two":
        return f"{loc}*{':'.join(fields[:2])}{suffix}"
    if form == "three" and len(fields) >= 3:
        return f"{loc}*{':'.join(fields[:3])}{suffix}"
    if form == "xx":
        return f"{loc}*{fields[0]}:XX"
    if form == "g":
        return index.g_group(index.id_of[name])
    if form == "p":
        return index.p_group(index.id_of[name])
    return name


@st.composite
def gl_string(draw, index):
    loci = draw(st.lists(st.sampled_from(LOCI), min_size=1, max_size=4, unique=True))
    blocks = []
    for locus in loci:
        copies = [
            "/".join(draw(st.lists(element(index, locus), min_size=1, max_size=3)))
            for _ in range(draw(st.integers(1, 2)))
        ]
        blocks.append("+".join(copies))
    return "^".join(blocks)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_valid_typings_round_trip_through_gl_string(index, data):
    reader = TypingReader(index)
    text = data.draw(gl_string(index))
    typing_ = reader.parse(text)
    again = reader.parse(typing_.to_gl())
    assert again == typing_
    assert again.to_gl() == typing_.to_gl()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(SEROLOGY), min_size=1, max_size=2))
def test_serological_typings_round_trip(index, antigens):
    reader = TypingReader(index)
    loci = {a.rstrip("0123456789") for a in antigens}
    text = "+".join(antigens) if len(antigens) == 2 and len(loci) == 1 else antigens[0]
    typing_ = reader.parse(text)
    assert reader.parse(typing_.to_gl()) == typing_


GL_ALPHABET = "AB*:0123456789/+^|~-NGPXCDQRw? ;"


@settings(max_examples=1500, deadline=None)
@given(st.one_of(st.text(max_size=40), st.text(alphabet=GL_ALPHABET, max_size=40)))
def test_garbage_never_raises_anything_but_typing_error(index, text):
    reader = TypingReader(index)
    try:
        typing_ = reader.parse(text)
    except TypingError as exc:
        assert 1 <= exc.position <= max(len(text), 1)
    else:
        assert reader.parse(typing_.to_gl()) == typing_
