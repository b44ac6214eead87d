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

from collections.abc import Callable, Iterable
from enum import StrEnum

from graftmatch.nomenclature.index import NomenclatureIndex
from graftmatch.nomenclature.names import sort_key, sort_names
from graftmatch.typing.model import AlleleList, Typing
from graftmatch.typing.parser import PARALOGUES, TypingReader


class Level(StrEnum):
    G = "G"
    P = "P"
    LGX = "lgx"
    SEROLOGY = "serology"


def allele_reducer(index: NomenclatureIndex, level: Level) -> Callable[[int], Iterable[str]]:
    """The per-allele reduction at ``level``: allele id -> group name(s)."""
    if level is Level.G:
        return lambda i: (index.g_group(i),)
    if level is Level.P:
        return lambda i: (index.p_group(i),)
    if level is Level.LGX:
        return lambda i: (index.lgx[i],)
    return lambda i: index.serology[i] or (index.names[i],)


class Reducer:
    """Reduces typings at one level. Keeps a cache of every allele list it has reduced, so a
    registry's repeated allele strings cost one dictionary lookup each."""

    def __init__(self, reader: TypingReader, level: Level) -> None:
        self.reader = reader
        self.level = level
        self._per_allele = allele_reducer(reader.index, level)
        # allele-list text -> (locus, reduced text, sort key)
        self._lists: dict[str, tuple[str, str, tuple[object, ...]]] = {}

    def reduce_alleles(self, alleles: Iterable[int]) -> str:
        out: set[str] = set()
        for i in alleles:
            out.update(self._per_allele(i))
        return "/".join(sort_names(out))

    def reduce_list(self, calls: AlleleList) -> str:
        return self.reduce_alleles(i for call in calls for i in call.alleles)

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
        if "|" in text or "~" in text:
            return self.reduce_typing(self.reader.parse(text))
        cache = self._lists
        out = []
        seen: set[str] = set()
        for block in text.split("^"):
            copies = block.split("+")
            if len(copies) == 2:
                a = cache.get(copies[0])
                b = cache.get(copies[1])
                if a is None or b is None or (a[0] != b[0] and not (
                    a[0] in PARALOGUES and b[0] in PARALOGUES
                )):
                    return self._slow(text)
                out.append(f"{a[1]}+{b[1]}" if a[2] <= b[2] else f"{b[1]}+{a[1]}")
            elif len(copies) == 1:
                a = cache.get(block)
                if a is None:
                    return self._slow(text)
                out.append(a[1])
            else:
                return self._slow(text)
            if a[0] in seen:
                return self._slow(text)
            seen.add(a[0])
        return "^".join(out)

    def _slow(self, text: str) -> str:
        typing = self.reader.parse(text)  # raises TypingError with the position
        result = self.reduce_typing(typing)
        stripped = text.strip()
        if stripped == text:
            for block in text.split("^"):
                for piece in block.split("+"):
                    if piece not in self._lists:
                        calls = self.reader.allele_list(piece, 0, piece, [])
                        reduced = self.reduce_list(calls)
                        self._lists[piece] = (calls[0].locus, reduced, _copy_key(reduced))
        return result


def _copy_key(reduced: str) -> tuple[object, ...]:
    """Order the two copies of a genotype by their first name, as nomenclature tables do."""
    return sort_key(reduced.split("/", 1)[0])

