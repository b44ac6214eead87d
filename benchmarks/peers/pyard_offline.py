"""Run py-ard 2.4.x fully offline on a local IPD-IMGT/HLA release folder.

py-ard is the correctness oracle (tests) and the speed peer (benchmarks); graftmatch never
imports it at run time. py-ard downloads its inputs from GitHub when it builds its database, so
this helper lays the local release out as the URL tree py-ard expects and points
``IMGT_HLA_URL`` at it with a ``file://`` URL (the recipe in ../shared/docs/DOMAIN.md §8.4).
The database is built once per release into ``cache_dir`` and reused.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any


def _link(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        dest.symlink_to(src.resolve())


def open_pyard(release_dir: Path, cache_dir: Path) -> Any:
    """Return an initialised ``pyard.ARD`` for the release in ``release_dir``, offline."""
    version = (release_dir / "release_version.txt").read_text().split("IPD-IMGT/HLA")[1].split()[0]
    short = version.replace(".", "")
    tree, db_dir = cache_dir / "imgt-tree", cache_dir / "db"
    _link(release_dir / "wmda", tree / short / "wmda")
    _link(release_dir / "wmda", tree / "Latest" / "wmda")
    _link(release_dir / "Allelelist.txt", tree / "Latest" / "Allelelist.txt")
    _link(release_dir / "Allelelist.txt",
          tree / "Latest" / "allelelist" / f"Allelelist.{short}.txt")
    _link(release_dir / "release_version.txt", tree / "Latest" / "release_version.txt")
    db_dir.mkdir(parents=True, exist_ok=True)
    db_file = db_dir / f"pyard-{short}.sqlite3"
    db_file.touch()  # a pinned version without a DB file would ask api.github.com
    os.environ["IMGT_HLA_URL"] = f"file://{tree.resolve()}/"
    os.environ["PYARD_RC"] = "no"
    import pyard  # imported late: it reads IMGT_HLA_URL at import time

    ard = pyard.init(short, data_dir=str(db_dir), load_mac=False)
    # Releases before 3.64 have no HATS column, so py-ard never creates this table and would
    # re-download rel_dna_ser.txt on every init.
    with sqlite3.connect(db_file) as con:
        con.execute("CREATE TABLE IF NOT EXISTS antigen_specifities "
                    "(allele TEXT PRIMARY KEY, hats TEXT NOT NULL)")
    return ard
