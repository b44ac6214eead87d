"""Accounts: create users, set passwords, disable, list; log in (throttled); API tokens.

Every function takes the caller (:class:`~graftmatch.access.roles.Identity`), checks the
permission table, and writes an audit row, whatever the outcome. Nothing returned carries a
password hash or a token's digest; a new token's secret is returned once, by
:func:`create_token`, and never stored.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from graftmatch.access.roles import CENTRE_ROLES, Identity, Role, require
from graftmatch.access.secrets import (
    Throttle,
    burn_time,
    check_password,
    hash_password,
    new_token,
    token_digest,
    verify_password,
)
from graftmatch.database import Database
from graftmatch.database.tables import api_tokens, centres, login_attempts, users
from graftmatch.errors import GraftmatchError
from graftmatch.services.audit import append, audited

USERNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-@")


class AccountError(GraftmatchError):
    """An account request that cannot be done (unknown user, bad field, duplicate)."""


class LoginRefused(GraftmatchError):
    """A login or token that does not let the caller in. The message never says whether
    the username exists."""


@dataclass(frozen=True)
class User:
    username: str
    display_name: str
    role: str
    centre: str | None
    disabled: bool
    created_at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {"username": self.username, "display_name": self.display_name,
                "role": self.role, "centre": self.centre, "disabled": self.disabled,
                "created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class Token:
    id: int
    username: str
    name: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "username": self.username, "name": self.name,
                "created_at": self.created_at.isoformat(),
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _check_username(username: str) -> None:
    if not 1 <= len(username) <= 64 or not set(username) <= USERNAME_CHARS:
        raise AccountError("username: 1 to 64 of a-z, 0-9 and . _ - @")


def _user_row(conn: Connection, username: str) -> Row[Any]:
    row = conn.execute(select(users, centres.c.code.label("centre_code"))
                       .outerjoin(centres, centres.c.id == users.c.centre_id)
                       .where(users.c.username == username)).first()
    if row is None:
        raise AccountError(f"username: no user {username!r}")
    return row


def _user(row: Any) -> User:
    return User(row.username, row.display_name, row.role, row.centre_code, bool(row.disabled),
                _utc(row.created_at))


def _identity(row: Any, source: str) -> Identity:
    return Identity(row.username, Role(row.role), row.centre_code, source)


def create_user(db: Database, caller: Identity, username: str, display_name: str, role: str,
                password: str, *, centre: str | None = None) -> User:
    """A new account. Coordinators and HLA laboratories belong to a centre; other roles see
    every centre."""
    with audited(db, caller, "users.create", f"user {username}") as note:
        require(caller, "users.manage")
        _check_username(username)
        if not display_name.strip() or len(display_name) > 200:
            raise AccountError("display_name: 1 to 200 characters")
        try:
            chosen = Role(role)
        except ValueError:
            raise AccountError(f"role: one of {', '.join(r.value for r in Role)}") from None
        if chosen in CENTRE_ROLES and centre is None:
            raise AccountError(f"centre: a user of role {chosen.value!r} belongs to a centre")
        check_password(password, username=username, display_name=display_name)
        digest = hash_password(password)
        now = _now()
        with db.begin() as conn:
            centre_id = None
            if centre is not None:
                centre_id = conn.execute(select(centres.c.id)
                                         .where(centres.c.code == centre)).scalar()
                if centre_id is None:
                    raise AccountError(f"centre: {centre!r} is not a centre of this database")
            if conn.execute(select(users.c.id).where(users.c.username == username)).first():
                raise AccountError(f"username: {username!r} exists already")
            conn.execute(insert(users).values(
                username=username, display_name=display_name, role=chosen.value,
                centre_id=centre_id, password_hash=digest, disabled=False, created_at=now,
                password_changed_at=now))
            note.write(conn)
            return _user(_user_row(conn, username))


def list_users(db: Database, caller: Identity) -> list[User]:
    with audited(db, caller, "users.list", None):
        require(caller, "users.manage")
        with db.read() as conn:
            rows = conn.execute(select(users, centres.c.code.label("centre_code"))
                                .outerjoin(centres, centres.c.id == users.c.centre_id)
                                .order_by(users.c.username)).all()
        return [_user(r) for r in rows]


def set_password(db: Database, caller: Identity, username: str, password: str) -> User:
    with audited(db, caller, "users.password", f"user {username}") as note:
        require(caller, "users.manage")
        with db.begin() as conn:
            row = _user_row(conn, username)
            check_password(password, username=username, display_name=row.display_name)
            conn.execute(update(users).where(users.c.id == row.id).values(
                password_hash=hash_password(password), password_changed_at=_now()))
            note.write(conn)
            return _user(row)


def disable_user(db: Database, caller: Identity, username: str) -> User:
    """Disable the account: its logins and its tokens are refused from now on."""
    with audited(db, caller, "users.disable", f"user {username}") as note:
        require(caller, "users.manage")
        with db.begin() as conn:
            row = _user_row(conn, username)
            conn.execute(update(users).where(users.c.id == row.id).values(disabled=True))
            note.write(conn)
            return _user(_user_row(conn, username))


def login(db: Database, username: str, password: str, *, source: str,
          throttle: Throttle | None = None, now: dt.datetime | None = None) -> Identity:
    """The user's identity, or :class:`LoginRefused` (wrong username or password, disabled,
    or locked after too many failures: the numbers are in ``access.toml``). Every attempt is
    recorded and audited."""
    rules = throttle or Throttle.from_settings()
    when = now or _now()
    who = Identity(username[:64], None, None, source)
    with db.begin() as conn:
        row = conn.execute(select(users, centres.c.code.label("centre_code"))
                           .outerjoin(centres, centres.c.id == users.c.centre_id)
                           .where(users.c.username == username)).first()
        last_ok = conn.execute(select(login_attempts.c.at).where(
            login_attempts.c.username == username, login_attempts.c.success.is_(True))
            .order_by(login_attempts.c.at.desc()).limit(1)).scalar()
        fails = conn.execute(select(login_attempts.c.at).where(
            login_attempts.c.username == username, login_attempts.c.success.is_(False),
            *([login_attempts.c.at > last_ok] if last_ok is not None else []))).scalars()
        locked = rules.locked_until([_utc(f) for f in fails], when)
        reason: str | None = None
        if locked is not None:
            burn_time(password)
            reason = "locked"
        elif row is None:
            burn_time(password)
            reason = "wrong-credentials"
        elif not verify_password(row.password_hash, password):
            reason = "wrong-credentials"
        elif row.disabled:
            reason = "disabled"
        ok = reason is None
        if locked is None:  # attempts while locked are audited but do not extend the lock
            conn.execute(insert(login_attempts).values(username=username[:64], at=when,
                                                       success=ok, source=source[:100]))
        actor = _identity(row, source) if row is not None else who
        append(conn, actor, "login", f"user {username}", outcome="success" if ok else "refused",
               detail=reason, when=when, role=None if row is not None else "unknown")
    if locked is not None:
        raise LoginRefused(f"login: too many failed attempts; try again after "
                           f"{locked.isoformat(timespec='minutes')}")
    if not ok:
        raise LoginRefused("login: wrong username or password, or the account is disabled")
    assert row is not None
    return _identity(row, source)


def create_token(db: Database, caller: Identity, username: str, name: str
                 ) -> tuple[Token, str]:
    """A new API token for ``username``: its listing, and the secret, returned this once."""
    with audited(db, caller, "users.token-create", f"user {username}") as note:
        require(caller, "users.manage")
        if not name.strip() or len(name) > 100:
            raise AccountError("name: 1 to 100 characters")
        secret = new_token()
        with db.begin() as conn:
            row = _user_row(conn, username)
            tid = conn.execute(insert(api_tokens).values(
                token_hash=token_digest(secret), user_id=row.id, name=name,
                created_at=_now()).returning(api_tokens.c.id)).scalar_one()
            note.write(conn)
            return _tokens(conn, api_tokens.c.id == tid)[0], secret


def list_tokens(db: Database, caller: Identity, username: str | None = None) -> list[Token]:
    with audited(db, caller, "users.token-list", f"user {username}" if username else None):
        require(caller, "users.manage")
        with db.read() as conn:
            if username is None:
                return _tokens(conn, None)
            return _tokens(conn, api_tokens.c.user_id == _user_row(conn, username).id)


def revoke_token(db: Database, caller: Identity, token_id: int) -> Token:
    with audited(db, caller, "users.token-revoke", f"token {token_id}") as note:
        require(caller, "users.manage")
        with db.begin() as conn:
            found = _tokens(conn, api_tokens.c.id == token_id)
            if not found:
                raise AccountError(f"token: no token {token_id}")
            if found[0].revoked_at is None:
                conn.execute(update(api_tokens).where(api_tokens.c.id == token_id)
                             .values(revoked_at=_now()))
            note.write(conn)
            return _tokens(conn, api_tokens.c.id == token_id)[0]


def authenticate_token(db: Database, secret: str, *, source: str) -> Identity:
    """The identity a token stands for; :class:`LoginRefused` for an unknown or revoked
    token, or a disabled user's. Audited either way (by token id, never the secret)."""
    with db.begin() as conn:
        row = conn.execute(
            select(api_tokens.c.id.label("token_id"), api_tokens.c.revoked_at, users,
                   centres.c.code.label("centre_code"))
            .join(users, users.c.id == api_tokens.c.user_id)
            .outerjoin(centres, centres.c.id == users.c.centre_id)
            .where(api_tokens.c.token_hash == token_digest(secret))).first()
        if row is None:
            append(conn, Identity("unknown-token", None, None, source), "token.authenticate",
                   None, outcome="refused", detail="unknown-token", role="unknown")
        elif row.revoked_at is not None or row.disabled:
            append(conn, _identity(row, source), "token.authenticate",
                   f"token {row.token_id}", outcome="refused",
                   detail="revoked" if row.revoked_at is not None else "disabled")
        else:
            identity = _identity(row, source)
            append(conn, identity, "token.authenticate", f"token {row.token_id}")
            return identity
    raise LoginRefused("token: unknown, revoked, or its user is disabled")


def _tokens(conn: Connection, where: Any) -> list[Token]:
    query = (select(api_tokens.c.id, api_tokens.c.name, api_tokens.c.created_at,
                    api_tokens.c.revoked_at, users.c.username)
             .join(users, users.c.id == api_tokens.c.user_id).order_by(api_tokens.c.id))
    if where is not None:
        query = query.where(where)
    return [Token(r.id, r.username, r.name, _utc(r.created_at),
                  _utc(r.revoked_at) if r.revoked_at else None)
            for r in conn.execute(query)]

