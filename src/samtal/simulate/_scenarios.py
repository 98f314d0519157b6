"""How calls unfold on a company switchboard: inbound via groups, queues and menus, direct,
internal and outgoing calls, each with its realistic ways to end."""

from __future__ import annotations

import random
from collections.abc import Callable

from samtal.simulate._call import Call
from samtal.simulate._org import Function, Organisation, landline, mobile

#: Seconds a member's phone rings before the group moves on (a ring-out).
RING_OUT = 15.0
#: Seconds a hunt group rings before it overflows.
GROUP_TIMEOUT = 30.0
#: Seconds a queue keeps a caller before it overflows or drops the call.
QUEUE_TIMEOUT = 180.0


def _talk(rng: random.Random) -> float:
    """A conversation's length: mostly a few minutes, rarely long, never over an hour."""
    return min(5.0 + rng.expovariate(1 / 150), 3600.0)


def _outside_caller(rng: random.Random) -> str | None:
    """Who calls the company: mobiles, landlines, now and then a withheld number."""
    roll = rng.random()
    if roll < 0.05:
        return None
    return mobile(rng) if roll < 0.65 else landline(rng)


def _hang_up_first(
    c: Call, rng: random.Random, person: str, party: str, caller: str | None, org: Organisation
) -> None:
    """A connected call ends: either side hangs up, or the person hands the call on."""
    c.after(_talk(rng))
    roll = rng.random()
    if roll < 0.45:
        c.leave(caller, "caller")
    elif roll < 0.90 or party != "user":
        c.leave(person, party)
    elif roll < 0.96:
        colleague = rng.choice([u for u in org.users if u != person])
        c.transfer(person, "user", colleague)
        c.after(0.01)
        c.ring(colleague)
        c.after(rng.uniform(2, 10))
        c.answer(colleague)
        c.after(_talk(rng))
        c.leave(colleague, "user")
    else:
        group = org.hunt_parallel
        c.transfer(person, "user", group.number)
        c.after(0.03)
        _group(c, rng, org, group, caller, patience=120.0)
        return
    c.end()


def _voicemail(c: Call, rng: random.Random, org: Organisation, caller: str | None) -> None:
    """The caller is sent to voicemail and leaves a message (or hangs up at the greeting)."""
    c.after(0.01)
    c.enter(org.voicemail)
    c.after(rng.uniform(0.2, 0.5))
    c.answer_by(org.voicemail)
    c.after(rng.uniform(3, 45))
    c.leave(caller, "caller")
    c.end()


def _overflow(
    c: Call, rng: random.Random, org: Organisation, group: Function, caller: str | None
) -> None:
    if group.overflow == "voicemail":
        _voicemail(c, rng, org, caller)
    else:
        c.after(0.01)
        c.drop(group)
        c.end()


def _group(
    c: Call,
    rng: random.Random,
    org: Organisation,
    group: Function,
    caller: str | None,
    patience: float,
) -> None:
    """A hunt group or attendant group rings its members, in parallel or in turn."""
    c.enter(group)
    c.after(rng.uniform(0.02, 0.1))
    waited = 0.0
    if group.parallel:
        for member in group.members:
            c.ring(member)
        pick_up = rng.uniform(2, 25) if rng.random() < 0.8 else float("inf")
        if pick_up < min(patience, GROUP_TIMEOUT):
            c.after(pick_up)
            who = rng.choice(group.members)
            c.answer(who)
            for member in group.members:
                if member != who:
                    c.leave(member, "user")
            _connected(c, rng, org, who, caller, group)
            return
        if patience < GROUP_TIMEOUT:
            c.after(patience)
            c.leave(caller, "caller")
            c.end()
            return
        c.after(GROUP_TIMEOUT)
        for member in group.members:
            c.leave(member, "user")
        _overflow(c, rng, org, group, caller)
        return
    for member in group.members:
        c.ring(member)
        roll = rng.random()
        leg = rng.uniform(2, 12) if roll < 0.6 else (rng.uniform(1, 5) if roll < 0.75 else RING_OUT)
        if waited + leg > patience:
            c.after(max(patience - waited, 0.001))
            c.leave(caller, "caller")
            c.end()
            return
        c.after(leg)
        waited += leg
        if roll < 0.6:
            c.answer(member)
            _connected(c, rng, org, member, caller, group)
            return
        c.leave(member, "user")  # declined, or rang out
        c.after(0.05)
    _overflow(c, rng, org, group, caller)


def _connected(
    c: Call,
    rng: random.Random,
    org: Organisation,
    who: str,
    caller: str | None,
    group: Function | None,
) -> None:
    """A person answered: an attendant usually puts the call through, others just talk."""
    if group is not None and group.kind == "ATTENDANT" and rng.random() < 0.75:
        c.after(rng.uniform(5, 40))
        target = rng.choice([u for u in org.users if u not in group.members])
        c.transfer(who, "user", target)
        c.after(0.01)
        _direct(c, rng, org, target, caller, forwarded_ok=False)
        return
    _hang_up_first(c, rng, who, "user", caller, org)


def _queue(
    c: Call, rng: random.Random, org: Organisation, queue: Function, caller: str | None
) -> None:
    """An ACD or ACD Light queue: the caller waits, agents are offered the call in turn."""
    c.enter(queue)
    if queue.kind == "ACD":  # a full ACD answers to play its queue message
        c.after(rng.uniform(0.05, 0.4))
        c.answer_by(queue)
    patience = rng.expovariate(1 / 90)
    waited = 0.0
    agents = list(queue.members)
    rng.shuffle(agents)
    for attempt in range(12):
        free_in = rng.expovariate(1 / 25) if attempt == 0 else rng.uniform(1, 10)
        if waited + free_in >= min(patience, QUEUE_TIMEOUT):
            break
        c.after(free_in)
        waited += free_in
        agent = agents[attempt % len(agents)]
        c.ring(agent)
        roll = rng.random()
        leg = rng.uniform(2, 8) if roll < 0.7 else (rng.uniform(1, 4) if roll < 0.8 else RING_OUT)
        if waited + leg >= patience:
            break
        c.after(leg)
        waited += leg
        if roll < 0.7:
            c.answer(agent)
            _hang_up_first(c, rng, agent, "user", caller, org)
            return
        c.leave(agent, "user")  # the agent declined or let it ring out
    if patience <= QUEUE_TIMEOUT:
        c.after(max(min(patience, QUEUE_TIMEOUT) - waited, 0.001))
        c.leave(caller, "caller")
        c.end()
        return
    c.after(max(QUEUE_TIMEOUT - waited, 0.001))
    _overflow(c, rng, org, queue, caller)


def _direct(
    c: Call,
    rng: random.Random,
    org: Organisation,
    user: str,
    caller: str | None,
    forwarded_ok: bool = True,
) -> None:
    """A user is rung directly: answers, goes to voicemail, or forwards outside."""
    c.ring(user)
    roll = rng.random()
    if roll < 0.65:
        c.after(rng.uniform(2, 15))
        c.answer(user)
        _hang_up_first(c, rng, user, "user", caller, org)
        return
    if roll < 0.75:
        c.after(rng.uniform(2, 15))
        c.leave(caller, "caller")  # gave up while it rang
        c.end()
        return
    c.after(20)
    c.leave(user, "user")  # no answer: the leg ends
    outside = org.forwards.get(user)
    if forwarded_ok and outside is not None:
        c.after(0.5)
        c.ring(outside, "external")
        if rng.random() < 0.7:
            c.after(rng.uniform(2, 12))
            c.answer(outside, "external")
            _hang_up_first(c, rng, outside, "external", caller, org)
        else:
            c.after(rng.uniform(5, 20))
            c.leave(caller, "caller")
            c.end()
        return
    _voicemail(c, rng, org, caller)


def inbound(c: Call, rng: random.Random, org: Organisation) -> None:
    """A call from outside: to the switchboard, a menu, a group, a queue, or a user's number."""
    caller = _outside_caller(rng)
    roll = rng.random()
    if roll < 0.20:
        user = rng.choice(org.users)
        c.start(caller, user)
        c.after(rng.uniform(0.1, 0.4))
        _direct(c, rng, org, user, caller)
        return
    c.start(caller, org.main_number)
    c.after(rng.uniform(0.02, 0.15))
    if roll < 0.45:
        _group(c, rng, org, org.attendant, caller, patience=rng.expovariate(1 / 40))
    elif roll < 0.75:
        c.enter(org.ivr)
        c.after(rng.uniform(0.2, 0.6))
        c.answer_by(org.ivr)
        c.after(rng.uniform(4, 15))
        if rng.random() < 0.1:
            c.leave(caller, "caller")  # gave up in the menu
            c.end()
            return
        _queue(c, rng, org, rng.choice(org.acd), caller)
    elif roll < 0.83:
        _queue(c, rng, org, org.acd_light, caller)
    else:
        group = org.hunt_parallel if rng.random() < 0.6 else org.hunt_sequential
        _group(c, rng, org, group, caller, patience=rng.expovariate(1 / 35))


def internal(c: Call, rng: random.Random, org: Organisation) -> None:
    """A user calls a colleague's extension."""
    caller, callee = rng.sample(org.users, 2)
    c.start(caller, callee)
    c.after(rng.uniform(0.05, 0.2))
    c.ring(callee)
    if rng.random() < 0.7:
        c.after(rng.uniform(2, 10))
        c.answer(callee)
        c.after(_talk(rng) / 2)
        if rng.random() < 0.5:
            c.leave(caller, "caller")
        else:
            c.leave(callee, "user")
    else:
        c.after(rng.uniform(3, 25))
        c.leave(caller, "caller")
    c.end()


def outgoing(c: Call, rng: random.Random, org: Organisation) -> None:
    """A user calls out: answered, not answered, or busy; now and then handed to a colleague."""
    caller = rng.choice(org.users)
    far = mobile(rng) if rng.random() < 0.5 else landline(rng)
    c.start(caller, far)
    c.after(rng.uniform(0.5, 3))
    c.ring(far, "external")
    roll = rng.random()
    if roll < 0.72:
        c.after(rng.uniform(2, 20))
        c.answer(far, "external")
        if rng.random() < 0.05:
            c.after(_talk(rng) / 3)
            colleague = rng.choice([u for u in org.users if u != caller])
            c.transfer(caller, "caller", colleague)
            c.after(0.01)
            c.ring(colleague)
            c.after(rng.uniform(2, 8))
            c.answer(colleague)
            c.after(_talk(rng))
            c.leave(far, "external")
            c.end()
            return
        _hang_up_first(c, rng, far, "external", caller, org)
        return
    if roll < 0.8:
        c.after(rng.uniform(0.5, 2))
        c.leave(far, "external")  # busy: the far end drops before answering
        c.after(rng.uniform(0.5, 2))
    else:
        c.after(rng.uniform(8, 45))
    c.leave(caller, "caller")
    c.end()


#: The kinds of call and how often each happens.
MIX: tuple[tuple[float, Callable[[Call, random.Random, Organisation], None]], ...] = (
    (0.68, inbound),
    (0.10, internal),
    (0.22, outgoing),
)


def play(c: Call, rng: random.Random, org: Organisation) -> None:
    """Simulate one call of a kind drawn from MIX."""
    roll = rng.random()
    for weight, scenario in MIX:
        if roll < weight:
            scenario(c, rng, org)
            return
        roll -= weight
    MIX[-1][1](c, rng, org)
