"""DPB1 T-cell-epitope (TCE) groups of typed positions, read from IPD-IMGT/HLA's
``tce/dpb_tce.csv`` under the policy's reading of its values."""

from __future__ import annotations

from graftmatch.matching.policy import MatchPolicy
from graftmatch.matching.positions import Position
from graftmatch.nomenclature.index import NomenclatureIndex

#: Any of groups 1-3 (bit g = group g): an allele without a usable assignment.
ANY_GROUP = 0b1110


class TceGroups:
    def __init__(self, index: NomenclatureIndex, policy: MatchPolicy) -> None:
        self.index = index
        self.column = 0 if policy.tce_assignment == "V1" else 1
        self.group_2a = int(policy.tce_group_2a)
        self.use_inferred = policy.tce_use_inferred

    def group(self, name: str) -> int | None:
        """TCE group 1-3 of an expressed allele; None when unassigned."""
        row = self.index.tce.get(name)
        if not row:
            return None
        value = row[self.column]
        if value.endswith("$"):
            if not self.use_inferred:
                return None
            value = value[:-1]
        if value == "2a":
            return self.group_2a
        return int(value) if value in ("1", "2", "3") else None

    def mask(self, position: Position) -> int:
        """Groups the copy may have (bit g = group g); 0 for a copy with no expressed allele."""
        names = self.index.names
        out = 0
        for i in position.expressing:
            g = self.group(names[i])
            out |= ANY_GROUP if g is None else 1 << g
        return out


def mask_label(mask: int) -> str:
    """``0b0110`` -> ``"1/2"``; ``""`` for no group."""
    return "/".join(str(g) for g in range(1, 4) if mask & (1 << g))
