"""NMDP multiple allele codes (MACs), from a file the user supplies.

No public source may redistribute NMDP's code list, and new codes appear daily, so graftmatch
never downloads or guesses one: ``graftmatch hla import-mac FILE`` reads the user's
``numer.v3.txt`` or ``alpha.v3.txt`` (or the zip holding it) into the cache, and a typing with
a MAC and no imported list is an error. A generic code lists second fields (``AB`` =
``01/02``, so ``A*01:AB`` = ``A*01:01/A*01:02``); an allele-specific code lists whole names
(``01:01/02:01``).
"""

from __future__ import annotations

import io
import json
import lzma
import re
import zipfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from graftmatch.atomic import atomic_file
from graftmatch.errors import GraftmatchError
from graftmatch.nesting import json_loads

_CODE_RE = re.compile(r"^[A-Z]{2,5}$")
#: The most read from a MAC file, or unpacked from its zip: a bound on memory (a zip bomb of
#: 300 MB once took 789 MB). Meant to be well above NMDP's lists (UNVERIFIED: their sizes were
#: not measured here).
MAX_MAC_BYTES = 128 * 2**20
_EXPANSION_RE = re.compile(r"^\d{2,4}(?::\d{2,4})?[A-Z]?(?:/\d{2,4}(?::\d{2,4})?[A-Z]?)*$")


class MacError(GraftmatchError):
    """A MAC file could not be read."""


@dataclass(frozen=True, slots=True)
class MacTable:
    codes: dict[str, str]
    source: str
    updated: str

    def expand(self, locus: str, first_field: str, code: str) -> list[str] | None:
        """Allele names a MAC stands for, or None for an unknown code."""
        expansion = self.codes.get(code)
        if expansion is None:
            return None
        out = []
        for part in expansion.split("/"):
            out.append(f"{locus}*{part}" if ":" in part else f"{locus}*{first_field}:{part}")
        return out


def parse_mac_text(text: str, source: str) -> MacTable:
    """Read the NMDP text layout: a quoted ``LAST UPDATED`` line, a ``CODE SUBTYPE`` header,
    then one tab-separated code and expansion per line (``alpha.v3.txt`` adds a leading ``*``
    column marking codes added since the last list)."""
    codes: dict[str, str] = {}
    updated = ""
    header_seen = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if not header_seen:
            if "LAST UPDATED" in line.upper():
                updated = line.strip('"').split(":", 1)[-1].strip()
            elif "CODE" in line.upper():
                header_seen = True
            continue
        fields = [f for f in re.split(r"\t+|\s{2,}", line) if f and f != "*"]
        if len(fields) != 2 or not _CODE_RE.match(fields[0]) or not _EXPANSION_RE.match(fields[1]):
            raise MacError(f"{source}, line {number}: expected 'CODE<TAB>expansion' such as "
                           f"'AB\t01/02', got {raw!r}")
        codes[fields[0]] = fields[1]
    if not header_seen or not codes:
        raise MacError(f"{source}: no 'CODE SUBTYPE' header and code lines: not an NMDP MAC list")
    return MacTable(codes, source, updated)


def read_mac_file(path: Path) -> MacTable:
    """Read ``numer.v3.txt`` / ``alpha.v3.txt`` or a zip containing one of them."""
    try:
        with path.open("rb") as handle:
            data = _read_capped(handle, str(path))
    except OSError as exc:
        raise MacError(f"cannot read MAC file {path}: {exc}") from exc
    if data[:2] == b"PK":
        data = _unzip(path, data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return parse_mac_text(text, str(path))


def _unzip(path: Path, data: bytes) -> bytes:
    """The first ``.txt`` member of a zip, refused before it is read when it is encrypted or
    larger than :data:`MAX_MAC_BYTES` (a zip bomb)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [m for m in archive.infolist() if m.filename.endswith(".txt")]
            if not members:
                raise MacError(f"{path}: zip holds no .txt MAC list")
            member = members[0]
            if member.flag_bits & 0x1:
                raise MacError(f"{path}: {member.filename} is encrypted; unzip it with its "
                               "password and import the .txt")
            if member.file_size > MAX_MAC_BYTES:
                raise MacError(f"{path}: {member.filename} unpacks to {member.file_size:,} "
                               f"bytes, over the {MAX_MAC_BYTES:,} a MAC list may have")
            with archive.open(member) as handle:
                return _read_capped(handle, f"{path}: {member.filename}")
    except NotImplementedError as exc:
        raise MacError(f"{path}: {exc} (zip compression this reader lacks); unzip it yourself "
                       "and import the .txt") from exc
    except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError) as exc:
        raise MacError(f"{path}: damaged zip ({exc})") from exc


def _read_capped(handle: IO[bytes], what: str) -> bytes:
    data = handle.read(MAX_MAC_BYTES + 1)
    if len(data) > MAX_MAC_BYTES:
        raise MacError(f"{what} is over {MAX_MAC_BYTES:,} bytes: not an NMDP MAC list")
    return data


def mac_store_path(home: Path) -> Path:
    return home / "mac" / "mac.json"


def save_mac_table(table: MacTable, home: Path) -> Path:
    path = mac_store_path(home)
    with atomic_file(path) as handle:
        json.dump({
            "source": table.source, "updated": table.updated,
            "imported": datetime.now(UTC).isoformat(timespec="seconds"), "codes": table.codes,
        }, handle)
    return path


def load_mac_table(home: Path) -> MacTable | None:
    path = mac_store_path(home)
    if not path.exists():
        return None
    try:
        doc = json_loads(path.read_text())
        return MacTable(doc["codes"], doc["source"], doc.get("updated", ""))
    except (OSError, ValueError, KeyError) as exc:
        raise MacError(f"MAC store {path} is damaged ({exc}): import the MAC file again") from exc
