"""One simulated call: the events a switch emits for it, and what really happened in it.

The builder's verbs are what happens in a call (someone rings, answers, leaves). Each verb
appends the events a switch would send and notes the truth in plain terms: the first response
group the call reached, the first person who picked up, the moment the record's call stopped.
That truth is what a test compares aggregation with; it is kept while the call is built, in
time order, never read back from the events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from samtal.records import Outcome, Record
from samtal.simulate._org import Function
from samtal.types import RESPONSE_GROUPS

US = 1_000_000


@dataclass(frozen=True, slots=True)
class SimEvent:
    """An event of a simulated call before it is rendered as a line."""

    at: int
    seq: int
    type: str
    party: str | None = None
    number: str | None = None
    extra: tuple[tuple[str, Any], ...] = ()


class Call:
    """Builds one call's events in time order and keeps its ground truth."""

    def __init__(self, org: str, call_id: str, start: int) -> None:
        self.org = org
        self.id = call_id
        #: When the call started; `t` moves on as the call unfolds.
        self.t0 = start
        self.t = start
        self.events: list[SimEvent] = []
        self._caller_no: str | None = None
        self._start = start
        self._receiving: str | None = None
        self._received: int | None = None
        self._callee: str | None = None
        self._callee_answered: int | None = None
        self._first_rung: str | None = None
        self._stop: int | None = None
        #: What stopped the record's call (query.md, "Outcome"), and whether voicemail took it.
        self._stopped_by = "ended"
        self._voicemail = False

    # -- time ---------------------------------------------------------------------------------

    def after(self, seconds: float) -> None:
        """Let `seconds` pass (the switch stamps events to the millisecond)."""
        self.t += max(1, round(seconds * 1000)) * 1000

    def _emit(self, type_: str, party: str | None, number: str | None, **extra: Any) -> None:
        self.events.append(
            SimEvent(self.t, len(self.events), type_, party, number, tuple(extra.items()))
        )

    @property
    def stopped(self) -> bool:
        """Whether the record's call has stopped (the call itself may go on)."""
        return self._stop is not None

    @property
    def callee(self) -> str | None:
        """The first person who picked up, if anyone did."""
        return self._callee

    def _stop_now(self, by: str = "ended") -> None:
        if self._stop is None:
            self._stop = self.t
            self._stopped_by = by

    # -- what happens -------------------------------------------------------------------------

    def start(self, caller: str | None, dialed: str) -> None:
        """The caller dials `dialed` and lifts the receiver."""
        self._caller_no = caller
        self._start = self.t
        self._emit("started", "caller", caller, dialed=dialed)

    def enter(self, function: Function) -> None:
        """The call reaches a function of the PBX."""
        if not self.stopped and self._receiving is None and function.kind in RESPONSE_GROUPS:
            self._receiving = function.number
        self._emit("entered", "function", function.number, kind=function.kind)

    def ring(self, number: str, party: str = "user") -> None:
        """A user's phone (or an outside number) is alerted."""
        if not self.stopped and self._first_rung is None:
            self._first_rung = number
        self._emit("ringing", party, number)

    def answer(self, number: str, party: str = "user") -> None:
        """A person picks up."""
        if not self.stopped:
            if self._callee is None:
                self._callee, self._callee_answered = number, self.t
            if self._received is None:
                self._received = self.t
        self._emit("answered", party, number)

    def answer_by(self, function: Function) -> None:
        """A function takes the call off ringing (a queue message, a menu, a mailbox)."""
        if not self.stopped and self._received is None and function.kind in RESPONSE_GROUPS:
            self._received = self.t
        if not self.stopped and function.kind == "VOICEMAIL":
            self._voicemail = True
        self._emit("answered", "function", function.number)

    def leave(self, number: str | None, party: str) -> None:
        """A party hangs up: a person, an unanswered leg ending, or the caller."""
        if party == "caller" or (self._callee is not None and number == self._callee):
            self._stop_now("caller" if party == "caller" else "callee")
        self._emit("hangup", party, number)

    def drop(self, function: Function) -> None:
        """The PBX disconnects the call (a queue timeout, a closed group)."""
        self._stop_now("function")
        self._emit("hangup", "function", function.number)

    def transfer(self, number: str | None, party: str, target: str) -> None:
        """A connected party hands the call on to `target` and leaves."""
        if party == "caller" or number == self._callee:
            self._stop_now("caller" if party == "caller" else "callee")
        self._emit("transferred", party, number, target=target)

    def end(self) -> None:
        """The PBX closes the call a few milliseconds after the last party left."""
        self.after(0.005)
        self._stop_now()
        self._emit("ended", None, None)

    # -- the truth ----------------------------------------------------------------------------

    def truth(self) -> Record:
        """The record the spec's rules make of what happened in this call."""
        assert self._stop is not None, "a simulated call always ends"
        return Record(
            org=self.org,
            call=self.id,
            caller_no=self._caller_no,
            start=self._start,
            receiving_no=self._receiving,
            received=self._received,
            callee_no=self._callee if self._callee is not None else self._first_rung,
            callee_answered=self._callee_answered,
            stop=self._stop,
            outcome=self._outcome(),
        )

    def _outcome(self) -> Outcome:
        """query.md's rules, from what this call did (not from its events)."""
        if self._callee_answered is not None:
            return "answered"
        if self._voicemail:
            return "voicemail"
        if self._stopped_by == "caller":
            return "abandoned"
        if self._stopped_by == "function":
            return "rejected"
        return "unanswered"
