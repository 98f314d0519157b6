"""A realistic traffic simulator of company switchboards, emitting events v1.

`event_lines` streams the NDJSON a switch would send; `simulate_calls` gives the calls
themselves with their ground truth (`Call.truth()`), for tests and demos.
"""

from samtal.simulate._call import Call
from samtal.simulate._org import Organisation, build_organisation
from samtal.simulate._traffic import TrafficSettings, event_lines, simulate_calls

__all__ = [
    "Call",
    "Organisation",
    "TrafficSettings",
    "build_organisation",
    "event_lines",
    "simulate_calls",
]
