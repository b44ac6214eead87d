"""Typings: read (validate) one against the active release, reduce it to a level."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graftmatch.errors import GraftmatchError, TypingError
from graftmatch.nomenclature.reduce import Level, Reducer
from graftmatch.services.reference import open_reader
from graftmatch.typing.model import Typing
from graftmatch.typing.parser import TypingReader

LEVELS = tuple(level.value for level in Level)


def notices_list(typing_: Typing) -> list[dict[str, Any]]:
    """The notices a typing was read with, JSON-ready."""
    return [{"notice": n.message, "token": n.token, "position": n.position}
            for n in typing_.notices]


def read_typing(reader: TypingReader, text: str, role: str | None = None) -> Typing:
    """``text`` read by ``reader``; with ``role`` ("patient", "donor") a refusal says whose
    typing it was."""
    try:
        return reader.parse(text)
    except TypingError as exc:
        if role is None:
            raise
        raise TypingError(f"{role} typing: {exc.reason}", text=exc.text, token=exc.token,
                          position=exc.position) from None


@dataclass(frozen=True)
class Validation:
    """A typing read against the release (a typing that cannot be read raises)."""

    typing: Typing

    def to_dict(self) -> dict[str, Any]:
        t = self.typing
        return {"valid": True, "typing": t.to_gl(), "loci": list(t.loci), "release": t.release,
                "notices": notices_list(t)}


def validate(text: str, reader: TypingReader | None = None) -> Validation:
    """Read a typing against the active release; a :class:`TypingError` names what is wrong
    and where."""
    return Validation((reader or open_reader()).parse(text))


def level_of(value: str | Level) -> Level:
    """A reduction level by its name (G, P, lgx, serology)."""
    try:
        return Level(value)
    except ValueError:
        raise GraftmatchError(f"level {value!r}: expected one of {', '.join(LEVELS)}"
                              ) from None


@dataclass(frozen=True)
class Reduction:
    """A typing (as read, with its notices) and its reduction at ``level``."""

    typing: Typing
    level: Level
    reduced: str

    def to_dict(self) -> dict[str, Any]:
        return {"typing": self.typing.to_gl(), "level": self.level.value,
                "reduced": self.reduced, "release": self.typing.release,
                "notices": notices_list(self.typing)}


def reduce(text: str, level: str | Level = Level.LGX,
           reader: TypingReader | None = None) -> Reduction:
    """Reduce a typing to G groups, P groups, 2-field ARD (lgx) or serology."""
    chosen = level_of(level)
    reader = reader or open_reader()
    typing_ = reader.parse(text)
    return Reduction(typing_, chosen, Reducer(reader, chosen).reduce_typing(typing_))
