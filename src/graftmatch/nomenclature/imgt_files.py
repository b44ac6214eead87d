"""Readers for the IPD-IMGT/HLA release files graftmatch needs.

Each reader takes the release folder and returns plain Python data. Every file opens with six
``#`` lines (file, date, version, origin, repository, author); the version line is checked so a
folder mixing releases is refused. Malformed lines raise :class:`ReleaseError` naming the file
and line number.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from graftmatch.errors import ReleaseError

#: Files read from a release, relative to its root, as laid out in the ANHIG/IMGTHLA repository.
REQUIRED_FILES: tuple[str, ...] = (
    "release_version.txt",
    "Allelelist.txt",
    "Allele_status.txt",
    "Deleted_alleles.txt",
    "wmda/hla_nom.txt",
    "wmda/hla_nom_g.txt",
    "wmda/hla_nom_p.txt",
    "wmda/rel_dna_ser.txt",
    "wmda/rel_ser_ser.txt",
    "tce/dpb_tce.csv",
)
#: Files kept with a release when present: checksums of the WMDA files and the licence text.
OPTIONAL_FILES: tuple[str, ...] = ("wmda/md5checksum.txt", "LICENCE.md")

_VERSION_RE = re.compile(r"^#\s*version:\s*IPD-IMGT/HLA\s+(\d+\.\d+\.\d+)\s*$")
_DATE_RE = re.compile(r"^#\s*date:\s*(\S+)")


@dataclass(frozen=True, slots=True)
class Line:
    """A data line of a release file with its 1-based line number, for error messages."""

    number: int
    text: str


def _data_lines(path: Path) -> Iterator[Line]:
    try:
        with path.open(encoding="utf-8") as handle:
            for number, raw in enumerate(handle, start=1):
                text = raw.rstrip("\r\n")
                if text.startswith("#") or not text.strip():
                    continue
                yield Line(number, text)
    except FileNotFoundError as exc:
        raise ReleaseError(f"release file missing: {path}") from exc
    except UnicodeDecodeError as exc:
        raise ReleaseError(f"{path}: not UTF-8 text ({exc.reason})") from exc


def read_header(path: Path) -> tuple[str, str]:
    """Return (version, date) from a release file's ``#`` header."""
    version = date = ""
    try:
        with path.open(encoding="utf-8") as handle:
            for _, raw in zip(range(8), handle, strict=False):
                if m := _VERSION_RE.match(raw.strip()):
                    version = m.group(1)
                elif m := _DATE_RE.match(raw.strip()):
                    date = m.group(1)
    except FileNotFoundError as exc:
        raise ReleaseError(f"release file missing: {path}") from exc
    if not version:
        raise ReleaseError(f"{path}: no '# version: IPD-IMGT/HLA x.y.z' header line")
    return version, date


def release_version(root: Path) -> tuple[str, str]:
    """(version, date) of a release folder, after checking that every required file's header
    names the same release, so a folder mixing releases is refused."""
    version, date = read_header(root / "release_version.txt")
    for rel in REQUIRED_FILES:
        file_version, _ = read_header(root / rel)
        if file_version != version:
            raise ReleaseError(f"{root / rel} is from release {file_version}, not {version}")
    return version, date


def _fail(path: Path, line: Line, why: str) -> ReleaseError:
    return ReleaseError(f"{path}, line {line.number}: {why}: {line.text[:120]!r}")


def _csv_rows(
    path: Path, expected_header: tuple[str, ...]
) -> Iterator[tuple[Line, dict[str, str]]]:
    lines = _data_lines(path)
    header_line = next(lines, None)
    if header_line is None:
        raise ReleaseError(f"{path}: no data")
    header = _csv_line(path, header_line)
    missing = [name for name in expected_header if name not in header]
    if missing:
        raise _fail(path, header_line, f"header lacks column(s) {', '.join(missing)}")
    for line in lines:
        values = _csv_line(path, line)
        if len(values) < len(header):
            raise _fail(path, line, f"expected {len(header)} comma-separated fields")
        yield line, dict(zip(header, values, strict=False))


#: No field of a release file comes near this; checked here rather than by the csv module's
#: own limit, which is process-wide (the registry reader raises it for its long lines).
FIELD_LIMIT = 131_072


def _csv_line(path: Path, line: Line) -> list[str]:
    try:
        values = next(csv.reader([line.text]))
    except csv.Error as exc:  # a NUL character, a field over the module's limit
        raise _fail(path, line, str(exc)) from None
    if any(len(value) > FIELD_LIMIT for value in values):
        raise _fail(path, line, f"field larger than field limit ({FIELD_LIMIT})")
    return values


def read_allele_list(root: Path) -> list[tuple[str, str]]:
    """``Allelelist.txt``: (accession id, full allele name) in release order."""
    path = root / "Allelelist.txt"
    return [(row["AlleleID"], row["Allele"]) for _, row in _csv_rows(path, ("AlleleID", "Allele"))]


def read_allele_status(root: Path) -> dict[str, tuple[str, str, str]]:
    """``Allele_status.txt``: allele -> (Partial: Full/Partial, Type: gDNA/cDNA, Confirmed)."""
    path = root / "Allele_status.txt"
    return {
        row["Allele"]: (row["Partial"], row["Type"], row["Confirmed"])
        for _, row in _csv_rows(path, ("Allele", "Confirmed", "Partial", "Type"))
    }


def read_deleted_alleles(root: Path) -> list[tuple[str, str, str]]:
    """``Deleted_alleles.txt``: (accession id, deleted name, description)."""
    path = root / "Deleted_alleles.txt"
    rows = _csv_rows(path, ("AlleleID", "Allele", "Description"))
    return [(row["AlleleID"], row["Allele"], row["Description"]) for _, row in rows]


def _semicolon_rows(path: Path, min_fields: int) -> Iterator[tuple[Line, list[str]]]:
    for line in _data_lines(path):
        fields = [f.strip() for f in line.text.split(";")]
        if len(fields) < min_fields:
            raise _fail(path, line, f"expected at least {min_fields} ';'-separated fields")
        yield line, fields


def read_hla_nom(root: Path) -> list[tuple[str, str, str, str]]:
    """``wmda/hla_nom.txt`` allele lines: (full name, date deleted, identical to, reason)."""
    path = root / "wmda" / "hla_nom.txt"
    out = []
    for _, f in _semicolon_rows(path, 6):
        if f[0].endswith("*"):
            out.append((f[0] + f[1], f[3], f[4], f[5]))
    return out


def read_groups(root: Path, kind: str) -> list[tuple[str, list[str]]]:
    """``wmda/hla_nom_g.txt`` / ``hla_nom_p.txt``: (group name, full member names).

    Lines with an empty group field list a single allele that belongs to no group; those are
    skipped: an allele outside every group is its own group.
    """
    path = root / "wmda" / f"hla_nom_{kind.lower()}.txt"
    out = []
    for line, f in _semicolon_rows(path, 3):
        locus, members, group = f[0], f[1], f[2]
        if not locus.endswith("*"):
            raise _fail(path, line, "locus field must end with '*'")
        if group:
            out.append((locus + group, [locus + m for m in members.split("/")]))
    return out


def read_rel_dna_ser(root: Path) -> list[tuple[str, str, str, str, str]]:
    """``wmda/rel_dna_ser.txt``: (allele, unambiguous, possible, assumed, expert exceptions).

    Antigen fields hold bare numbers (``1``, ``23/24``); ``0`` marks a null allele and ``?`` an
    allele with no serological equivalent. A 7th HATS field (release 3.64.0 on) is ignored.
    """
    path = root / "wmda" / "rel_dna_ser.txt"
    return [(f[0] + f[1], f[2], f[3], f[4], f[5]) for _, f in _semicolon_rows(path, 6)]


def read_rel_ser_ser(root: Path) -> list[tuple[str, str, list[str], list[str]]]:
    """``wmda/rel_ser_ser.txt``: (serological locus, antigen, splits, associated antigens)."""
    path = root / "wmda" / "rel_ser_ser.txt"
    return [
        (f[0], f[1], [s for s in f[2].split("/") if s], [a for a in f[3].split("/") if a])
        for _, f in _semicolon_rows(path, 4)
    ]


def read_dpb_tce(root: Path) -> dict[str, tuple[str, str]]:
    """``tce/dpb_tce.csv``: DPB1 allele -> (V1 assignment, V2 assignment), read by header.

    Values are kept verbatim (``0``, ``1``, ``2``, ``2a``, ``3``, optionally with a trailing
    ``$`` for inferred assignments); their reading is a matching rule, not a file format.
    """
    path = root / "tce" / "dpb_tce.csv"
    rows = _csv_rows(path, ("Allele", "V2_Assignment"))
    return {row["Allele"]: (row.get("V1_Assignment", ""), row["V2_Assignment"]) for _, row in rows}


def read_md5_manifest(root: Path) -> dict[str, str]:
    """``wmda/md5checksum.txt`` (``MD5 (name) = hex``): file name -> md5, empty if absent."""
    path = root / "wmda" / "md5checksum.txt"
    if not path.exists():
        return {}
    out = {}
    for line in _data_lines(path):
        m = re.match(r"^MD5 \((.+)\) = ([0-9a-f]{32})$", line.text.strip())
        if not m:
            raise _fail(path, line, "expected 'MD5 (file) = <32 hex digits>'")
        out[m.group(1)] = m.group(2)
    return out
