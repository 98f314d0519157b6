"""The one thing pyproject.toml cannot say yet without an experimental table: samtal's C
extension (src/samtal/_speedups.c): the events.md instant parser (used by samtal.times) and
the writer of a record's JSON (samtal.records.Record.json).

It is optional: where no C compiler is at hand the build goes on without it, and samtal
does both in Python (the same answers, 0.6 us an event and 1.9 us a record slower)."""

from setuptools import Extension, setup

setup(
    ext_modules=[Extension("samtal._speedups", ["src/samtal/_speedups.c"], optional=True)],
)
