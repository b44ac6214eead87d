"""A registry's files as a coordinator relies on them (issue 12): a killed build leaving no
workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_frequencies import CAU
from tests.test_registry_search import _population_registry

ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}


def _python(script: str, *args: object, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], text=True,
                            env=ENV, **kwargs)  # type: ignore[call-overload]


KILLED_BUILD = """
import multiprocessing, sys, time
from pathlib import Path
import numpy as np
from graftmatch.nomenclature.release import load_index
from graftmatch.prediction.frequencies import read_frequency_set
from graftmatch.prediction.haplotypes import HaplotypeTable
from graftmatch.prediction.settings import default_settings
from graftmatch.registry.index import build_index
from graftmatch.registry.store import Registry
from graftmatch.typing.parser import TypingReader
reader = TypingReader(load_index())
population, _ = read_frequency_set(Path(sys.argv[2]), reader).select("CAU")
def imputing(done, total):  # the workers are up: name them, and stop here
    print(*(p.pid for p in multiprocessing.active_children()), flush=True)
    time.sleep(600)
save = np.save
def writing(*args, **kwargs):  # one file written into the new index folder, then stop
    save(*args, **kwargs)
    print("writing", flush=True)
    time.sleep(600)
if sys.argv[3] == "writing":
    np.save = writing
build_index(Registry(Path(sys.argv[1])), reader, HaplotypeTable.compile(population, reader),
            default_settings(), imputing if sys.argv[3] == "imputing" else None, workers=2)
"""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_index_build_leaves_no_worker_processes_running(tmp_path, sig):
    folder = _population_registry(tmp_path, "CAU")
    build = _python(KILLED_BUILD, folder, CAU, "imputing", stdout=subprocess.PIPE)
    assert build.stdout is not None
    workers = [int(pid) for pid in build.stdout.readline().split()]
    assert len(workers) == 2 and all(_alive(pid) for pid in workers)
    build.send_signal(sig)
    assert build.wait(30) == -sig
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in workers if _alive(pid)] == []
