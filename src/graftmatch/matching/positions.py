"""What one typed gene copy (a *position*) may be, in the terms matching needs.

A position is one side of a ``+`` in a typing: an allele list such as ``A*02:01/A*02:09``, an XX
code, a MAC or a serological antigen. Matching never looks at names again after this: it compares
the sets built here (level groups, antigens, sequence facts), so reading a typing once serves
every donor it is compared with.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from graftmatch.matching.policy import MatchPolicy
from graftmatch.nomenclature.index import NomenclatureIndex
from graftmatch.nomenclature.names import is_null, split_name, truncate
from graftmatch.typing.model import AlleleList, CallKind
from graftmatch.typing.parser import PARALOGUES

#: The level key of a position that expresses nothing.
NULL_KEY = "NULL"
#: How a DRB3/4/5 copy is known to be absent: the locus was typed with one copy (the other
#: haplotype lacks the gene), or the side's DRB1 alleles imply the gene is not there.
ABSENT_TYPED = "typed"
ABSENT_IMPLIED = "implied-by-drb1"
_ABSENT_TEXT = {ABSENT_TYPED: "{} absent", ABSENT_IMPLIED: "{} absent (by DRB1)"}


@dataclass(frozen=True, slots=True)
class Position:
    """One gene copy of a typing, as far as the typing tells."""

    text: str
    locus: str
    ids: frozenset[int]
    #: Alleles that may be the copy for matching purposes (nulls dropped from mixed lists under
    #: the default policy).
    expressing: frozenset[int]
    #: True when the copy is certainly not expressed (every allele it may be is null).
    null: bool
    serology: bool
    #: Exactly one molecular allele.
    single: bool
    #: Level groups (P or G) of the expressed alleles; ``{NULL}`` for a null copy.
    keys: frozenset[str]
    #: Serological antigens of the expressed alleles at the policy's antigen mismatch level
    #: (split: associated antigens read as their parent, A203 -> A2; broad: splits read as
    #: their broad, Cw9 -> Cw3); empty when serology is not defined for them.
    antigens: frozenset[str]
    #: ``(pair, side)`` for each permissive pair of the policy this copy belongs to (every
    #: allele it may be is that side's allele): see :func:`.grades.match_code`.
    permissive: frozenset[tuple[int, int]] = frozenset()
    #: For a DRB3/4/5 copy the haplotype lacks: how that is known (:data:`ABSENT_TYPED`,
    #: :data:`ABSENT_IMPLIED`); None for a typed copy.
    absence: str | None = None


class PositionReader:
    """Builds :class:`Position` profiles against one release and policy, remembering each allele
    list it has seen (registries repeat the same lists millions of times)."""

    def __init__(self, index: NomenclatureIndex, policy: MatchPolicy) -> None:
        self.index = index
        self.policy = policy
        self._cache: dict[tuple[str, str], Position] = {}
        self._splits: dict[str, list[str]] = {}
        for split, broad in index.broad_of.items():
            self._splits.setdefault(broad, []).append(split)
        self._carriers = dict(policy.drb345_carriers)
        self._carried: dict[str, frozenset[str]] = {}
        self._absent = {
            _ABSENT_TEXT[how].format(locus): Position(
                text=_ABSENT_TEXT[how].format(locus), locus=locus, ids=frozenset(),
                expressing=frozenset(), null=True, serology=False, single=how == ABSENT_TYPED,
                keys=frozenset({NULL_KEY}), antigens=frozenset(), absence=how)
            for locus in PARALOGUES for how in _ABSENT_TEXT}

    def position(self, alleles: AlleleList) -> Position:
        text = "/".join(c.text for c in alleles)
        key = (alleles[0].locus, text)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._build(alleles, text)
        return found

    def absent(self, locus: str, how: str) -> Position:
        """A DRB3/4/5 copy the haplotype lacks. It matches like a null copy (it expresses
        nothing, so it acts as its partner); typed, it is as sure as a single allele."""
        return self._absent[_ABSENT_TEXT[how].format(locus)]

    def absent_named(self, text: str) -> Position | None:
        """The absent copy shown as ``text`` (as :attr:`Position.text`), if it is one."""
        return self._absent.get(text)

    def carried(self, drb1: Position) -> frozenset[str]:
        """The DRB3/4/5 genes a haplotype with this DRB1 copy may carry, by the policy's
        ``[drb345.carriers]``: the union over the alleles the copy may be, all three for an
        allele no entry covers."""
        found = self._carried.get(drb1.text)
        if found is None:
            found = frozenset().union(*(self._carriers_of(self.index.names[i])
                                        for i in drb1.ids)) if drb1.ids else PARALOGUES
            self._carried[drb1.text] = found
        return found

    def _carriers_of(self, name: str) -> frozenset[str]:
        locus, fields, _ = split_name(name)
        for n in range(len(fields), 0, -1):
            hit = self._carriers.get(f"{locus}*{':'.join(fields[:n])}")
            if hit is not None:
                return hit
        return PARALOGUES

    def _build(self, alleles: AlleleList, text: str) -> Position:
        names = self.index.names
        ids = frozenset(i for call in alleles for i in call.alleles)
        nulls = frozenset(i for i in ids if is_null(names[i]))
        null = nulls == ids
        expressing = ids - nulls
        serology = any(call.kind is CallKind.SEROLOGY for call in alleles)
        antigens = frozenset(a for i in expressing for a in self.split_antigens(i))
        if self.policy.antigen_mismatch_level == "broad":
            antigens = frozenset(self.index.broad_of.get(a, a) for a in antigens)
        permissive: frozenset[tuple[int, int]] = frozenset()
        if expressing and not serology:
            two = {truncate(names[i], 2).rstrip("NLSCAQ") for i in expressing}
            permissive = frozenset((n, side)
                                   for n, pair in enumerate(self.policy.permissive_mismatches)
                                   for side in (0, 1) if two == {pair[side]})
        group = self.index.p_group if self.policy.level == "P" else self.index.g_group
        if null:
            keys = frozenset({NULL_KEY})
        else:
            keys = frozenset(group(i) for i in expressing)
            if self.policy.mixed_null_lists == "keep" and nulls:
                keys |= {NULL_KEY}
        return Position(
            text=text,
            locus=alleles[0].locus,
            ids=ids,
            expressing=expressing,
            null=null,
            serology=serology,
            single=len(ids) == 1 and not serology,
            keys=keys,
            antigens=antigens,
            permissive=permissive,
        )

    def split_antigens(self, i: int) -> tuple[str, ...]:
        """Antigens of allele ``i`` at split level (SI2 of the WMDA framework).

        Broads are dropped when a split is known; an allele assigned only a broad antigen may be
        any of its splits. Associated antigens fold into their parent.
        """
        assigned = self.index.serology[i]
        out: set[str] = set()
        for antigen in assigned:
            if antigen in self._splits:  # a broad
                if not any(a in self._splits[antigen] for a in assigned):
                    out.add(antigen)
                    out.update(self._splits[antigen])
            else:
                out.add(self.index.associated_with.get(antigen, antigen))
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Slot:
    """A position as typed (``typed``) and as it acts in matching (``acting``).

    A null copy acts as its expressed partner: a patient ``A*01:01+A*24:09N`` shows the immune
    system only A*01:01, exactly like a homozygous ``A*01:01+A*01:01`` [17 Atlas, 2024]. An
    absent DRB3/4/5 copy acts the same way: ``DRB4*01:01`` + absent shows only DRB4*01:01.
    """

    typed: Position
    acting: Position


class SequenceFacts:
    """Sequence facts behind the molecular grades, per allele (cached)."""

    def __init__(self, index: NomenclatureIndex) -> None:
        self.index = index

    @cached_property
    def full(self) -> list[bool]:
        return [status[0] == "Full" for status in self.index.status]

    @cached_property
    def gdna(self) -> list[bool]:
        return [status[0] == "Full" and status[1] == "gDNA" for status in self.index.status]

    def fields(self, i: int, n: int) -> str:
        return truncate(self.index.names[i], n)
