"""An HLA typing as graftmatch holds it: the GL String structure, resolved against a release.

GL String operators, loosest first (Milius et al., Tissue Antigens 2013): ``^`` joins loci of
unknown phase, ``|`` lists alternative genotypes, ``+`` joins the two gene copies, ``~`` phases
alleles of different loci into a haplotype, ``/`` lists alternative alleles. The model mirrors
that nesting. A locus absent from the typing is untyped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class CallKind(StrEnum):
    """How an allele-level element was written; it decides how much a match can be trusted."""

    ALLELE = "allele"  # a full or truncated allele name (A*01:01:01:01, A*01:01)
    G_GROUP = "g-group"
    P_GROUP = "p-group"
    XX = "xx"  # A*02:XX, or a first-field typing A*02
    MAC = "mac"
    SEROLOGY = "serology"


@dataclass(frozen=True, slots=True)
class Call:
    """One allele-level element of a typing.

    ``text`` is its canonical spelling (``HLA-`` dropped, shorthand expanded, renamed alleles
    under their current name); ``alleles`` are the ids, in the release's index, of every
    allele it may be.
    """

    text: str
    locus: str
    kind: CallKind
    alleles: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Notice:
    """Something a lab should know that did not stop the typing being read."""

    message: str
    token: str
    position: int


AlleleList = tuple[Call, ...]
Haplotype = tuple[AlleleList, ...]
Genotype = tuple[Haplotype, ...]
GenotypeList = tuple[Genotype, ...]


@dataclass(frozen=True, slots=True)
class Typing:
    """A whole typing: locus blocks (``^``), each a list of alternative genotypes (``|``)."""

    blocks: tuple[GenotypeList, ...]
    release: str
    notices: tuple[Notice, ...] = field(default=(), compare=False)

    @property
    def loci(self) -> tuple[str, ...]:
        """Typed loci, in the order they appear."""
        seen: dict[str, None] = {}
        for block in self.blocks:
            for genotype in block:
                for haplotype in genotype:
                    for alleles in haplotype:
                        seen.setdefault(alleles[0].locus, None)
        return tuple(seen)

    def to_gl(self) -> str:
        """The typing as a GL String, in canonical spelling."""
        return "^".join(
            "|".join(
                "+".join("~".join("/".join(c.text for c in al) for al in hap) for hap in gt)
                for gt in block
            )
            for block in self.blocks
        )
