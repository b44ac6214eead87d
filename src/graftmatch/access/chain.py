"""The audit trail's hash chain and its FHIR AuditEvent shape (pure functions).

Each row's ``hash`` is SHA-256 over the previous row's hash and the row's own content as
canonical JSON (not its sequence number, which only orders the rows: a row moved or
renumbered breaks the chain of ``prev_hash`` instead). :func:`verify` walks the rows in sequence
order and names each row that was changed, inserted or follows removed rows. A chain without
a secret key shows tampering by someone who does not recompute every later hash; the head
hash printed by ``graftmatch audit verify`` can be kept elsewhere to catch that too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

GENESIS = "0" * 64
#: The fields of a row (``seq`` orders; the rest is hashed, in this order).
FIELDS = ("seq", "at", "actor", "role", "centre", "action", "record", "source", "outcome",
          "detail")
OUTCOMES = ("success", "refused", "not-found", "failure")


def row_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    content = json.dumps([row[f] for f in FIELDS[1:]], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{prev_hash}\n{content}".encode()).hexdigest()


def verify(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """What is wrong with the chain (empty: intact), one line per row at fault, by ``seq``."""
    problems: list[str] = []
    seen: dict[str, int] = {GENESIS: 0}
    prev_hash, prev_seq = GENESIS, 0
    for row in rows:
        seq = int(row["seq"])
        if row_hash(row["prev_hash"], row) != row["hash"]:
            problems.append(f"row {seq}: changed (its hash does not match its content)")
        elif row["prev_hash"] != prev_hash:
            earlier = seen.get(row["prev_hash"])
            if earlier is not None and earlier < prev_seq:
                rows_in = (f"row {prev_seq}" if earlier + 1 == prev_seq
                           else f"rows {earlier + 1}-{prev_seq}")
                problems.append(f"{rows_in}: inserted (row {seq} follows row {earlier})")
            else:
                problems.append(f"row {seq}: the row(s) before it were removed (it does not "
                                f"follow row {prev_seq})")
        elif seq != prev_seq + 1:
            problems.append(f"row {seq}: numbered out of sequence (after row {prev_seq})")
        seen[row["hash"]] = seq
        prev_hash, prev_seq = row["hash"], seq
    return problems


_FHIR_ACTION = {"read": "R", "list": "R", "export": "R", "verify": "E", "create": "C",
                "add": "C", "update": "U", "disable": "U", "revoke": "U", "password": "U",
                "login": "E", "authenticate": "E", "choose": "U"}
_FHIR_OUTCOME = {"success": ("0", "Success"), "not-found": ("4", "Minor failure"),
                 "refused": ("8", "Serious failure"), "failure": ("8", "Serious failure")}


def fhir_audit_event(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as a FHIR R5 AuditEvent (the mapping: docs/adr/0009-accounts-and-audit.md)."""
    verb = str(row["action"]).rsplit(".", 1)[-1].split("-")[0]
    code, display = _FHIR_OUTCOME.get(str(row["outcome"]), ("8", "Serious failure"))
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(row["seq"]),
        "code": {"coding": [{"system": "urn:graftmatch:audit-action",
                             "code": row["action"]}]},
        "action": _FHIR_ACTION.get(verb, "E"),
        "recorded": row["at"],
        "outcome": {"code": {"system":
                             "http://terminology.hl7.org/CodeSystem/audit-event-outcome",
                             "code": code, "display": display},
                    **({"detail": [{"text": row["detail"]}]} if row["detail"] else {})},
        "agent": [{"who": {"identifier": {"system": "urn:graftmatch:user",
                                          "value": row["actor"]}},
                   "role": [{"coding": [{"system": "urn:graftmatch:role",
                                         "code": row["role"]}]}],
                   "requestor": True,
                   "networkString": row["source"]}],
        "source": {"observer": {"display": "graftmatch"}},
        "extension": [{"url": "urn:graftmatch:audit-outcome", "valueCode": row["outcome"]},
                      {"url": "urn:graftmatch:audit-hash", "valueString": row["hash"]},
                      {"url": "urn:graftmatch:audit-prev-hash",
                       "valueString": row["prev_hash"]}],
    }
    if row["record"] or row["centre"]:
        entity: dict[str, Any] = {}
        if row["record"]:
            entity["what"] = {"identifier": {"system": "urn:graftmatch:record",
                                             "value": row["record"]}}
        if row["centre"]:
            entity["detail"] = [{"type": {"text": "centre"}, "valueString": row["centre"]}]
        event["entity"] = [entity]
    return event
