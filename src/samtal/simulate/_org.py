"""A simulated organisation's switchboard: users, response groups, IVR menus and voicemail."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from samtal.types import Kind


@dataclass(frozen=True)
class Function:
    """A routing number of the PBX and, for groups, the users it rings."""

    number: str
    kind: Kind
    members: tuple[str, ...] = ()
    #: How a hunt group rings: all members at once, or one after the other.
    parallel: bool = True
    #: What happens when a group or queue gives up: "voicemail" or "drop".
    overflow: str = "voicemail"


@dataclass(frozen=True)
class Organisation:
    """One customer's switchboard, the same for a given name and seed."""

    name: str
    main_number: str
    users: tuple[str, ...]
    attendant: Function
    acd: tuple[Function, ...]
    acd_light: Function
    hunt_parallel: Function
    hunt_sequential: Function
    ivr: Function
    voicemail: Function
    #: Users whose calls forward to an outside number after a while, with that number.
    forwards: dict[str, str] = field(default_factory=dict)


def mobile(rng: random.Random) -> str:
    """A plausible Swedish mobile number outside every simulated organisation."""
    return f"+4673{rng.randrange(10**7):07d}"


def landline(rng: random.Random) -> str:
    """A plausible Swedish landline number (Stockholm area)."""
    return f"+468{rng.randrange(10**7):07d}"


def build_organisation(index: int, seed: int, users: int = 60) -> Organisation:
    """The switchboard of `org-<index>`: the same for the same index and seed."""
    rng = random.Random(f"samtal-org:{seed}:{index}")
    block = (index % 1_000) * 10_000  # each organisation owns a block of mobile numbers
    numbers = tuple(f"+4672{block + u:07d}" for u in range(users))
    pool = list(numbers)
    rng.shuffle(pool)

    def take(n: int) -> tuple[str, ...]:
        taken = tuple(pool[:n])
        del pool[:n]
        return taken

    attendant = Function("9000", "ATTENDANT", take(2))
    support = Function("711", "ACD", take(6), overflow="drop")
    sales = Function("712", "ACD", take(4), overflow="voicemail")
    light = Function("720", "ACD_LIGHT", take(3), overflow="voicemail")
    parallel = Function("622", "HUNT_GROUP", take(4), parallel=True)
    sequential = Function("623", "HUNT_GROUP", take(3), parallel=False, overflow="drop")
    forwarding = rng.sample(numbers, k=max(1, users // 15))
    return Organisation(
        name=f"org-{index}",
        main_number=f"+46856{index % 10**5:05d}00",
        users=numbers,
        attendant=attendant,
        acd=(support, sales),
        acd_light=light,
        hunt_parallel=parallel,
        hunt_sequential=sequential,
        ivr=Function("100", "IVR"),
        voicemail=Function("8800", "VOICEMAIL"),
        forwards={user: mobile(rng) for user in forwarding},
    )
