"""A registry's files as a coordinator relies on them (issue 12): index builds one at a time,
a search unaffected by a refresh, a damaged index or database refused with the fix, a
read-only registry searchable, a killed build leaving no workers and no leftovers, clean-up
touching only what graftmatch made, and files private to their owner."""

from __future__ import annotations

import gc
import json
import os
import shlex
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_frequencies import CAU
from tests.test_registry_search import LOW_RES, _cli, _population_registry, _search

ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}


def _python(script: str, *args: object, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], text=True,
                            env=ENV, **kwargs)  # type: ignore[call-overload]


def _index_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and "index-" in p.name)


def _stats(folder: str) -> dict:
    return json.loads(_cli("registry", "stats", "--registry", folder, "--json").stdout)


def _found(folder: str) -> list[tuple[str, float]]:
    result = _search(folder, "--json")
    assert result.exit_code == 0, result.output
    return sorted((d["id"], d["p_mismatches"]["0"]) for d in json.loads(result.stdout)["donors"])


def test_index_clean_up_leaves_a_users_own_index_folders_alone(tmp_path):
    """``--registry`` pointing at a user's folder: only index folders graftmatch made and
    recorded are ever removed."""
    folder = tmp_path / "reg"
    (folder / "index-photos").mkdir(parents=True)
    (folder / "index-photos" / "cat.jpg").write_bytes(b"meow")
    (folder / ".index-building-notes").mkdir()
    (folder / ".index-building-notes" / "todo.txt").write_text("buy milk")
    _population_registry(tmp_path, "CAU")
    for _ in range(2):
        assert _cli("registry", "refresh", "--force", "--registry", str(folder)).exit_code == 0
    assert (folder / "index-photos" / "cat.jpg").read_bytes() == b"meow"
    assert (folder / ".index-building-notes" / "todo.txt").read_text() == "buy milk"
    current = _stats(str(folder))["index"]["folder"]
    assert _index_folders(folder) == sorted([".index-building-notes", "index-photos", current])


PAUSED_REFRESH = """
import sys
from pathlib import Path
from graftmatch.services.reference import open_reader
from graftmatch.services.registries import refresh_index
from graftmatch.registry import index
from graftmatch.registry.store import Registry
write = index._write
def paused(*args, **kwargs):  # everything computed; wait for the test before writing it
    print("indexed", flush=True)
    sys.stdin.readline()
    return write(*args, **kwargs)
index._write = paused
print(refresh_index(Registry(Path(sys.argv[1])), open_reader(), force=True), flush=True)
"""


def test_a_second_refresh_waits_for_the_first_and_both_leave_a_working_index(tmp_path):
    folder = _population_registry(tmp_path, "CAU")
    expected = _found(folder)
    first = _python(PAUSED_REFRESH, folder, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert first.stdout is not None and first.stdout.readline().strip() == "indexed"
    second = subprocess.Popen([sys.executable, "-m", "graftmatch", "registry", "refresh",
                               "--force", "--registry", folder], text=True, env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert second.stderr is not None
    said = second.stderr.readline()
    assert "waiting for another process building the search index" in said, (
        said + second.stderr.read())
    time.sleep(1)
    assert second.poll() is None  # still waiting
    assert first.stdin is not None
    first.stdin.write("\n")
    first.stdin.close()
    assert first.wait(60) == 0 and second.wait(120) == 0
    assert "search index built" in first.stdout.read()
    assert second.stdout is not None and "search index built" in second.stdout.read()
    stats = _stats(folder)
    assert stats["index_current"] is True
    assert _index_folders(Path(folder)) == [stats["index"]["folder"]]
    assert _found(folder) == expected


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "changed":  # same size, some of the numbers rewritten
        path.write_bytes(data[:-64] + bytes(b ^ 0x55 for b in data[-64:]))
    elif how == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()


@pytest.mark.parametrize("how", ["changed", "truncated", "empty", "missing"])
def test_a_damaged_index_file_is_refused_with_the_fix_and_refresh_rebuilds_it(tmp_path, how):
    folder = _population_registry(tmp_path, "CAU")
    expected = _found(folder)
    index_folder = Path(folder) / _stats(folder)["index"]["folder"]
    _damage(index_folder / "states.npy", how)
    refused = _search(folder, "--json")
    assert refused.exit_code == 1
    error = json.loads(refused.stdout)["error"]
    assert error.startswith(f"the search index of {folder} is damaged (states.npy: ")
    assert error.endswith("run 'graftmatch registry refresh'")
    stats = _stats(folder)
    assert stats["index_current"] is False and stats["index_error"] == error
    refreshed = _cli("registry", "refresh", "--registry", folder)
    assert "search index built" in refreshed.stdout, refreshed.output
    assert _found(folder) == expected


READER = """
import json, sys
from pathlib import Path
from graftmatch.nomenclature.release import load_index
from graftmatch.prediction.frequencies import read_frequency_set
from graftmatch.prediction.haplotypes import HaplotypeTable
from graftmatch.registry.store import Registry
from graftmatch.search.engine import Criteria, Patient, Searcher
from graftmatch.typing.parser import TypingReader
reader = TypingReader(load_index())
population, _ = read_frequency_set(Path(sys.argv[2]), reader).select("CAU")
searcher = Searcher(Registry(Path(sys.argv[1])), reader,
                    HaplotypeTable.compile(population, reader))
print(searcher.index.folder.name, flush=True)
sys.stdin.readline()  # the test refreshes the index meanwhile
result = searcher.search(Patient(sys.argv[3]), Criteria(kinds=("donor",)))
searcher.attach_records(result.donors)
print(json.dumps(sorted([c.record["ext_id"], c.p_mismatches[0]] for c in result.donors)))
"""


def test_a_search_running_during_a_refresh_finishes_on_the_index_it_opened(tmp_path):
    """The old index stays while a search holds it; the next search sees the new one, and
    the next build removes the old one once no search holds it."""
    folder = _population_registry(tmp_path, "CAU")
    expected = [list(found) for found in _found(folder)]
    searching = _python(READER, folder, CAU, LOW_RES, stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE)
    assert searching.stdout is not None and searching.stdin is not None
    old = searching.stdout.readline().strip()
    assert _cli("registry", "refresh", "--force", "--registry", folder).exit_code == 0
    new = _stats(folder)["index"]["folder"]
    assert new != old and _index_folders(Path(folder)) == sorted([old, new])
    searching.stdin.write("\n")
    searching.stdin.close()
    assert json.loads(searching.stdout.read()) == expected
    assert searching.wait(30) == 0
    assert _cli("registry", "refresh", "--force", "--registry", folder).exit_code == 0
    assert _index_folders(Path(folder)) == [_stats(folder)["index"]["folder"]]


def _read_only_mount_works() -> bool:
    try:
        return subprocess.run(["unshare", "--map-root-user", "--mount", "true"],
                              capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not _read_only_mount_works(),
                    reason="needs unshare with user and mount namespaces for a read-only mount")
def test_a_registry_on_a_read_only_mount_answers_stats_and_search(tmp_path):
    """Made by another process, which closed the database (SQLite removed its -wal and -shm
    files), then mounted read-only: stats and search answer as on the writable folder, and
    again where a reader left -wal and -shm files behind."""
    source = tmp_path / "r.csv"
    source.write_text(f'type,id,registry,hla,age,status\ndonor,D1,REG1,"{LOW_RES}",30,'
                      'available\n')
    folder = str(tmp_path / "reg")
    subprocess.run([sys.executable, "-m", "graftmatch", "registry", "import", str(source),
                    "--registry", folder, "--hf", str(CAU), "--population", "CAU"],
                   env=ENV, check=True, capture_output=True)

    def read_only(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["unshare", "--map-root-user", "--mount", "sh", "-c",
                               f"mount --bind -o ro {folder} {folder} && {command}"],
                              capture_output=True, text=True, env=ENV)

    def graftmatch(*args: str) -> subprocess.CompletedProcess[str]:
        return read_only(shlex.join([sys.executable, "-m", "graftmatch", *args]))

    assert "Read-only file system" in read_only(f"touch {folder}/x").stderr
    answers = []
    for _ in ("without -wal and -shm", "with a reader's -wal and -shm"):
        ro_stats = graftmatch("registry", "stats", "--registry", folder, "--json")
        assert ro_stats.returncode == 0, ro_stats.stderr + ro_stats.stdout
        ro_search = graftmatch("search", "--registry", folder, "--patient", LOW_RES, "--kinds",
                               "donor", "--json")
        assert ro_search.returncode == 0, ro_search.stderr + ro_search.stdout
        answers.append((json.loads(ro_stats.stdout), sorted(
            (d["id"], d["p_mismatches"]["0"]) for d in json.loads(ro_search.stdout)["donors"])))
        if len(answers) == 1:
            assert sorted(p.name for p in Path(folder).glob("registry.sqlite*")) == [
                "registry.sqlite"]
            answers.append((_stats(folder), _found(folder)))
    assert sorted(p.name for p in Path(folder).glob("registry.sqlite*")) == [
        "registry.sqlite", "registry.sqlite-shm", "registry.sqlite-wal"]
    assert answers[0] == answers[1] == answers[2]
    assert [ident for ident, _ in answers[0][1]] == ["D1"]


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


def test_a_build_killed_while_writing_leaves_nothing_after_the_next_build(tmp_path, index,
                                                                          reader):
    from graftmatch.prediction.frequencies import read_frequency_set
    from graftmatch.prediction.haplotypes import HaplotypeTable
    from graftmatch.prediction.settings import default_settings
    from graftmatch.registry.index import build_index
    from graftmatch.registry.store import Registry

    folder = _population_registry(tmp_path, "CAU")
    before = _index_folders(Path(folder))
    build = _python(KILLED_BUILD, folder, CAU, "writing", stdout=subprocess.PIPE)
    assert build.stdout is not None and build.stdout.readline().strip() == "writing"
    build.kill()
    assert build.wait(30) == -signal.SIGKILL
    [leftover] = set(_index_folders(Path(folder))) - set(before)
    assert leftover.startswith(".index-building-")
    assert _found(folder)  # the previous index still answers
    population, _ = read_frequency_set(CAU, reader).select("CAU")
    info = build_index(Registry(Path(folder)), reader, HaplotypeTable.compile(population, reader),
                       default_settings())
    assert _index_folders(Path(folder)) == [info.folder]


def _registry_with_database(tmp_path: Path, how: str) -> tuple[str, Path]:
    folder = _population_registry(tmp_path, "CAU")
    db = Path(folder) / "registry.sqlite"
    gc.collect()  # this process's connections closed
    with closing(sqlite3.connect(db)) as conn:  # the last one out removes -wal and -shm
        if how == "newer version":
            conn.execute("PRAGMA user_version = 99")
        elif how == "another layout":  # with the version number of this one
            conn.execute("ALTER TABLE records RENAME COLUMN cmv TO cmv_status")
    if how == "garbage":
        db.write_bytes(b"AFA-1 " + LOW_RES.encode() * 200)
    elif how == "empty":
        db.write_bytes(b"")
    return folder, db


@pytest.mark.parametrize("how, reason", [
    ("garbage", "file is not a database"),
    ("empty", "it holds no graftmatch tables"),
    ("newer version", "it was made by another graftmatch version (database schema 99, this one "
                      "reads 1)"),
    ("another layout", "its tables are not those of this graftmatch version")])
def test_an_unusable_registry_database_is_refused_with_the_fix_and_no_record_values(
        tmp_path, how, reason):
    folder, db = _registry_with_database(tmp_path, how)
    source = tmp_path / "r.csv"  # the records the registry was made from
    for command in (["registry", "stats", "--registry", folder],
                    ["search", "--registry", folder, "--patient", LOW_RES],
                    ["registry", "refresh", "--registry", folder],
                    ["registry", "import", str(source), "--registry", folder]):
        result = _cli(*command)
        said = " ".join(result.output.split())
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), said
        assert said == (f"error: {db} is not a usable graftmatch registry ({reason}): restore "
                        "it from a backup, or move it away and import the records again"), said


def test_registry_files_are_private_to_their_owner(tmp_path):
    old = os.umask(0o022)
    try:
        (tmp_path / "bad.csv").write_text(f'type,id,registry,hla,age\ndonor,X1,REG1,"{LOW_RES}"'
                                          ',30\ndonor,X2,REG1,"A*99:99+A*01:01",30\n')
        folder = tmp_path / "reg"
        result = _cli("registry", "import", str(tmp_path / "bad.csv"), "--registry",
                      str(folder), "--hf", str(CAU), "--population", "CAU")
        assert result.exit_code == 0, result.output
    finally:
        os.umask(old)
    modes = {str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode)
             for p in [folder, *folder.rglob("*")]}
    assert {name for name, mode in modes.items() if mode not in (0o600, 0o700)} == set()
    assert {name for name, mode in modes.items() if mode == 0o700} == {
        ".", "reports", _stats(str(folder))["index"]["folder"]}
