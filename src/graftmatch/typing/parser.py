"""Reading HLA typings in the forms labs and registries send.

Accepted, in GL String structure (``^ | + ~ /``): allele names of 1 to 4 fields with expression
suffixes, truncated names, G and P groups, allele lists and their shorthand (``A*01:06/07``,
``A*01:01/01:02``), XX codes, NMDP MACs (with a user-supplied MAC list), serological antigens
(``A2``, ``Cw4``, ``DR17``, ``DQ7``, ``DR52``), pre-2010 names without colons, and deleted or
renamed alleles (read under their current name, with a notice). Anything else is a
:class:`TypingError` naming the token and its 1-based position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from graftmatch.errors import TypingError
from graftmatch.nomenclature.index import NomenclatureIndex
from graftmatch.nomenclature.mac import MacTable
from graftmatch.nomenclature.serology import PUBLIC_EPITOPES, parse_antigen
from graftmatch.typing.model import (
    AlleleList,
    Call,
    CallKind,
    Genotype,
    GenotypeList,
    Haplotype,
    Notice,
    Typing,
)

_DISALLOWED_RE = re.compile(r"[^A-Za-z0-9*:\-^|+~/]")
#: Bound on the block cache: registry files hold millions of distinct blocks.
MAX_CACHED_BLOCKS = 500_000
#: DRB3, DRB4 and DRB5 are paralogues: a haplotype carries at most one of them, so a genotype
#: ``DRB3*01:01+DRB4*01:01`` pairs different loci legitimately.
PARALOGUES = frozenset({"DRB3", "DRB4", "DRB5"})

_NAME_RE = re.compile(r"^([A-Z][A-Z0-9]*)\*(.*)$")
_FIELDS_RE = re.compile(r"^(\d{2,4}(?::\d{2,4}){1,3})([NLSCAQGP]?)$")
_ONE_FIELD_RE = re.compile(r"^(\d{2,4})$")
_XX_RE = re.compile(r"^(\d{2,4}):XX$")
_MAC_RE = re.compile(r"^(\d{2,4}):([A-Z]{2,5})$")
_V2_RE = re.compile(r"^(\d{4,8})([NLSCAQ]?)$")
_SHORT_RE = re.compile(r"^\d{2,4}(?::\d{2,4}){0,3}[NLSCAQ]?$")


@dataclass(frozen=True, slots=True)
class _Resolved:
    call: Call
    notices: tuple[str, ...]


class _Problem(Exception):
    """A token-level failure; the caller adds the token's position."""


class TypingReader:
    """Parses typings against one release (and optionally a MAC list). Reuse one reader: it
    remembers every token it has resolved, which is what makes registry-scale reading fast."""

    def __init__(self, index: NomenclatureIndex, macs: MacTable | None = None) -> None:
        self.index = index
        self.macs = macs
        self._tokens: dict[tuple[str, str, str], _Resolved] = {}
        self._lists: dict[str, tuple[AlleleList, tuple[tuple[str, int], ...]]] = {}
        #: Locus blocks (``^`` parts) already read, with their notices' offsets in the block:
        #: registry typings repeat the same blocks across many donors.
        self._blocks: dict[str, tuple[GenotypeList, tuple[tuple[str, str, int], ...]]] = {}

    # -- whole typings --------------------------------------------------------------------
    def parse(self, text: str) -> Typing:
        stripped = text.strip()
        offset = len(text) - len(text.lstrip())
        if not stripped:
            raise TypingError("empty typing", text=text, token="", position=1)
        bad = _DISALLOWED_RE.search(stripped)
        if bad:
            ch, i = bad.group(), bad.start()
            why = ("GL String 1.1 '?' (gene-location ambiguity) is not supported" if ch == "?"
                   else "unexpected space" if ch.isspace() else "unexpected character")
            raise TypingError(why, text=text, token=ch, position=offset + i + 1)
        notices: list[Notice] = []
        blocks: list[GenotypeList] = []
        block_loci: dict[str, int] = {}
        for block_text, block_pos in _split(stripped, offset, "^", text):
            block = self._block(block_text, block_pos, text, notices)
            for locus in dict.fromkeys(_genotype_loci(block[0])):
                if locus in block_loci:
                    raise TypingError(f"locus {locus} is typed twice", text=text,
                                      token=block_text, position=block_pos + 1)
                block_loci[locus] = block_pos
            blocks.append(block)
        return Typing(tuple(blocks), self.index.release, tuple(notices))

    def _block(self, s: str, pos: int, text: str, notices: list[Notice]) -> GenotypeList:
        """One ``^`` block, from the cache when this exact block was read before."""
        hit = self._blocks.get(s)
        if hit is None:
            own: list[Notice] = []
            block = self._genotype_list(s, pos, text, own)
            if len(self._blocks) >= MAX_CACHED_BLOCKS:
                self._blocks.clear()
            hit = self._blocks[s] = (block, tuple((n.message, n.token, n.position - pos)
                                                  for n in own))
        notices.extend(Notice(message, token, pos + rel) for message, token, rel in hit[1])
        return hit[0]

    def _genotype_list(self, s: str, pos: int, text: str, notices: list[Notice]) -> GenotypeList:
        genotypes: list[Genotype] = []
        loci: frozenset[str] | None = None
        for gt_text, gt_pos in _split(s, pos, "|", text):
            genotype = self._genotype(gt_text, gt_pos, text, notices)
            these = frozenset(_genotype_loci(genotype))
            if loci is not None and _fold(these) != _fold(loci):
                raise TypingError("alternative genotypes ('|') must cover the same loci",
                                  text=text, token=gt_text, position=gt_pos + 1)
            loci = these
            genotypes.append(genotype)
        return tuple(genotypes)

    def _genotype(self, s: str, pos: int, text: str, notices: list[Notice]) -> Genotype:
        copies = _split(s, pos, "+", text)
        if len(copies) > 2:
            third_text, third_pos = copies[2]
            raise TypingError("a genotype has at most two gene copies ('+')", text=text,
                              token=third_text, position=third_pos + 1)
        haplotypes = [self._haplotype(h, p, text, notices) for h, p in copies]
        if len(haplotypes) == 2:
            first = [al[0].locus for al in haplotypes[0]]
            second = [al[0].locus for al in haplotypes[1]]
            if len(first) != len(second) or any(
                a != b and not (a in PARALOGUES and b in PARALOGUES)
                for a, b in zip(first, second, strict=False)
            ):
                raise TypingError(
                    f"the two gene copies are of different loci ({'~'.join(first)} and "
                    f"{'~'.join(second)})", text=text, token=copies[1][0],
                    position=copies[1][1] + 1)
        return tuple(haplotypes)

    def _haplotype(self, s: str, pos: int, text: str, notices: list[Notice]) -> Haplotype:
        lists: list[AlleleList] = []
        seen: set[str] = set()
        for al_text, al_pos in _split(s, pos, "~", text):
            alleles = self.allele_list(al_text, al_pos, text, notices)
            locus = alleles[0].locus
            if locus in seen:
                raise TypingError(f"locus {locus} appears twice in one haplotype ('~')",
                                  text=text, token=al_text, position=al_pos + 1)
            seen.add(locus)
            lists.append(alleles)
        return tuple(lists)

    def allele_list(self, s: str, pos: int, text: str, notices: list[Notice]) -> AlleleList:
        """Resolve one ``/``-separated list; remembered by its text for reuse."""
        cached = self._lists.get(s)
        if cached is None:
            cached = self._resolve_list(s, pos, text)
            self._lists[s] = cached
        calls, list_notices = cached
        for message, rel in list_notices:
            token = s[rel:].split("/", 1)[0]
            notices.append(Notice(message, token, pos + rel + 1))
        return calls

    def _resolve_list(
        self, s: str, pos: int, text: str
    ) -> tuple[AlleleList, tuple[tuple[str, int], ...]]:
        calls: list[Call] = []
        found: list[tuple[str, int]] = []
        locus = first_field = ""
        for token, tpos in _split(s, pos, "/", text):
            try:
                resolved = self._resolve(token, locus, first_field)
            except _Problem as exc:
                raise TypingError(str(exc), text=text, token=token, position=tpos + 1) from None
            call = resolved.call
            if locus and call.locus != locus:
                raise TypingError(f"allele list ('/') mixes loci {locus} and {call.locus}",
                                  text=text, token=token, position=tpos + 1)
            if not locus:
                locus = call.locus
                first_field = _first_field(call.text)
            calls.append(call)
            found.extend((message, tpos - pos) for message in resolved.notices)
        return tuple(calls), tuple(found)

    # -- single tokens --------------------------------------------------------------------
    def _resolve(self, token: str, locus: str, first_field: str) -> _Resolved:
        key = (token, locus, first_field) if "*" not in token else (token, "", "")
        hit = self._tokens.get(key)
        if hit is None:
            hit = self._resolve_uncached(token, locus, first_field)
            self._tokens[key] = hit
        return hit

    def _resolve_uncached(self, token: str, locus: str, first_field: str) -> _Resolved:
        upper = token.upper()
        if upper.startswith("HLA-"):
            upper = upper[4:]
        if "*" not in upper:
            if locus and _SHORT_RE.match(upper):  # shorthand inside an allele list
                name = f"{locus}*{upper}" if ":" in upper else f"{locus}*{first_field}:{upper}"
                return self._molecular(name)
            if upper in PUBLIC_EPITOPES:
                raise _Problem(f"{token} is a public epitope shared by many HLA-A/B antigens, "
                               "not an antigen of one locus")
            antigen = parse_antigen(upper)
            if antigen is None:
                raise _Problem("not an HLA allele, group, code or serological antigen")
            name, ser_locus = antigen
            members = self.index.antigen_members.get(name)
            if not members:
                raise _Problem(f"unknown serological antigen {name} in IPD-IMGT/HLA "
                               f"{self.index.release}")
            return _Resolved(Call(name, ser_locus, CallKind.SEROLOGY, members), ())
        return self._molecular(upper)

    def _molecular(self, name: str) -> _Resolved:
        m = _NAME_RE.match(name)
        if not m:
            raise _Problem("not an HLA allele name")
        locus, rest = m.groups()
        ix = self.index
        if locus not in ix.loci:
            raise _Problem(f"unknown locus {locus} (IPD-IMGT/HLA {ix.release} has "
                           f"{', '.join(ix.loci[:12])}, ...)")
        if rest.rpartition(":")[2] == "NEW":  # A*NEW, A*01:NEW: reserved, not a MAC
            raise _Problem("an allele not yet named (NEW) cannot be interpreted")
        if xx := _XX_RE.match(rest):
            return self._xx(locus, xx.group(1))
        # A bare number is a first-field typing (A*02, DPB1*1000) when such a first field
        # exists; four digits otherwise are a pre-2010 name (A*0101).
        if _ONE_FIELD_RE.match(rest) and (len(rest) < 4 or f"{locus}*{rest}" in ix.by_prefix):
            return self._xx(locus, rest)
        if mac := _MAC_RE.match(rest):
            return self._mac(locus, mac.group(1), mac.group(2))
        if v2 := _V2_RE.match(rest):
            return self._v2(name, locus, v2.group(1), v2.group(2))
        if not _FIELDS_RE.match(rest):
            raise _Problem("malformed allele name (expected LOCUS*01:01, 1 to 4 fields of "
                           "digits and an optional N/L/S/C/A/Q suffix)")
        if rest.endswith("G"):
            members = ix.g_members.get(name)
            if not members:
                raise _Problem(f"unknown G group in IPD-IMGT/HLA {ix.release}")
            return _Resolved(Call(name, locus, CallKind.G_GROUP, members), ())
        if rest.endswith("P"):
            members = ix.p_members.get(name)
            if not members:
                raise _Problem(f"unknown P group in IPD-IMGT/HLA {ix.release}")
            return _Resolved(Call(name, locus, CallKind.P_GROUP, members), ())
        return self._allele(name, locus)

    def _allele(self, name: str, locus: str) -> _Resolved:
        ix = self.index
        members = ix.by_prefix.get(name)
        if members:
            return _Resolved(Call(name, locus, CallKind.ALLELE, members), ())
        deletion = ix.deleted.get(name)
        if deletion is not None:
            replaced_by, reason = deletion
            if not replaced_by:
                raise _Problem(f"allele deleted from IPD-IMGT/HLA ({reason})")
            current = replaced_by[0]
            resolved = self._allele(current, locus)
            return _Resolved(resolved.call,
                             (f"{name} is no longer a current name; read as {current} "
                              f"({reason})", *resolved.notices))
        hint = next((name + s for s in "NLSQ" if name + s in ix.by_prefix), None)
        if hint is None and name[-1] in "NLSCAQ" and name[:-1] in ix.by_prefix:
            hint = name[:-1]
        raise _Problem(f"unknown allele in IPD-IMGT/HLA {ix.release}"
                       + (f" (did you mean {hint}?)" if hint else ""))

    def _xx(self, locus: str, first: str) -> _Resolved:
        members = self.index.by_prefix.get(f"{locus}*{first}")
        if not members:
            raise _Problem(f"no {locus}*{first} alleles in IPD-IMGT/HLA {self.index.release}")
        return _Resolved(Call(f"{locus}*{first}:XX", locus, CallKind.XX, members), ())

    def _mac(self, locus: str, first: str, code: str) -> _Resolved:
        if self.macs is None:
            raise _Problem(f"{code} is an NMDP multiple allele code, and no MAC list has been "
                           "imported: run 'graftmatch hla import-mac FILE'")
        expansion = self.macs.expand(locus, first, code)
        if expansion is None:
            raise _Problem(f"unknown MAC code {code} (MAC list from {self.macs.source})")
        ids: set[int] = set()
        skipped = []
        for name in expansion:
            members = self.index.by_prefix.get(name)
            if members:
                ids.update(members)
            else:
                skipped.append(name)
        if not ids:
            raise _Problem(f"MAC {code} expands to {'/'.join(expansion)}, none of which is an "
                           f"allele of IPD-IMGT/HLA {self.index.release}")
        notices = ((f"MAC {code}: {', '.join(skipped)} not in IPD-IMGT/HLA "
                    f"{self.index.release}, ignored",) if skipped else ())
        call = Call(f"{locus}*{first}:{code}", locus, CallKind.MAC, tuple(sorted(ids)))
        return _Resolved(call, notices)

    def _v2(self, name: str, locus: str, digits: str, suffix: str) -> _Resolved:
        """Pre-April-2010 names had no colons (A*0101, B*15101). Split the digits every way
        the old scheme allowed and accept the reading only when exactly one is a name."""
        deletion = self.index.deleted.get(name)
        if deletion is not None and deletion[0]:
            resolved = self._allele(deletion[0][0], locus)
            return _Resolved(resolved.call, (f"{name} is an old name; read as "
                                             f"{deletion[0][0]} ({deletion[1]})",))
        readings = {
            candidate
            for parts in _v2_splits(digits)
            if (candidate := f"{locus}*{':'.join(parts)}{suffix}") in self.index.by_prefix
        }
        if len(readings) != 1:
            why = "matches no current allele" if not readings else (
                "could be " + " or ".join(sorted(readings)))
            raise _Problem(f"pre-2010 name without colons that {why}; send the current name")
        current = readings.pop()
        resolved = self._allele(current, locus)
        return _Resolved(resolved.call, (f"pre-2010 name {name} read as {current}",))


def _v2_splits(digits: str) -> list[list[str]]:
    """Ways to cut old-style digits into fields: field 1 two digits, later fields 2 or 3."""
    out: list[list[str]] = []

    def walk(rest: str, parts: list[str]) -> None:
        if not rest:
            if 2 <= len(parts) <= 4:
                out.append(parts)
            return
        for width in (2, 3):
            if len(rest) >= width:
                walk(rest[width:], [*parts, rest[:width]])

    walk(digits[2:], [digits[:2]])
    return out


def _split(s: str, start: int, sep: str, text: str) -> list[tuple[str, int]]:
    """Split on ``sep`` keeping each piece's 0-based offset in the whole typing."""
    out = []
    pos = start
    for piece in s.split(sep):
        if not piece:
            where = min(pos, start + len(s) - 1)
            raise TypingError(f"empty element next to '{sep}'", text=text, token=sep,
                              position=where + 1)
        out.append((piece, pos))
        pos += len(piece) + 1
    return out


def _first_field(text: str) -> str:
    return text.partition("*")[2].split(":", 1)[0]


def _genotype_loci(genotype: Genotype) -> list[str]:
    return [al[0].locus for hap in genotype for al in hap]


def _fold(loci: frozenset[str]) -> frozenset[str]:
    """Loci with the DRB3/4/5 paralogues counted as one, for comparing alternatives."""
    return frozenset("DRB3/4/5" if locus in PARALOGUES else locus for locus in loci)
