"""Shared fixtures. Reference data are read from ../shared/data, never copied into the repo."""

from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
IMGT_DIR = Path(os.environ.get("GRAFTMATCH_IMGT_DIR", SHARED / "imgt-hla" / "3.58.0"))
WMDA = SHARED / "wmda-mvt"

sys.path.insert(0, str(REPO))  # for benchmarks.peers.pyard_offline


@pytest.fixture(scope="session", autouse=True)
def _private_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep every test away from the user's real cache."""
    os.environ["GRAFTMATCH_HOME"] = str(tmp_path_factory.mktemp("graftmatch-home"))
    os.environ["GRAFTMATCH_IMGT_DIR"] = str(IMGT_DIR)


@pytest.fixture(scope="session")
def index():
    from graftmatch.nomenclature.release import load_index

    return load_index()


@pytest.fixture
def reader(index):
    from graftmatch.typing.parser import TypingReader

    return TypingReader(index)


def read_wmda(name: str) -> list[tuple[str, str]]:
    with gzip.open(WMDA / name, "rt") as handle:
        return [tuple(line.rstrip("\n").split("%", 1)) for line in handle if line.strip()]
