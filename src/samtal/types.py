"""The small vocabulary of events.md: event types, parties and function kinds."""

import re
from typing import Final, Literal

EventType = Literal["started", "entered", "ringing", "answered", "transferred", "hangup", "ended"]
Party = Literal["caller", "user", "external", "function"]
Kind = Literal["ATTENDANT", "ACD", "ACD_LIGHT", "HUNT_GROUP", "IVR", "VOICEMAIL"]

#: Event types in the tie-break order of cdr.md (rule 3 of a call's total order).
EVENT_TYPES: Final[tuple[EventType, ...]] = (
    "started",
    "entered",
    "ringing",
    "answered",
    "transferred",
    "hangup",
    "ended",
)
TYPE_RANK: Final[dict[str, int]] = {t: i for i, t in enumerate(EVENT_TYPES)}

KINDS: Final[frozenset[str]] = frozenset(
    ("ATTENDANT", "ACD", "ACD_LIGHT", "HUNT_GROUP", "IVR", "VOICEMAIL")
)
#: The kinds that count as receiving the call (`receivingNo`, `received`).
RESPONSE_GROUPS: Final[frozenset[str]] = frozenset(("ATTENDANT", "ACD", "ACD_LIGHT", "HUNT_GROUP"))

#: Which parties each event type allows; `ended` takes none (any given is ignored).
PARTIES_OF_TYPE: Final[dict[str, tuple[Party, ...]]] = {
    "started": ("caller",),
    "entered": ("function",),
    "ringing": ("user", "external"),
    "answered": ("user", "external", "function"),
    "transferred": ("caller", "user"),
    "hangup": ("caller", "user", "external", "function"),
    "ended": (),
}

#: What an organisation's name may be: 1-64 ASCII letters, digits, `-`, `_` and `.`, a `.` only
#: between the others, so that it is safe in a URL, a NATS subject (whose tokens `.` parts: an
#: empty one is refused, and `samtal publish` failed on `.` or `a..b`) and a line of
#: `samtal org list`. A new one also never starts with `-` (`check_org_name`).
ORG_NAME: Final = re.compile(r"(?=[^\n]{1,64}\Z)[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
