"""The project's error types: every failure a user can cause is one of these."""

from __future__ import annotations


class GraftmatchError(Exception):
    """Base class for every error graftmatch raises on purpose."""


class ReleaseError(GraftmatchError):
    """An IPD-IMGT/HLA release is missing, incomplete, corrupt or unreadable."""


class TypingError(GraftmatchError):
    """An HLA typing could not be read.

    ``token`` is the offending text and ``position`` its 1-based column in ``text``, so a lab
    can find the mistake in the string it sent.
    """

    def __init__(self, reason: str, *, text: str, token: str, position: int) -> None:
        self.reason = reason
        self.text = text
        self.token = token
        self.position = position
        super().__init__(f"{reason}: {token!r} at position {position}")

    def to_dict(self) -> dict[str, object]:
        return {"error": self.reason, "token": self.token, "position": self.position,
                "typing": self.text}
