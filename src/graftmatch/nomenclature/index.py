"""The compiled nomenclature index of one IPD-IMGT/HLA release.

Reading the raw release files takes a few seconds, so they are compiled once into a single JSON
document in the user's cache (never into the project: the data are CC BY-ND) and reloaded from
there in well under a second. Every allele gets an integer id; reductions (G, P, lgx, serology)
are precomputed per allele, and name lookups are built from those arrays on load.
See docs/adr/0002-nomenclature-index.md.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from graftmatch.atomic import atomic_file
from graftmatch.errors import ReleaseError
from graftmatch.nesting import json_loads
from graftmatch.nomenclature import imgt_files
from graftmatch.nomenclature.names import sort_key, split_name, truncate
from graftmatch.nomenclature.serology import REL_SER_SER_PREFIX, antigen_name

#: Bump when the compiled layout changes; stale caches are then rebuilt, never misread.
SCHEMA = 3

_RENAMED_TO_RE = re.compile(r"([A-Z][A-Z0-9]*\*\d[\d:]*[A-Z]?)")


@dataclass(frozen=True, slots=True)
class Deletion:
    """A name removed from the nomenclature: its current replacement(s) and why."""

    name: str
    replaced_by: tuple[str, ...]
    reason: str


def compile_release(root: Path) -> dict[str, Any]:
    """Read a release folder and build the index document."""
    version, date = imgt_files.release_version(root)

    listed = imgt_files.read_allele_list(root)
    listed.sort(key=lambda row: sort_key(row[1]))
    names = [name for _, name in listed]
    id_of = {name: i for i, name in enumerate(names)}
    if len(id_of) != len(names):
        raise ReleaseError(f"{root / 'Allelelist.txt'}: an allele name is listed twice")

    status = imgt_files.read_allele_status(root)

    def group_arrays(kind: str) -> tuple[list[str], list[int]]:
        group_names: list[str] = []
        member_of = [-1] * len(names)
        for group, members in imgt_files.read_groups(root, kind):
            gid = len(group_names)
            group_names.append(group)
            for member in members:
                i = id_of.get(member)
                if i is None:
                    raise ReleaseError(
                        f"hla_nom_{kind.lower()}.txt: {member} (group {group}) is not in "
                        "Allelelist.txt"
                    )
                member_of[i] = gid
        return group_names, member_of

    g_names, g_of = group_arrays("g")
    p_names, p_of = group_arrays("p")

    lgx = _lgx_names(names, g_of, p_names, p_of)

    broad_of: dict[str, str] = {}
    associated_with: dict[str, str] = {}
    for ser_locus, antigen, splits, associated in imgt_files.read_rel_ser_ser(root):
        prefix = REL_SER_SER_PREFIX.get(ser_locus)
        if prefix is None:  # Dw: cellular (MLR) specificities, not antigens
            continue
        for split in splits:
            broad_of[prefix + split] = prefix + antigen
        for assoc in associated:
            associated_with[prefix + assoc.lstrip("0")] = prefix + antigen

    serology: list[list[str]] = [[] for _ in names]
    for allele, *assignments in imgt_files.read_rel_dna_ser(root):
        i = id_of.get(allele)
        if i is None:
            raise ReleaseError(f"rel_dna_ser.txt: {allele} is not in Allelelist.txt")
        locus = allele.partition("*")[0]
        antigens: set[str] = set()
        # Unambiguous, possible and assumed equivalents; expert-assigned exceptions (4th
        # field) are registry-specific search determinants, not equivalents.
        for field in assignments[:3]:
            for number in field.split("/"):
                if number in ("", "0", "?"):
                    continue
                name = antigen_name(locus, number)
                if name:
                    antigens.add(name)
        for antigen in list(antigens):
            broad = broad_of.get(antigen)
            if broad:
                antigens.add(broad)
        serology[i] = sorted(antigens, key=sort_key)

    deletions = _deletions(root, id_of)
    tce = {allele: list(v) for allele, v in imgt_files.read_dpb_tce(root).items()}

    return {
        "schema": SCHEMA,
        "release": version,
        "date": date,
        "names": names,
        "accession": [acc for acc, _ in listed],
        "status": [list(status.get(name, ("", "", ""))[:2]) for name in names],
        "g_names": g_names,
        "g_of": g_of,
        "p_names": p_names,
        "p_of": p_of,
        "lgx": lgx,
        "serology": serology,
        "broad_of": broad_of,
        "associated_with": associated_with,
        "deleted": {d.name: [list(d.replaced_by), d.reason] for d in deletions},
        "tce": tce,
    }


def _lgx_names(names: list[str], g_of: list[int], p_names: list[str], p_of: list[int]) -> list[str]:
    """The ``lgx`` (2-field ARD) name of every allele.

    A G group is named after its lowest-numbered member's 2 fields. WHO group names stick when
    their naming allele is renamed or a lower-numbered allele joins (C*02:10:01G holds
    C*02:02:37), so the published name is not used. Alleles sharing 2 fields share one protein,
    hence one ARD: when their alleles sit in several G groups, the lowest group name wins, so
    that a 2-field name always has one lgx. py-ard 2.4 follows the same two rules. Alleles of
    loci with no G groups in the release (pseudogenes, DPA2...) are not reduced.
    """
    def two_fields(name: str) -> str:
        return truncate(name, 2).rstrip("NLSCAQ")

    lowest: dict[int, str] = {}
    for i, name in enumerate(names):  # names are in nomenclature order: first seen is lowest
        if g_of[i] >= 0:
            lowest.setdefault(g_of[i], two_fields(name))
    by_protein: dict[str, str] = {}
    for i, name in enumerate(names):
        if g_of[i] >= 0:
            key = two_fields(name)
            current = by_protein.get(key)
            if current is None or sort_key(lowest[g_of[i]]) < sort_key(current):
                by_protein[key] = lowest[g_of[i]]
    grouped_loci = {names[i].partition("*")[0] for i in range(len(names)) if g_of[i] >= 0}
    out = []
    for i, name in enumerate(names):
        if g_of[i] >= 0:
            out.append(by_protein[two_fields(name)])
        elif name.partition("*")[0] not in grouped_loci:
            out.append(name)
        elif two_fields(name) in by_protein:  # e.g. DRB5*01:08:02N beside DRB5*01:08:01
            out.append(by_protein[two_fields(name)])
        elif p_of[i] >= 0:
            out.append(truncate(p_names[p_of[i]][:-1], 2))
        else:
            out.append(truncate(name, 2))
    return out


def _deletions(root: Path, id_of: dict[str, int]) -> list[Deletion]:
    """Deleted names with their current replacements, following chains of renames."""
    reasons = {name: why for _, name, why in imgt_files.read_deleted_alleles(root)}
    target: dict[str, str] = {}
    for name, date_deleted, identical_to, reason in imgt_files.read_hla_nom(root):
        if not date_deleted or name in id_of:
            continue
        locus = name.partition("*")[0]
        new = f"{locus}*{identical_to}" if identical_to else ""
        if not new and name in reasons and "renamed" in reasons[name]:
            m = _RENAMED_TO_RE.search(reasons[name].split("renamed", 1)[1])
            new = m.group(1) if m else ""
        target[name] = new
        reasons.setdefault(name, reason)
    out = []
    for name, new in target.items():
        seen = {name}
        while new and new not in id_of and new in target and new not in seen:
            seen.add(new)
            new = target[new]
        replaced = (new,) if new in id_of else ()
        out.append(Deletion(name, replaced, reasons.get(name, "deleted")))
    return out


class NomenclatureIndex:
    """Lookups over one compiled release. Immutable once loaded; safe to share."""

    def __init__(self, doc: dict[str, Any], *, source: str = "") -> None:
        if doc.get("schema") != SCHEMA:
            raise ReleaseError("nomenclature index has an old layout; it will be rebuilt")
        self._doc = doc
        self.release: str = doc["release"]
        self.date: str = doc["date"]
        self.source = source
        self.names: list[str] = doc["names"]
        self.accession: list[str] = doc["accession"]
        self.status: list[list[str]] = doc["status"]
        self.g_names: list[str] = doc["g_names"]
        self.g_of: list[int] = doc["g_of"]
        self.p_names: list[str] = doc["p_names"]
        self.p_of: list[int] = doc["p_of"]
        self.lgx: list[str] = doc["lgx"]
        self.serology: list[list[str]] = doc["serology"]
        self.broad_of: dict[str, str] = doc["broad_of"]
        self.associated_with: dict[str, str] = doc["associated_with"]
        self.deleted: dict[str, list[Any]] = doc["deleted"]
        self.tce: dict[str, list[str]] = doc["tce"]
        self.id_of: dict[str, int] = {name: i for i, name in enumerate(self.names)}

    # -- building and caching -------------------------------------------------------------
    @classmethod
    def compile(cls, root: Path) -> NomenclatureIndex:
        return cls(compile_release(root), source=str(root))

    def save(self, path: Path) -> None:
        """Write the index atomically: a reader never sees a half-written file."""
        with atomic_file(path) as handle:
            json.dump(self._doc, handle, separators=(",", ":"))

    @classmethod
    def load(cls, path: Path, *, source: str = "") -> NomenclatureIndex:
        try:
            with path.open(encoding="utf-8") as handle:
                doc = json_loads(handle.read())
        except (OSError, ValueError) as exc:
            raise ReleaseError(f"cannot read nomenclature index {path}: {exc}") from exc
        return cls(doc, source=source)

    # -- lookups built on first use -------------------------------------------------------
    @cached_property
    def loci(self) -> list[str]:
        return sorted({name.partition("*")[0] for name in self.names}, key=sort_key)

    @cached_property
    def by_prefix(self) -> dict[str, tuple[int, ...]]:
        """Every truncation of every name (suffix kept) -> the alleles it covers.

        One-field keys (``A*02``) carry no suffix and cover nulls too: they back XX codes.
        """
        table: defaultdict[str, list[int]] = defaultdict(list)
        for i, name in enumerate(self.names):
            locus, fields, suffix = split_name(name)
            table[f"{locus}*{fields[0]}"].append(i)
            for k in range(2, len(fields) + 1):
                table[f"{locus}*{':'.join(fields[:k])}{suffix}"].append(i)
        return {key: tuple(ids) for key, ids in table.items()}

    @cached_property
    def g_members(self) -> dict[str, tuple[int, ...]]:
        return self._members(self.g_names, self.g_of)

    @cached_property
    def p_members(self) -> dict[str, tuple[int, ...]]:
        return self._members(self.p_names, self.p_of)

    @staticmethod
    def _members(group_names: list[str], member_of: list[int]) -> dict[str, tuple[int, ...]]:
        table: defaultdict[str, list[int]] = defaultdict(list)
        for i, gid in enumerate(member_of):
            if gid >= 0:
                table[group_names[gid]].append(i)
        return {key: tuple(ids) for key, ids in table.items()}

    @cached_property
    def antigen_members(self) -> dict[str, tuple[int, ...]]:
        """Serological antigen -> alleles that carry it.

        A broad antigen covers its splits' alleles (already in each allele's list), and an
        antigen covers its associated antigens' alleles: a lab reporting A2 may have typed an
        A203, so a serological typing is read generously and matched as a potential match.
        """
        table: defaultdict[str, list[int]] = defaultdict(list)
        for i, antigens in enumerate(self.serology):
            covering = set(antigens)
            for antigen in antigens:
                parent = self.associated_with.get(antigen)
                if parent:
                    covering.add(parent)
                    covering.add(self.broad_of.get(parent, parent))
            for antigen in covering:
                table[antigen].append(i)
        return {key: tuple(ids) for key, ids in table.items()}

    # -- per-allele facts -----------------------------------------------------------------
    def g_group(self, i: int) -> str:
        """G group of allele ``i``; an allele in no G group is its own group."""
        gid = self.g_of[i]
        return self.g_names[gid] if gid >= 0 else self.names[i]

    def p_group(self, i: int) -> str:
        """P group of allele ``i``; nulls and ungrouped alleles stand for themselves."""
        pid = self.p_of[i]
        return self.p_names[pid] if pid >= 0 else self.names[i]

    def counts_per_locus(self) -> dict[str, int]:
        counts: defaultdict[str, int] = defaultdict(int)
        for name in self.names:
            counts[name.partition("*")[0]] += 1
        return dict(counts)
