"""Correctness oracle: every allele of the release, reduced to G, P, lgx and serology, agrees
with py-ard 2.4.2 run offline, except for the deliberate differences of
docs/adr/0003-reduction-rules.md. Each difference is recognised by a rule that states why it is
deliberate, and the count of each kind is pinned, so a new disagreement fails the test."""

from __future__ import annotations

from collections import Counter

import pytest

from graftmatch.nomenclature.names import is_null, split_name, truncate
from tests.conftest import IMGT_DIR

pytest.importorskip("pyard")


@pytest.fixture(scope="module")
def pyard(request: pytest.FixtureRequest):
    from benchmarks.peers.pyard_offline import open_pyard

    return open_pyard(IMGT_DIR, request.config.cache.mkdir("pyard-offline"))


def _explain(index, i: int, level: str, ours: str, theirs: str, lgx_serology) -> str | None:
    """Name the documented reason for a disagreement, or None if there is none."""
    name = index.names[i]
    two_fields = len(split_name(name)[1]) == 2
    if level == "G" and ours in index.g_members and theirs not in index.g_members:
        return "G: WHO-published group name; py-ard renames the group after its lowest member"
    if level == "lgx" and is_null(name) and theirs + "N" == ours and theirs not in index.by_prefix:
        return "lgx: ungrouped null keeps its N; py-ard's name is no allele of the release"
    if level == "lgx" and two_fields and index.g_of[i] >= 0 and ours == truncate(
        index.names[min(index.g_members[index.g_group(i)])], 2
    ):
        return "lgx: 2-field name reduces to its own G group's lowest member"
    if level == "S" and theirs == "" and ours == name and not index.serology[i]:
        return "S: no serological equivalent; graftmatch keeps the allele name"
    if level == "S" and two_fields and set(theirs.split("/")) == lgx_serology[index.lgx[i]]:
        return "S: 2-field name; py-ard takes the serology of its whole lgx group"
    return None


def test_every_allele_agrees_with_pyard_or_differs_for_a_documented_reason(index, pyard):
    lgx_serology: dict[str, set[str]] = {}
    for i, antigens in enumerate(index.serology):
        lgx_serology.setdefault(index.lgx[i], set()).update(antigens)
    reasons: Counter[str] = Counter()
    unexplained = []
    for i, name in enumerate(index.names):
        ours = {"G": index.g_group(i), "P": index.p_group(i), "lgx": index.lgx[i],
                "S": "/".join(index.serology[i]) or name}
        for level, mine in ours.items():
            theirs = pyard.redux(name, level)
            if theirs == mine:
                reasons["agree"] += 1
                continue
            why = _explain(index, i, level, mine, theirs, lgx_serology)
            if why is None:
                unexplained.append((name, level, mine, theirs))
            else:
                reasons[why] += 1
    assert unexplained == []
    assert len(index.names) == 41433
    assert reasons == {
        "agree": 156_175,
        "G: WHO-published group name; py-ard renames the group after its lowest member": 39,
        "lgx: ungrouped null keeps its N; py-ard's name is no allele of the release": 77,
        "lgx: 2-field name reduces to its own G group's lowest member": 1,
        "S: no serological equivalent; graftmatch keeps the allele name": 8514,
        "S: 2-field name; py-ard takes the serology of its whole lgx group": 926,
    }
