"""Batch mode of ``graftmatch match``: files of typings in, CSV or JSON Lines out, block by
block so memory stays bounded whatever the file sizes."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO

import numpy as np
import polars as pl
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from graftmatch.atomic import atomic_file
from graftmatch.errors import GraftmatchError
from graftmatch.interfaces.common import err, out
from graftmatch.matching.batch import BatchMatcher, Cohort, MismatchSummary
from graftmatch.matching.export import block_frame, write_block
from graftmatch.matching.grader import Matcher
from graftmatch.typing.files import TypingFileError, read_pairs, read_typings
from graftmatch.typing.parser import TypingReader

#: Pairs graded and written per block: bounds memory whatever the file sizes.
BLOCK_PAIRS = 1_000_000


def _read_cohort(path: Path, reader: TypingReader, batch: BatchMatcher, role: str) -> Cohort:
    with err.status(f"reading {role} typings from {path}"):
        rows = list(read_typings(path, reader))
    return batch.encode(rows)


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


def run_batch(reader: TypingReader, matcher: Matcher, loci: list[str] | None,
              patients_path: Path, donors_path: Path, pairs: Path | None, output: Path | None,
              fmt: str | None, summaries: list[list[str]], no_pairs: bool) -> None:
    """Grade every pair of two typing files (or the pairs a file lists), write the rows and
    print the summaries asked for."""
    batch = BatchMatcher(matcher, loci)
    summary_sets = [MismatchSummary(summary_loci, batch.loci) for summary_loci in summaries]
    patients = _read_cohort(patients_path, reader, batch, "patient")
    donors = _read_cohort(donors_path, reader, batch, "donor")
    prepared = batch.tables(patients, donors)
    fmt_name = fmt or ("jsonl" if output and output.suffix in (".jsonl", ".ndjson") else "csv")
    total = len(patients) * len(donors) if pairs is None else None
    p_ids, d_ids = pl.Series(patients.ids), pl.Series(donors.ids)
    graded = 0
    try:
        with ExitStack() as stack:
            sink: IO[bytes] | None = None
            if not no_pairs:
                # Through a temporary file renamed on success: an interrupted batch never leaves
                # a half-written result that looks complete (a device is written directly).
                sink = (stack.enter_context(atomic_file(output, "wb")) if output
                        else sys.stdout.buffer)
            progress = stack.enter_context(Progress(
                "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn(), console=err, transient=True))
            task = progress.add_task("grading pairs", total=total)
            for p_rows, d_rows in _pair_blocks(patients, donors, pairs):
                block = batch.grade(patients, donors, p_rows, d_rows, prepared)
                for s in summary_sets:
                    s.add(block)
                if sink is not None:
                    frame = block_frame(block, p_ids, d_ids, batch.loci, fmt_name == "jsonl")
                    write_block(frame, sink, fmt_name, header=graded == 0)
                graded += len(p_rows)
                progress.update(task, advance=len(p_rows))
    except OSError as exc:  # a full disk, a folder without write permission
        raise GraftmatchError(f"cannot write {output or 'standard output'}: {exc}"
                              ) from exc
    report = out if output or no_pairs else err
    report.print(f"graded {graded:,} pairs ({len(patients):,} patients, {len(donors):,} donors) "
                 f"over {', '.join(batch.loci)} at {matcher.policy.level} group level")
    for s in summary_sets:
        table = Table(title=f"total mismatches over {', '.join(s.loci)}")
        for column in ("mismatches", "pairs", "certain", "potential"):
            table.add_column(column, justify="right")
        for row in s.rows():
            table.add_row(*(f"{row[k]:,}" for k in ("mismatches", "pairs", "certain",
                                                    "potential")))
        report.print(table)
        if s.untyped:
            report.print(f"  {s.untyped:,} pairs left out: a locus untyped on one side")

