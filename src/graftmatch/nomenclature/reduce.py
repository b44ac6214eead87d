"""Reducing typings to G group, P group, 2-field ARD (``lgx``) or serology.

Each allele-level element is expanded to the alleles it may be and every allele is mapped to
its group at the chosen level; the element's result is the sorted set of groups. So a 2-field
name that spans several G groups reduces to all of them, never to a guess.

Null alleles (DOMAIN.md §1.5): they have no P group and stay as their own name at P level; at
serology level an allele with no serological equivalent (nulls, ``?`` in rel_dna_ser, loci
without serology) keeps its molecular name, so the output stays a valid GL String and the
absence of an antigen stays visible. ``lgx`` follows the ARD: a null allele in an expressed
allele's G group reduces with it (A*01:01:01:02N -> A*01:01), as py-ard does; matching works
at P level, where nulls stay distinct. Deliberate differences from py-ard are listed in
docs/adr/0003-reduction-rules.md.
"""

from __future__ import annotations

from enum import StrEnum

from graftmatch.errors import TypingError
from graftmatch.nomenclature.index import NomenclatureIndex
from graftmatch.nomenclature.names import sort_key, sort_names
from graftmatch.typing.model import AlleleList, Call, Typing
from graftmatch.typing.parser import PARALOGUES, TypingReader


class Level(StrEnum):
    G = "G"
    P = "P"
    LGX = "lgx"
    SEROLOGY = "serology"


def per_allele_names(index: NomenclatureIndex, level: Level) -> list[tuple[str, ...]]:
    """The reduction of every allele of the release at ``level``, by allele id."""
    if level is Level.G:
        return [(index.g_group(i),) for i in range(len(index.names))]
    if level is Level.P:
        return [(index.p_group(i),) for i in range(len(index.names))]
    if level is Level.LGX:
        return [(name,) for name in index.lgx]
    return [tuple(ser) or (name,) for ser, name in zip(index.serology, index.names, strict=True)]


class Reducer:
    """Reduces typings at one level. Remembers every element and allele list it has reduced,
    so a registry's repeated allele strings cost one dictionary lookup each."""

    def __init__(self, reader: TypingReader, level: Level) -> None:
        self.reader = reader
        self.level = level
        self._names = per_allele_names(reader.index, level)
        self._calls: dict[str, frozenset[str]] = {}
        # allele-list text -> (locus, reduced text, sort key of its first name)
        self._lists: dict[str, tuple[str, str, tuple[object, ...]]] = {}

    def _call_groups(self, call: Call) -> frozenset[str]:
        groups = self._calls.get(call.text)
        if groups is None:
            names = self._names
            groups = frozenset(g for i in call.alleles for g in names[i])
            self._calls[call.text] = groups
        return groups

    def reduce_list(self, calls: AlleleList) -> str:
        groups: frozenset[str] = frozenset().union(*(self._call_groups(c) for c in calls))
        return "/".join(sort_names(groups))

    def reduce_typing(self, typing: Typing) -> str:
        """Reduce a parsed typing; the two copies of each genotype come out sorted."""
        blocks = []
        for block in typing.blocks:
            genotypes = []
            for genotype in block:
                copies = ["~".join(self.reduce_list(al) for al in hap) for hap in genotype]
                genotypes.append("+".join(sorted(copies, key=_copy_key)))
            blocks.append("|".join(genotypes))
        return "^".join(blocks)

    def reduce_gl(self, text: str) -> str:
        """Reduce a GL String. Registry typings (``^`` and ``+`` of allele lists) take a fast
        path through the cache; anything else, and any error, goes through the full parser,
        so errors always name the token and position."""
        if "|" not in text and "~" not in text and text == text.strip():
            result = self._fast(text)
            if result is None and self._learn(text):
                result = self._fast(text)
            if result is not None:
                return result
        return self.reduce_typing(self.reader.parse(text))

    def _fast(self, text: str) -> str | None:
        """Reduce from cached allele lists only; None when a list is new or the structure
        needs the full parser's checks."""
        cache = self._lists
        out = []
        seen: set[str] = set()
        for block in text.split("^"):
            copies = block.split("+")
            a = cache.get(copies[0])
            if a is None or a[0] in seen:
                return None
            if len(copies) == 1:
                out.append(a[1])
            elif len(copies) == 2:
                b = cache.get(copies[1])
                if b is None or (a[0] != b[0] and not (a[0] in PARALOGUES and b[0] in PARALOGUES)):
                    return None
                out.append(f"{a[1]}+{b[1]}" if a[2] <= b[2] else f"{b[1]}+{a[1]}")
            else:
                return None
            seen.add(a[0])
        return "^".join(out)

    def _learn(self, text: str) -> bool:
        """Reduce and remember the allele lists of ``text`` not seen before; False if one of
        them is invalid (the full parser then reports it with its position)."""
        for block in text.split("^"):
            for piece in block.split("+"):
                if piece in self._lists:
                    continue
                try:
                    calls = self.reader.allele_list(piece, 0, piece, [])
                except TypingError:
                    return False
                reduced = self.reduce_list(calls)
                self._lists[piece] = (calls[0].locus, reduced, _copy_key(reduced))
        return True


def _copy_key(reduced: str) -> tuple[object, ...]:
    """Order the two copies of a genotype by their first name, as nomenclature tables do."""
    return sort_key(reduced.split("/", 1)[0])
