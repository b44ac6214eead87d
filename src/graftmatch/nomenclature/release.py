"""Getting an IPD-IMGT/HLA release onto this machine, verified, and loading its index.

The release files are CC BY-ND and their maintainers oppose mirroring, so graftmatch never
ships them: ``fetch`` downloads a pinned release from the official ANHIG/IMGTHLA repository
into the user cache, ``import_release`` copies one from a folder the user names (sites without
internet), and ``GRAFTMATCH_IMGT_DIR`` points straight at an unpacked release. Every release
in the cache carries ``provenance.json``: version, source, sha256 of each file, the md5 check
against the release's own ``wmda/md5checksum.txt`` and the citation the licence asks for.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import platformdirs

from graftmatch.atomic import atomic_file
from graftmatch.errors import ReleaseError
from graftmatch.nesting import json_loads
from graftmatch.nomenclature import imgt_files
from graftmatch.nomenclature.index import SCHEMA, NomenclatureIndex

DEFAULT_RELEASE = "3.58.0"
#: Official repository; one branch per release (``3580`` for 3.58.0).
DEFAULT_BASE_URL = "https://raw.githubusercontent.com/ANHIG/IMGTHLA"
LICENCE_URL = "https://github.com/ANHIG/IMGTHLA/blob/Latest/LICENCE.md"
CITATION = (
    "Barker DJ, Maccari G, Georgiou X, Cooper MA, Flicek P, Robinson J, Marsh SGE. "
    "The IPD-IMGT/HLA Database. Nucleic Acids Research (2023) 51:D948-D955.\n"
    "Robinson J, Barker DJ, Marsh SGE. 25 years of the IPD-IMGT/HLA Database. "
    "HLA (2024) 103(6):e15549.\n"
    "Robinson J, Malik A, Parham P, Bodmer JG, Marsh SGE. IMGT/HLA - a sequence database for "
    "the human major histocompatibility complex. Tissue Antigens (2000) 55:280-287."
)
#: Known sha256 of the files of pinned releases, checked after download. These are checksums,
#: not data: they let a site prove it holds the release it thinks it holds.
PINNED_SHA256: dict[str, dict[str, str]] = {
    "3.58.0": {
        "Allele_status.txt": "89670e90ebc93044fd91ef08037fbfd770188502d94068b3eca43179fa06b2b9",
        "Allelelist.txt": "1d7528d08a4f0f1195996705340f81aa23bd695473a072db3b13defcfad14782",
        "Deleted_alleles.txt": "589812c3eca30d7d22c0146b1649674d23255571de9fa8077e3919ddb1836ecc",
        "release_version.txt": "adf03064b347189acc83aea56d0d884b248ebbe1f22fd0174da1c1300ad48719",
        "wmda/hla_nom.txt": "43495538332e43f8a6fba6f453317bc0fa8c705179a151d23f41156172669854",
        "wmda/hla_nom_g.txt": "a15e02efd5e95453aa7a273ca0ed73bf983260f03835bb08d165d761adfb9083",
        "wmda/hla_nom_p.txt": "7dd22c040e589f2ff3e9b4487878b16ab4483d5dba39bda88eb72d1a97fbaaa6",
        "wmda/rel_dna_ser.txt": "913deb7600ef3ec94bbc43b8685ed3f74d4e80efeb2d91b486c5b81240a5ebe5",
        "wmda/rel_ser_ser.txt": "e5715283f1aa424bbe2d686f9e25c83bcc458d691d5dace495918c6292d50710",
        "tce/dpb_tce.csv": "157c585e9eca5b7fb10265ef8d02958673837b0cd748b3e93e187da66acae81c",
    }
}
_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")


def home_dir() -> Path:
    """graftmatch's cache folder: ``GRAFTMATCH_HOME`` or the platform's user cache dir."""
    env = os.environ.get("GRAFTMATCH_HOME")
    return Path(env) if env else Path(platformdirs.user_cache_dir("graftmatch"))


def _releases_dir() -> Path:
    return home_dir() / "imgt"


@dataclass(frozen=True, slots=True)
class ReleaseInfo:
    version: str
    date: str
    path: Path
    source: str
    provenance: dict[str, Any]


def _digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _inside(root: Path, rel: str) -> Path | None:
    """``root / rel`` when it is a regular file inside ``root`` (links followed), ``None`` when
    it does not exist; anything else (a folder, a device, a link leading out) is an error, so
    that only the release's own files are read or copied."""
    path = root / rel
    if not path.exists() and not path.is_symlink():
        return None
    real = path.resolve()
    if not (real.is_relative_to(root.resolve()) and real.is_file()):
        raise ReleaseError(f"{path} is not a regular file inside the release folder {root}")
    return path


def verify_release_dir(root: Path, *, expect_version: str | None = None) -> dict[str, Any]:
    """Check a release folder and return its provenance facts.

    Checks: every required file is present; every file's header names the same release (and
    the one expected); the WMDA files match the release's md5checksum.txt; pinned releases
    match their known sha256. Raises :class:`ReleaseError` naming the first failure.
    """
    missing = [rel for rel in imgt_files.REQUIRED_FILES if _inside(root, rel) is None]
    if missing:
        raise ReleaseError(f"{root} is not a complete IPD-IMGT/HLA release: missing "
                           + ", ".join(missing))
    version, date = imgt_files.release_version(root)
    if expect_version and version != expect_version:
        raise ReleaseError(f"{root} holds release {version}, not {expect_version}")
    _inside(root, "wmda/md5checksum.txt")
    md5 = imgt_files.read_md5_manifest(root)
    md5_checked = []
    for name, expected in md5.items():
        if name in ("", ".", "..") or "/" in name or "\\" in name:
            raise ReleaseError(f"{root / 'wmda' / 'md5checksum.txt'} lists {name!r}, which is "
                               "not a file name of the wmda folder")
        path = _inside(root, f"wmda/{name}")
        if path is None:
            continue  # a file graftmatch does not read (the WMDA README): not fetched
        actual = _digest(path, "md5")
        if actual != expected:
            raise ReleaseError(f"{path}: md5 {actual} does not match md5checksum.txt ({expected})")
        md5_checked.append(f"wmda/{name}")
    sha = {rel: _digest(root / rel, "sha256") for rel in imgt_files.REQUIRED_FILES}
    for rel, expected in PINNED_SHA256.get(version, {}).items():
        if sha[rel] != expected:
            raise ReleaseError(f"{root / rel}: sha256 {sha[rel]} differs from the pinned "
                               f"checksum of release {version} ({expected})")
    return {
        "release": version,
        "date": date,
        "sha256": sha,
        "md5_verified": md5_checked,
        "pinned_sha256_verified": version in PINNED_SHA256,
        "licence": LICENCE_URL,
        "citation": CITATION,
    }


def _install(staging: Path, provenance: dict[str, Any]) -> ReleaseInfo:
    """Move a verified staging folder into the cache atomically and make it active."""
    version = provenance["release"]
    (staging / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    target = _releases_dir() / version
    old = target.with_name(f".{version}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    if old.exists():
        shutil.rmtree(old)
    with atomic_file(_releases_dir() / "ACTIVE") as handle:
        handle.write(version + "\n")
    return ReleaseInfo(version, provenance["date"], target, provenance["source"], provenance)


@contextmanager
def _staging() -> Iterator[Path]:
    """A scratch folder beside the cache; removed whatever happens, so a failed fetch or
    import leaves the cache exactly as it was."""
    _releases_dir().mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=_releases_dir(), prefix=".staging-"))
    try:
        yield staging
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _verify_and_install(staging: Path, source: str, expect_version: str | None) -> ReleaseInfo:
    provenance = verify_release_dir(staging, expect_version=expect_version)
    provenance.update(source=source, obtained=datetime.now(UTC).isoformat(timespec="seconds"))
    return _install(staging, provenance)


def fetch_release(
    version: str = DEFAULT_RELEASE,
    *,
    base_url: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ReleaseInfo:
    """Download ``version`` from the official repository, verify it and make it active.

    ``base_url`` (or ``GRAFTMATCH_IMGT_URL``) overrides the repository, for a local mirror the
    site runs itself. Nothing reaches the cache unless every check passes.
    """
    if not _VERSION_RE.match(version):
        raise ReleaseError(f"release must look like 3.58.0, got {version!r}")
    base = (base_url or os.environ.get("GRAFTMATCH_IMGT_URL") or DEFAULT_BASE_URL).rstrip("/")
    branch = version.replace(".", "")
    with _staging() as staging:
        for rel in imgt_files.REQUIRED_FILES + imgt_files.OPTIONAL_FILES:
            url = f"{base}/{branch}/{rel}"
            if progress:
                progress(rel)
            dest = staging / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                with urllib.request.urlopen(url, timeout=60) as response, dest.open("wb") as out:
                    shutil.copyfileobj(response, out)
            except urllib.error.HTTPError as exc:
                if exc.code == 404 and rel in imgt_files.OPTIONAL_FILES:
                    continue
                raise ReleaseError(f"download of {url} failed: HTTP {exc.code}") from exc
            except (urllib.error.URLError, OSError) as exc:
                raise ReleaseError(f"download of {url} failed: {exc}") from exc
        return _verify_and_install(staging, f"{base}/{branch}", version)


def import_release(folder: Path) -> ReleaseInfo:
    """Copy a release from ``folder`` (laid out as the IMGTHLA repository), verified."""
    folder = folder.expanduser()
    if not folder.is_dir():
        raise ReleaseError(f"{folder} is not a folder")
    verify_release_dir(folder)
    with _staging() as staging:
        for rel in imgt_files.REQUIRED_FILES + imgt_files.OPTIONAL_FILES:
            if _inside(folder, rel):
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(folder / rel, staging / rel)
        return _verify_and_install(staging, f"imported from {folder.resolve()}", None)


def active_release() -> ReleaseInfo:
    """The release graftmatch uses now: ``GRAFTMATCH_IMGT_DIR``, else the active cached one."""
    env = os.environ.get("GRAFTMATCH_IMGT_DIR")
    if env:
        root = Path(env)
        if not root.is_dir():
            raise ReleaseError(f"GRAFTMATCH_IMGT_DIR={env} is not a folder")
        version, date = imgt_files.read_header(root / "release_version.txt")
        return ReleaseInfo(version, date, root, f"GRAFTMATCH_IMGT_DIR={env}",
                           {"release": version, "date": date, "licence": LICENCE_URL,
                            "citation": CITATION, "source": str(root.resolve())})
    active = _releases_dir() / "ACTIVE"
    if not active.exists():
        raise ReleaseError(
            "no IPD-IMGT/HLA release is installed: run 'graftmatch hla fetch --release "
            f"{DEFAULT_RELEASE}' (or 'graftmatch hla import --from DIR'), or set "
            "GRAFTMATCH_IMGT_DIR to an unpacked release"
        )
    version = active.read_text().strip()
    root = _releases_dir() / version
    try:
        provenance = json_loads((root / "provenance.json").read_text())
    except (OSError, ValueError) as exc:
        raise ReleaseError(f"release {version} in {root} is damaged ({exc}): fetch or import "
                           "it again") from exc
    return ReleaseInfo(version, provenance.get("date", ""), root, provenance["source"],
                       provenance)


def _fingerprint(root: Path) -> str:
    digest = hashlib.sha256(str(SCHEMA).encode())
    for rel in imgt_files.REQUIRED_FILES:
        path = root / rel
        if not path.is_file():
            raise ReleaseError(f"{root} is not a complete IPD-IMGT/HLA release: missing {rel}")
        digest.update(rel.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


@lru_cache(maxsize=4)
def _load_index_cached(root: Path, fingerprint: str, source: str) -> NomenclatureIndex:
    version, _ = imgt_files.read_header(root / "release_version.txt")
    cache = home_dir() / "index" / f"{version}-{fingerprint}.json"
    if cache.exists():
        try:
            return NomenclatureIndex.load(cache, source=source)
        except ReleaseError:
            cache.unlink(missing_ok=True)  # stale or damaged: rebuild below
    index = NomenclatureIndex.compile(root)
    index.source = source
    index.save(cache)
    return index


def load_index(release: ReleaseInfo | None = None) -> NomenclatureIndex:
    """The compiled index of ``release`` (default: the active one), built on first use.

    The index file is keyed by a hash of the release files, so an edited or replaced release
    is never served from a stale index.
    """
    release = release or active_release()
    return _load_index_cached(release.path.resolve(), _fingerprint(release.path),
                              release.source)
