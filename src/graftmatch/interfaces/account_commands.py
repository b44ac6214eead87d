"""``graftmatch users ...`` and ``graftmatch audit ...``: accounts, API tokens and the audit
trail from the shell, a thin adapter over :mod:`graftmatch.services.accounts` and
:mod:`graftmatch.services.audit`.

The CLI acts as the local shell identity (every permission, every centre; audited as
``shell`` from ``cli``): whoever can run it here can open the database file anyway. So the
first admin is created here. Passwords are read from a hidden prompt, or one line of standard
input with ``--password-stdin``, never from an argument.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from graftmatch.access.roles import Role, shell
from graftmatch.database import Database
from graftmatch.errors import GraftmatchError
from graftmatch.interfaces.common import err, out
from graftmatch.interfaces.patient_commands import DatabaseOption, JsonOption, _fail
from graftmatch.services import accounts
from graftmatch.services import audit as audits

users_app = typer.Typer(help="Accounts and API tokens (the first admin is created here).",
                        no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail: verify its hash chain, export it.",
                        no_args_is_help=True)

PasswordStdin = Annotated[bool, typer.Option(
    "--password-stdin", help="Read the password from one line of standard input")]


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="Login name: a-z 0-9 . _ - @")],
    role: Annotated[str, typer.Option(help=f"One of {', '.join(r.value for r in Role)}")],
    display_name: Annotated[str | None, typer.Option(help="Name shown (default: the username)")]
    = None,
    centre: Annotated[str | None, typer.Option(
        help="The user's centre (required for coordinator and hla-laboratory)")] = None,
    password_stdin: PasswordStdin = False,
    database: DatabaseOption = None,
    json_out: JsonOption = False,
) -> None:
    """Add a user; the password is asked for (hidden) or read from standard input."""
    try:
        password = _password(password_stdin)
        with Database(database) as db:
            user = accounts.create_user(db, shell(), username, display_name or username, role,
                                        password, centre=centre)
    except GraftmatchError as exc:
        raise _fail(exc, json_out) from None
    if json_out:
        out.print_json(json.dumps(user.to_dict()))
    else:
        out.print(f"user {escape(user.username)} added ({user.role}"
                  f"{', centre ' + escape(user.centre) if user.centre else ''})")


@users_app.command("list")
def users_list(database: DatabaseOption = None, json_out: JsonOption = False) -> None:
    """List the users (never their password hashes)."""
    try:
        with Database(database) as db:
            found = accounts.list_users(db, shell())
    except GraftmatchError as exc:
        raise _fail(exc, json_out) from None
    if json_out:
        out.print_json(json.dumps([u.to_dict() for u in found]))
        return
    table = Table("username", "name", "role", "centre", "disabled", title="users")
    for u in found:
        table.add_row(escape(u.username), escape(u.display_name), u.role,
                      escape(u.centre or "every centre"), "yes" if u.disabled else "")
    out.print(table)


@users_app.command("disable")
def users_disable(username: Annotated[str, typer.Argument()],
                  database: DatabaseOption = None) -> None:
    """Disable a user: logins and tokens refused from now on."""
    try:
        with Database(database) as db:
            accounts.disable_user(db, shell(), username)
    except GraftmatchError as exc:
        raise _fail(exc) from None
    out.print(f"user {escape(username)} disabled")


@users_app.command("password")
def users_password(username: Annotated[str, typer.Argument()],
                   password_stdin: PasswordStdin = False,
                   database: DatabaseOption = None) -> None:
    """Set a user's password (asked for, hidden, or read from standard input)."""
    try:
        password = _password(password_stdin)
        with Database(database) as db:
            accounts.set_password(db, shell(), username, password)
    except GraftmatchError as exc:
        raise _fail(exc) from None
    out.print(f"password of {escape(username)} set")


@users_app.command("token-create")
def users_token_create(
    username: Annotated[str, typer.Argument(help="The user the token acts as")],
    name: Annotated[str, typer.Option(help="What the token is for, e.g. the lab's system")],
    database: DatabaseOption = None,
    json_out: JsonOption = False,
) -> None:
    """Create an API token; it is shown this once and stored only hashed."""
    try:
        with Database(database) as db:
            token, secret = accounts.create_token(db, shell(), username, name)
    except GraftmatchError as exc:
        raise _fail(exc, json_out) from None
    if json_out:
        out.print_json(json.dumps({**token.to_dict(), "token": secret}))
        return
    out.print(f"token {token.id} for {escape(username)}: {secret}")
    err.print("keep it now: it is not shown again")


@users_app.command("token-list")
def users_token_list(
    username: Annotated[str | None, typer.Argument(help="Only this user's tokens")] = None,
    database: DatabaseOption = None,
    json_out: JsonOption = False,
) -> None:
    """List API tokens (never the tokens themselves)."""
    try:
        with Database(database) as db:
            found = accounts.list_tokens(db, shell(), username)
    except GraftmatchError as exc:
        raise _fail(exc, json_out) from None
    if json_out:
        out.print_json(json.dumps([t.to_dict() for t in found]))
        return
    table = Table("id", "user", "name", "created", "revoked", title="API tokens")
    for t in found:
        table.add_row(str(t.id), escape(t.username), escape(t.name),
                      t.created_at.isoformat(timespec="seconds"),
                      t.revoked_at.isoformat(timespec="seconds") if t.revoked_at else "")
    out.print(table)


@users_app.command("token-revoke")
def users_token_revoke(token_id: Annotated[int, typer.Argument(help="The token's id")],
                       database: DatabaseOption = None) -> None:
    """Revoke an API token: it is refused from now on."""
    try:
        with Database(database) as db:
            accounts.revoke_token(db, shell(), token_id)
    except GraftmatchError as exc:
        raise _fail(exc) from None
    out.print(f"token {token_id} revoked")


@audit_app.command("verify")
def audit_verify(database: DatabaseOption = None, json_out: JsonOption = False) -> None:
    """Check the audit trail's hash chain; exit 1 naming each changed, removed or inserted
    row."""
    try:
        with Database(database) as db:
            result = audits.verify_chain(db, shell())
    except GraftmatchError as exc:
        raise _fail(exc, json_out) from None
    if json_out:
        out.print_json(json.dumps(result.to_dict()))
    elif result.intact:
        out.print(f"audit trail intact: {result.rows} rows, head hash {result.head_hash}")
    else:
        for problem in result.problems:
            err.print(f"audit trail: {escape(problem)}")
    if not result.intact:
        raise typer.Exit(1)


@audit_app.command("export")
def audit_export(
    out_file: Annotated[Path | None, typer.Option(
        "--out", help="Write JSON Lines here (default: standard output)")] = None,
    database: DatabaseOption = None,
) -> None:
    """Export the audit trail as JSON Lines of FHIR AuditEvent-shaped documents."""
    try:
        with Database(database) as db:
            events = audits.export(db, shell())
    except GraftmatchError as exc:
        raise _fail(exc) from None
    lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events)
    if out_file is None:
        sys.stdout.write(lines)
    else:
        out_file.write_text(lines, encoding="utf-8")
        err.print(f"{len(events)} audit events written to {escape(str(out_file))}")
