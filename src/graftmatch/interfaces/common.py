"""What every command shares: consoles, exit codes, error reporting, progress on stderr, and
the parsing of option values written as text (``A,B,DRB1``, ``DRB1=0,A=1``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TimeRemainingColumn

from graftmatch.errors import GraftmatchError, ReleaseError, TypingError
from graftmatch.services.common import Progress as ProgressCallback
from graftmatch.services.common import json_text

# No emoji codes (":AB" in A*01:AB is one) and no highlighting: typings print verbatim. Output
# to a file or pipe is not squeezed to 80 columns: tables of typings stay readable there.
out = Console(emoji=False, highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, emoji=False, highlight=False)

#: Exit codes: 1 = the input is invalid (a typing, a file); 2 = the set-up is (no release...).
EXIT_INVALID = 1
EXIT_SETUP = 2


def fail(exc: GraftmatchError, as_json: bool = False) -> typer.Exit:
    code = EXIT_SETUP if isinstance(exc, ReleaseError) else EXIT_INVALID
    if as_json:
        payload = exc.to_dict() if isinstance(exc, TypingError) else {"error": str(exc)}
        out.print_json(json_text({"valid": False, **payload}))
    else:
        # Escaped: a message naming "[drb345]" or "[cord]" would otherwise lose it as markup.
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True,
                  soft_wrap=True)
    return typer.Exit(code)


def print_json(doc: object) -> None:
    """A service's document as strict JSON on standard output (a number JSON cannot carry is
    refused as an error in JSON)."""
    try:
        text = json_text(doc)
    except GraftmatchError as exc:
        raise fail(exc, True) from None
    out.print_json(text)


def notify(message: str) -> None:
    """A service's notice while it works, on stderr."""
    err.print(message, highlight=False)


@contextmanager
def progress_bar() -> Iterator[ProgressCallback]:
    """A service's progress callback drawn as a transient bar on stderr, one per stage; drawn
    from the first report on (work that reports nothing draws nothing)."""
    display = Progress("[progress.description]{task.description}", BarColumn(),
                       MofNCompleteColumn(), TimeRemainingColumn(), console=err,
                       transient=True)
    tasks: dict[str, TaskID] = {}

    def report(stage: str, done: int, total: int | None) -> None:
        if not tasks:
            display.start()
        if stage not in tasks:
            for task in tasks.values():
                display.update(task, visible=False)
            tasks[stage] = display.add_task(stage, total=total)
        display.update(tasks[stage], completed=done, total=total)
    try:
        yield report
    finally:
        if tasks:
            display.stop()


def parse_loci(text: str | None, option: str = "--loci") -> list[str] | None:
    if text is None:
        return None
    loci = [part.strip().upper() for part in text.split(",") if part.strip()]
    if not loci:
        raise GraftmatchError(f"{option} {text!r} names no locus")
    return loci


def parse_names(text: str, option: str) -> tuple[str, ...]:
    """``REG1, REG2`` -> ("REG1", "REG2"); an empty entry (``,``) is refused, not read as "no
    names", which would find nothing."""
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise GraftmatchError(f"{option} {text!r}: an empty name; give names separated by "
                              "commas")
    return names


def parse_per_locus(text: str | None) -> dict[str, int]:
    """``DRB1=0,A=1`` -> {"DRB1": 0, "A": 1}; a malformed entry is refused by name."""
    limits: dict[str, int] = {}
    for n, entry in enumerate((e.strip() for e in (text or "").split(",")), 1):
        if not entry:
            continue
        locus, sep, value = entry.partition("=")
        if not sep or not value.strip().isdigit():
            raise GraftmatchError(f"--per-locus entry {n} {entry!r}: expected LOCUS=N, e.g. "
                                  "DRB1=0")
        limits[locus.strip().upper().removeprefix("HLA-")] = int(value)
    return limits
