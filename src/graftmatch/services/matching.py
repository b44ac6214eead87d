"""Match grading: one patient-donor pair (batch files: :mod:`graftmatch.services.batch`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from graftmatch.errors import GraftmatchError
from graftmatch.matching.grader import Matcher
from graftmatch.matching.policy import LEVELS, MatchPolicy, default_policy, load_policy
from graftmatch.matching.result import MatchResult
from graftmatch.services.reference import open_reader
from graftmatch.services.typings import read_typing
from graftmatch.typing.parser import TypingReader


def match_policy(path: Path | None = None, level: str | None = None) -> MatchPolicy:
    """A site's matching policy (default: the built-in one), at ``level`` (P or G) if given."""
    policy = load_policy(path) if path else default_policy()
    if level is None:
        return policy
    if level not in LEVELS:
        raise GraftmatchError(f"level {level!r}: expected one of {', '.join(LEVELS)}")
    return dataclasses.replace(policy, level=level)


def open_matcher(policy: Path | None = None, level: str | None = None,
                 reader: TypingReader | None = None) -> tuple[TypingReader, Matcher]:
    """The reader and a matcher under the policy (the policy is read first: its errors come
    before a missing release's)."""
    chosen = match_policy(policy, level)
    reader = reader or open_reader()
    return reader, Matcher(reader.index, chosen)


def grade_pair(patient: str, donor: str, loci: Sequence[str] | None = None, *,
               level: str | None = None, policy: Path | None = None,
               reader: TypingReader | None = None) -> MatchResult:
    """Grade one pair of GL Strings: per locus grades, GvH/HvG, the match count (e.g. 9/10).
    ``loci`` are counted (default: the policy's); ``result.to_dict()`` is the JSON form."""
    reader, matcher = open_matcher(policy, level, reader)
    return matcher.match(read_typing(reader, patient, "patient"),
                         read_typing(reader, donor, "donor"), loci)
