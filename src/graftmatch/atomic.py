"""Writing a file so that readers see the old version or the new one, never half of either."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from graftmatch.errors import GraftmatchError


@contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` (``mode`` ``"w"`` or ``"wb"``); on success it
    replaces ``path``, on any error it is removed and ``path`` is left as it was.

    Only a regular file is replaced that way. A device or FIFO (``/dev/null``, ``/dev/stdout``)
    is written directly, as renaming over it would put a file in its place; a link is followed,
    so the file it names is replaced and the link kept; a folder is an error.
    """
    encoding = None if "b" in mode else "utf-8"
    try:
        kind = path.stat().st_mode
    except FileNotFoundError:
        kind = None
    if kind is not None and stat.S_ISDIR(kind):
        raise GraftmatchError(f"{path} is a folder: name a file to write")
    if kind is not None and not stat.S_ISREG(kind):
        with open(path, mode, encoding=encoding) as handle:
            yield handle
        return
    target = path.resolve() if kind is not None else path
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    try:
        with open(fd, mode, encoding=encoding) as handle:
            yield handle
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
