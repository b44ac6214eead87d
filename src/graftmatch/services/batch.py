"""Batch match grading: files of typings in, CSV or JSON Lines out, block by block so memory
stays bounded whatever the file sizes. Its own module: numba's compiled loop and polars are
for batch mode only, and would slow the start of everything else."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import polars as pl

from graftmatch.atomic import atomic_file
from graftmatch.errors import GraftmatchError
from graftmatch.matching.batch import BatchMatcher, Cohort, MismatchSummary
from graftmatch.matching.export import block_frame, write_block
from graftmatch.services.common import Progress, no_progress
from graftmatch.services.matching import open_matcher
from graftmatch.typing.files import TypingFileError, read_pairs, read_typings
from graftmatch.typing.parser import TypingReader

#: Pairs graded and written per block: bounds memory whatever the file sizes.
BLOCK_PAIRS = 1_000_000
FORMATS = ("csv", "jsonl")


@dataclass(frozen=True)
class BatchReport:
    graded: int
    patients: int
    donors: int
    loci: tuple[str, ...]
    level: str
    summaries: tuple[MismatchSummary, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"graded": self.graded, "patients": self.patients, "donors": self.donors,
                "loci": list(self.loci), "level": self.level,
                "summaries": [{"loci": list(s.loci), "rows": s.rows(), "untyped": s.untyped}
                              for s in self.summaries]}


def _read_cohort(path: Path, reader: TypingReader, batch: BatchMatcher, role: str,
                 progress: Progress) -> Cohort:
    progress(f"reading {role} typings from {path}", 0, None)
    return batch.encode(list(read_typings(path, reader)))


def _pair_blocks(patients: Cohort, donors: Cohort, pairs: Path | None
                 ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    if pairs is None:
        step = max(1, BLOCK_PAIRS // max(1, len(donors)))
        donor_rows = np.arange(len(donors), dtype=np.int64)
        for start in range(0, len(patients), step):
            rows = np.arange(start, min(start + step, len(patients)), dtype=np.int64)
            yield np.repeat(rows, len(donors)), np.tile(donor_rows, len(rows))
        return
    p_index = {ident: i for i, ident in enumerate(patients.ids)}
    d_index = {ident: i for i, ident in enumerate(donors.ids)}
    p_rows: list[int] = []
    d_rows: list[int] = []
    for number, p, d in read_pairs(pairs):
        if p not in p_index:
            raise TypingFileError(pairs, number, "patient", f"{p!r} is not in the patients file")
        if d not in d_index:
            raise TypingFileError(pairs, number, "donor", f"{d!r} is not in the donors file")
        p_rows.append(p_index[p])
        d_rows.append(d_index[d])
        if len(p_rows) == BLOCK_PAIRS:
            yield np.array(p_rows, dtype=np.int64), np.array(d_rows, dtype=np.int64)
            p_rows, d_rows = [], []
    if p_rows:
        yield np.array(p_rows, dtype=np.int64), np.array(d_rows, dtype=np.int64)


def grade_files(patients_path: Path, donors_path: Path, loci: Sequence[str] | None = None, *,
                level: str | None = None, policy: Path | None = None, pairs: Path | None = None,
                output: Path | None = None, stream: IO[bytes] | None = None,
                fmt: str | None = None, summaries: Sequence[Sequence[str]] = (),
                reader: TypingReader | None = None,
                progress: Progress = no_progress) -> BatchReport:
    """Grade every pair of two typing files (or the pairs ``pairs`` lists) at ``level`` under
    ``policy`` (see :func:`graftmatch.services.matching.open_matcher`) and write the rows to
    ``output`` (through a temporary file renamed on success), else to ``stream``, else
    nowhere; accumulate the mismatch distributions over each of ``summaries``' loci sets.
    ``fmt`` is csv or jsonl (default: from ``output``'s suffix, else csv)."""
    if fmt is not None and fmt not in FORMATS:
        raise GraftmatchError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    reader, matcher = open_matcher(policy, level, reader)
    batch = BatchMatcher(matcher, loci)
    summary_sets = [MismatchSummary(summary_loci, batch.loci) for summary_loci in summaries]
    patients = _read_cohort(patients_path, reader, batch, "patient", progress)
    donors = _read_cohort(donors_path, reader, batch, "donor", progress)
    prepared = batch.tables(patients, donors)
    fmt_name = fmt or ("jsonl" if output and output.suffix in (".jsonl", ".ndjson") else "csv")
    total = len(patients) * len(donors) if pairs is None else None
    p_ids, d_ids = pl.Series(patients.ids), pl.Series(donors.ids)
    graded = 0
    try:
        with ExitStack() as stack:
            # An interrupted batch never leaves a half-written result that looks complete (a
            # device is written directly).
            sink = stack.enter_context(atomic_file(output, "wb")) if output else stream
            progress("grading pairs", 0, total)
            for p_rows, d_rows in _pair_blocks(patients, donors, pairs):
                block = batch.grade(patients, donors, p_rows, d_rows, prepared)
                for s in summary_sets:
                    s.add(block)
                if sink is not None:
                    frame = block_frame(block, p_ids, d_ids, batch.loci, fmt_name == "jsonl")
                    write_block(frame, sink, fmt_name, header=graded == 0)
                graded += len(p_rows)
                progress("grading pairs", graded, total)
    except OSError as exc:  # a full disk, a folder without write permission
        raise GraftmatchError(f"cannot write {output or 'standard output'}: {exc}"
                              ) from exc
    return BatchReport(graded, len(patients), len(donors), tuple(batch.loci),
                       matcher.policy.level, tuple(summary_sets))
