"""Getting a release: download over real HTTP, import from a folder, verification, cache."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
import time
from pathlib import Path

import pytest

from graftmatch.errors import ReleaseError
from graftmatch.nomenclature import release as releases
from graftmatch.nomenclature.imgt_files import OPTIONAL_FILES, REQUIRED_FILES
from tests.conftest import IMGT_DIR


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAFTMATCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GRAFTMATCH_IMGT_DIR", raising=False)
    return tmp_path / "home"


def _copy_release(dest: Path) -> Path:
    for rel in REQUIRED_FILES + OPTIONAL_FILES:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(IMGT_DIR / rel, dest / rel)
    return dest


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def mirror(tmp_path):
    """A real HTTP server on loopback laid out like the IMGTHLA repository (branch 3580)."""
    root = tmp_path / "mirror"
    _copy_release(root / "3580")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetch_downloads_verifies_and_activates_the_release(home, mirror):
    _, url = mirror
    info = releases.fetch_release("3.58.0", base_url=url)
    assert info.version == "3.58.0" and info.path == home / "imgt" / "3.58.0"
    prov = info.provenance
    assert prov["pinned_sha256_verified"] is True
    assert sorted(prov["md5_verified"]) == ["wmda/hla_nom.txt", "wmda/hla_nom_g.txt",
                                            "wmda/hla_nom_p.txt", "wmda/rel_dna_ser.txt",
                                            "wmda/rel_ser_ser.txt"]
    assert prov["source"] == f"{url}/3580" and "Barker" in prov["citation"]
    assert releases.active_release().version == "3.58.0"
    assert len(releases.load_index().names) == 41433


def test_a_corrupted_download_is_refused_and_leaves_the_cache_as_it_was(home, mirror):
    root, url = mirror
    releases.fetch_release("3.58.0", base_url=url)
    before = (home / "imgt" / "3.58.0" / "Allelelist.txt").read_bytes()
    with (root / "3580" / "wmda" / "hla_nom_p.txt").open("a") as handle:
        handle.write("A*;99:99;99:99P\n")
    with pytest.raises(ReleaseError, match=r"hla_nom_p.txt: md5 .* does not match"):
        releases.fetch_release("3.58.0", base_url=url)
    assert (home / "imgt" / "3.58.0" / "Allelelist.txt").read_bytes() == before
    assert [p.name for p in (home / "imgt").iterdir() if p.name.startswith(".")] == []


def test_a_missing_file_on_the_server_is_named(home, mirror):
    root, url = mirror
    (root / "3580" / "tce" / "dpb_tce.csv").unlink()
    with pytest.raises(ReleaseError, match=r"tce/dpb_tce.csv failed: HTTP 404"):
        releases.fetch_release("3.58.0", base_url=url)
    with pytest.raises(ReleaseError, match="no IPD-IMGT/HLA release is installed"):
        releases.active_release()


def test_import_from_a_folder(home, tmp_path):
    info = releases.import_release(_copy_release(tmp_path / "offline"))
    assert info.source.startswith("imported from ")
    assert releases.active_release().path == home / "imgt" / "3.58.0"


def test_import_refuses_a_folder_mixing_releases(home, tmp_path):
    folder = _copy_release(tmp_path / "mixed")
    text = (folder / "wmda" / "rel_ser_ser.txt").read_text()
    (folder / "wmda" / "rel_ser_ser.txt").write_text(text.replace("3.58.0", "3.57.0"))
    with pytest.raises(ReleaseError, match=r"rel_ser_ser.txt is from release 3.57.0, not 3.58.0"):
        releases.import_release(folder)


def test_import_refuses_an_incomplete_folder(home, tmp_path):
    folder = _copy_release(tmp_path / "partial")
    (folder / "Allele_status.txt").unlink()
    with pytest.raises(ReleaseError, match=r"missing Allele_status\.txt"):
        releases.import_release(folder)


def test_the_index_is_compiled_once_and_reloaded_quickly(home, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAFTMATCH_IMGT_DIR", str(IMGT_DIR))
    releases._load_index_cached.cache_clear()
    releases.load_index()
    (cached,) = (home / "index").glob("3.58.0-*.json")
    releases._load_index_cached.cache_clear()
    start = time.perf_counter()
    index = releases.load_index()
    assert time.perf_counter() - start < 1.0
    assert index.release == "3.58.0" and len(index.names) == 41433
    assert list((home / "index").glob("*.json")) == [cached]


def test_a_bad_release_line_names_file_and_line(home, tmp_path):
    folder = _copy_release(tmp_path / "broken")
    path = folder / "wmda" / "hla_nom_g.txt"
    lines = path.read_text().splitlines()
    lines[10] = "garbage-without-separators"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ReleaseError, match=r"hla_nom_g.txt, line 11: expected at least 3"):
        releases.NomenclatureIndex.compile(folder)


def test_a_release_field_over_128_kb_names_file_and_line(home, tmp_path):
    folder = _copy_release(tmp_path / "broken")
    path = folder / "Allelelist.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, "HLA99999," + "A" * 140_000]) + "\n")
    with pytest.raises(ReleaseError) as caught:
        releases.NomenclatureIndex.compile(folder)
    assert str(caught.value).startswith(
        f"{path}, line {len(lines) + 1}: field larger than field limit (131072): 'HLA99999,AAA")


def _list_in_manifest(folder: Path, name: str) -> None:
    with (folder / "wmda" / "md5checksum.txt").open("a") as handle:
        handle.write(f"MD5 ({name}) = {'0' * 32}\n")


def import_from(folder: Path):
    from typer.testing import CliRunner

    from graftmatch.interfaces.cli import app

    return CliRunner().invoke(app, ["hla", "import", "--from", str(folder)])


@pytest.mark.parametrize("name", ["../../etc/hostname", "/dev/zero"])
def test_given_a_checksum_list_naming_a_file_outside_the_release_then_import_refuses_it(
        home, tmp_path, name):
    folder = _copy_release(tmp_path / "hostile")
    _list_in_manifest(folder, name)
    result = import_from(folder)
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: {folder}/wmda/md5checksum.txt lists {name!r}, "
                                     "which is not a file name of the wmda folder")
    assert not (home / "imgt" / "ACTIVE").exists()


def test_given_a_checksum_list_naming_a_file_not_in_the_folder_then_the_others_are_checked(
        home, tmp_path):
    folder = _copy_release(tmp_path / "offline")
    _list_in_manifest(folder, "hla_ambigs.xml")
    info = releases.import_release(folder)
    assert info.provenance["md5_verified"] == [
        "wmda/hla_nom.txt", "wmda/hla_nom_g.txt", "wmda/hla_nom_p.txt", "wmda/rel_dna_ser.txt",
        "wmda/rel_ser_ser.txt"]


@pytest.mark.parametrize(("rel", "target"), [
    ("wmda/hla_nom.txt", "/dev/zero"),
    ("LICENCE.md", "/etc/hostname"),
    ("wmda/README.md", "../../outside.txt"),
])
def test_given_a_release_file_linked_to_a_device_or_outside_the_folder_then_import_refuses_it(
        home, tmp_path, rel, target):
    (tmp_path / "outside.txt").write_text("not part of the release\n")
    folder = _copy_release(tmp_path / "linked")
    (folder / rel).unlink(missing_ok=True)
    (folder / rel).symlink_to(target)
    result = import_from(folder)
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: {folder / rel} is not a regular file inside the "
                                     f"release folder {folder}")
