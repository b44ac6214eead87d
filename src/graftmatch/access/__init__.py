"""Accounts, roles and permissions, centre scope, passwords, API tokens, login throttling and
the audit trail's hash chain: pure functions and data, no database (the services in
:mod:`graftmatch.services.accounts` and :mod:`graftmatch.services.audit` store them)."""
