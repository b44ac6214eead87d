"""Passwords (Argon2id, argon2-cffi), password rules, API tokens and login throttling."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from graftmatch.errors import GraftmatchError

#: argon2-cffi's defaults are RFC 9106's second recommended profile (Argon2id, t=3,
#: m=64 MiB, p=4). Argon2id is the type of hash made.
_HASHER = PasswordHasher()
TOKEN_PREFIX = "gmt_"
#: A few passwords no one may choose (the commonest of breach lists; NIST SP 800-63B asks
#: verifiers to refuse passwords from such lists).
COMMON = frozenset({"password", "123456", "12345678", "123456789", "1234567890", "qwerty",
                    "letmein", "welcome", "admin", "iloveyou", "passwordpassword",
                    "123456789012345", "qwertyuiopasdfg"})


class PasswordRefused(GraftmatchError):
    """A new password that breaks the password rules."""


@cache
def settings() -> dict[str, Any]:
    text = resources.files("graftmatch.access").joinpath("access.toml").read_text()
    return tomllib.loads(text)


def check_password(password: str, *, username: str = "", display_name: str = "") -> None:
    """Refuse a password that is too short, too long, common, or the account's own name; no
    composition rules (NIST SP 800-63B)."""
    rules = settings()["password"]
    if len(password) < rules["min_length"]:
        raise PasswordRefused(f"password: at least {rules['min_length']} characters, please "
                              f"(it has {len(password)})")
    if len(password) > rules["max_length"]:
        raise PasswordRefused(f"password: at most {rules['max_length']} characters")
    lowered = password.lower()
    if lowered in COMMON or len(set(password)) < 3:
        raise PasswordRefused("password: too common or too repetitive; choose another")
    if lowered in {username.lower(), display_name.lower()}:
        raise PasswordRefused("password: must not be the username or the display name")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


_DUMMY: list[str] = []


def burn_time(password: str) -> None:
    """Verify against a dummy hash, so an unknown username takes as long as a wrong
    password."""
    if not _DUMMY:
        _DUMMY.append(hash_password("graftmatch-dummy-password"))
    verify_password(_DUMMY[0], password)


def new_token() -> str:
    """A new API token: 256 random bits, shown once, stored only as :func:`token_digest`."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Throttle:
    max_failures: int
    window: dt.timedelta
    lockout: dt.timedelta

    @classmethod
    def from_settings(cls) -> Throttle:
        t = settings()["throttle"]
        return cls(int(t["max_failures"]), dt.timedelta(minutes=t["window_minutes"]),
                   dt.timedelta(minutes=t["lockout_minutes"]))

    def locked_until(self, failures: list[dt.datetime], now: dt.datetime
                     ) -> dt.datetime | None:
        """When the account opens again, given the times of its failed logins since its last
        success (None: not locked). ``max_failures`` failures within ``window`` lock it for
        ``lockout`` after the last of them."""
        recent = sorted(f for f in failures if f > now - self.window - self.lockout)
        for i in range(len(recent) - self.max_failures + 1):
            run = recent[i:i + self.max_failures]
            if run[-1] - run[0] <= self.window:
                until = recent[-1] + self.lockout
                if until > now:
                    return until
        return None
