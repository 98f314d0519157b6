"""JSON Schemas of what the API serves, for its OpenAPI document (records are served as stored
bytes, so these describe them rather than produce them)."""

from __future__ import annotations

from typing import Any, Final

from samtal.records import DETAILED_FIELDS, FIELDS, OUTCOMES

_TIME = "An instant in the organisation's zone: `2017-01-04T16:16:03.004+01:00`."
_SEVEN: Final[dict[str, Any]] = {
    "callerNo": {"type": ["string", "null"], "description": "Who called; null if withheld."},
    "start": {"type": "string", "description": "When the caller dialed. " + _TIME},
    "receivingNo": {
        "type": ["string", "null"],
        "description": "The response group that first received the call (IVR excluded).",
    },
    "received": {"type": ["string", "null"], "description": "When it was received."},
    "calleeNo": {"type": ["string", "null"], "description": "The first real person."},
    "calleeAnswered": {"type": ["string", "null"], "description": "When they answered."},
    "stop": {"type": "string", "description": "When the call counts as finished."},
}
_ID = {"type": "string", "description": "The call's id: the key of a copy; never changes."}
_VERSION = {
    "type": "integer",
    "minimum": 1,
    "description": "1 when the record first became visible, plus 1 at each change.",
}
_SEQ = {
    "type": "integer",
    "minimum": 1,
    "description": "The version's place in the organisation's change feed.",
}

#: A record as version 1 of the API serves it (`view=plain`).
RECORD: Final = {"type": "object", "properties": _SEVEN, "required": list(FIELDS)}
_OUTCOME = {
    "type": "string",
    "enum": list(OUTCOMES),
    "description": "How the call ended (query.md): answered, voicemail, abandoned, rejected, "
    "unanswered.",
    "examples": ["answered"],
}
#: A record with its identity and outcome (`view=detailed`, the change feed).
DETAILED_RECORD: Final = {
    "type": "object",
    "properties": {"id": _ID, **_SEVEN, "version": _VERSION, "seq": _SEQ, "outcome": _OUTCOME},
    "required": list(DETAILED_FIELDS),
}
_PATH_EVENT = {
    "type": "object",
    "properties": {
        "at": {"type": "string", "description": "When. " + _TIME},
        "type": {"type": "string", "examples": ["answered"]},
        "party": {"type": ["string", "null"], "examples": ["user"]},
        "number": {"type": ["string", "null"], "examples": ["+4672555555"]},
        "kind": {"type": "string", "description": "On `entered` events."},
        "target": {"type": "string", "description": "On `transferred` events."},
        "dialed": {"type": "string", "description": "On `started` events."},
        "stops": {"type": "boolean", "description": "The event that stops the record."},
    },
    "required": ["at", "type", "party", "number", "stops"],
}
#: One call with its path (GET /cdr/calls/{id}).
CALL: Final = {
    "type": "object",
    "properties": {
        **DETAILED_RECORD["properties"],  # type: ignore[dict-item]
        "path": {"type": "array", "items": _PATH_EVENT},
    },
    "required": [*DETAILED_FIELDS, "path"],
}
#: A record that is gone: its call turned out not to have stopped (changes.md).
TOMBSTONE: Final = {
    "type": "object",
    "properties": {"id": _ID, "deleted": {"const": True}, "version": _VERSION, "seq": _SEQ},
    "required": ["id", "deleted", "version", "seq"],
}
