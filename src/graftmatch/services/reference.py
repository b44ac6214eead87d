"""Reference data: the IPD-IMGT/HLA release (fetch, import, describe), the typing reader on
it, and the NMDP MAC list."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graftmatch.errors import ReleaseError
from graftmatch.nomenclature import release as releases
from graftmatch.nomenclature.index import NomenclatureIndex
from graftmatch.nomenclature.mac import load_mac_table, read_mac_file, save_mac_table
from graftmatch.services.common import Notify, Progress, no_notice, no_progress
from graftmatch.typing.parser import TypingReader


def open_reader() -> TypingReader:
    """A typing reader on the active release, with the user's MAC list if imported."""
    index = releases.load_index()
    return TypingReader(index, load_mac_table(releases.home_dir()))


@dataclass(frozen=True)
class InstalledRelease:
    """A release just fetched or imported: what was verified and what its index holds."""

    info: releases.ReleaseInfo
    verified_files: int
    pinned_sha256: bool
    alleles: int
    loci: int

    def to_dict(self) -> dict[str, Any]:
        return {"release": self.info.version, "date": self.info.date,
                "path": str(self.info.path), "verified_files": self.verified_files,
                "pinned_sha256_verified": self.pinned_sha256, "alleles": self.alleles,
                "loci": self.loci}


def _installed(info: releases.ReleaseInfo) -> InstalledRelease:
    index = releases.load_index(info)
    return InstalledRelease(info, len(info.provenance.get("md5_verified", [])),
                            bool(info.provenance.get("pinned_sha256_verified")),
                            len(index.names), len(index.loci))


def fetch_release(release: str = releases.DEFAULT_RELEASE, url: str | None = None,
                  progress: Progress = no_progress) -> InstalledRelease:
    """Download ``release`` from the official repository (or the mirror at ``url``), verify
    it and make it active; ``progress`` gets "downloading FILE" per file."""
    stage = f"downloading IPD-IMGT/HLA {release}"
    progress(stage, 0, None)
    info = releases.fetch_release(release, base_url=url,
                                  progress=lambda rel: progress(f"downloading {rel}", 0, None))
    return _installed(info)


def import_release(folder: Path) -> InstalledRelease:
    """Import an unpacked release from ``folder`` (sites without internet access)."""
    return _installed(releases.import_release(folder))


def active_or_fetch(notify: Notify = no_notice,
                    progress: Progress = no_progress) -> releases.ReleaseInfo:
    """The active release; without one, the default release downloaded (saying so)."""
    try:
        return releases.active_release()
    except ReleaseError:
        notify("no IPD-IMGT/HLA release yet: downloading "
               f"{releases.DEFAULT_RELEASE} from the official repository")
        return fetch_release(releases.DEFAULT_RELEASE, progress=progress).info


@dataclass(frozen=True)
class ReleaseOverview:
    """The active release: source, allele counts per locus, MAC list, licence and citation."""

    info: releases.ReleaseInfo
    index: NomenclatureIndex
    mac_list: dict[str, Any] | None

    @property
    def alleles_per_locus(self) -> dict[str, int]:
        return self.index.counts_per_locus()

    def to_dict(self) -> dict[str, Any]:
        info, index = self.info, self.index
        return {
            "release": info.version, "date": info.date, "source": info.source,
            "path": str(info.path), "alleles": len(index.names),
            "alleles_per_locus": self.alleles_per_locus,
            "g_groups": len(index.g_names), "p_groups": len(index.p_names),
            "mac_list": self.mac_list,
            "licence": releases.LICENCE_URL, "citation": releases.CITATION,
        }


def release_overview() -> ReleaseOverview:
    info = releases.active_release()
    index = releases.load_index(info)
    macs = load_mac_table(releases.home_dir())
    return ReleaseOverview(info, index, {"source": macs.source, "updated": macs.updated,
                                         "codes": len(macs.codes)} if macs else None)


@dataclass(frozen=True)
class MacImport:
    """A MAC list imported: how many codes, the list's date, where it is kept."""

    codes: int
    updated: str
    path: Path

    def to_dict(self) -> dict[str, Any]:
        return {"codes": self.codes, "updated": self.updated, "path": str(self.path)}


def import_mac_list(file: Path) -> MacImport:
    """Import the NMDP multiple-allele-code list (numer.v3.txt / alpha.v3.txt, or its zip)."""
    table = read_mac_file(file)
    path = save_mac_table(table, releases.home_dir())
    return MacImport(len(table.codes), table.updated, path)
