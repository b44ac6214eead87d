"""Roles, actions and THE permission table: which role may do which action.

:data:`PERMISSIONS` is the one place that says it. The services check it
(:func:`require`); a test reads it to call every action as every role, and the API routes
will declare their action from :data:`ACTIONS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from graftmatch.errors import GraftmatchError


class Role(StrEnum):
    ADMIN = "admin"                         # users and centres
    REGISTRY_MANAGER = "registry-manager"   # registry imports and refreshes
    HLA_LABORATORY = "hla-laboratory"       # typings (antibody results later)
    COORDINATOR = "coordinator"             # coordinator / physician: patients and searches
    AUDITOR = "auditor"                     # reads the audit trail only
    RESEARCHER = "researcher"               # de-identified cohort views only


#: Every action a service or route may be asked for, with what it covers.
ACTIONS: dict[str, str] = {
    "hla.use": "check and reduce typings, grade a patient-donor pair (no patient record)",
    "patients.read": "read a patient's record, list a centre's patients",
    "patients.write": "create a patient, change a patient's record",
    "typings.write": "add an HLA typing, choose the current typing",
    "searches.run": "run and save a donor search for a patient",
    "registries.import": "import a registry, refresh its search index",
    "users.manage": "create, disable and list users, set passwords, manage API tokens",
    "centres.manage": "add transplant centres",
    "audit.read": "read, verify and export the audit trail",
    "cohort.read": "de-identified cohort views",
}

#: Role -> the actions it may do. Nothing else grants a permission.
PERMISSIONS: dict[Role, frozenset[str]] = {
    Role.ADMIN: frozenset({"users.manage", "centres.manage"}),
    Role.REGISTRY_MANAGER: frozenset({"registries.import"}),
    Role.HLA_LABORATORY: frozenset({"hla.use", "patients.read", "typings.write"}),
    Role.COORDINATOR: frozenset({"hla.use", "patients.read", "patients.write",
                                 "searches.run"}),
    Role.AUDITOR: frozenset({"audit.read"}),
    Role.RESEARCHER: frozenset({"cohort.read"}),
}

#: Roles whose users belong to one centre and see only its patients.
CENTRE_ROLES = frozenset({Role.HLA_LABORATORY, Role.COORDINATOR})

SHELL_NAME = "shell"


class AccessDenied(GraftmatchError):
    """The caller's role does not allow the action (a patient of another centre is not this:
    it is not found)."""

    def __init__(self, identity: Identity, action: str) -> None:
        self.action = action
        super().__init__(f"permission: {identity.label} may not {action}")


@dataclass(frozen=True)
class Identity:
    """Who calls a service: a user (with role and centre), or the local shell.

    ``shell`` is the person at the command line of the machine holding the database: whoever
    can run ``graftmatch`` there can open the database file anyway, so the CLI acts with every
    permission and every centre, and is audited as ``shell``. ``source`` says from where
    ('cli', later an IP address).
    """

    username: str
    role: Role | None
    centre: str | None = None
    source: str = "cli"

    @property
    def shell(self) -> bool:
        return self.role is None

    @property
    def label(self) -> str:
        return "the shell" if self.role is None else f"role {self.role.value!r}"

    @property
    def role_name(self) -> str:
        return SHELL_NAME if self.role is None else self.role.value


def shell(source: str = "cli") -> Identity:
    """The local shell identity of the CLI."""
    return Identity(SHELL_NAME, None, None, source)


def allowed(identity: Identity, action: str) -> bool:
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    return identity.role is None or action in PERMISSIONS[identity.role]


def require(identity: Identity, action: str) -> None:
    if not allowed(identity, action):
        raise AccessDenied(identity, action)


def scope(identity: Identity, centre: str | None) -> tuple[str | None, bool]:
    """The centre a call is limited to, and whether anything can be found at all: a
    centre-bound user asking for another centre finds nothing (not found, not forbidden)."""
    if identity.centre is None:
        return centre, True
    return identity.centre, centre is None or centre == identity.centre
