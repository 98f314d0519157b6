"""The one thing pyproject.toml cannot say yet without an experimental table: samtal's C
extension (src/samtal/_speedups.c and _speedups_events.c): the events.md instant parser
(samtal.times), the writers of a record's JSON and CSV (samtal.records.Record), the loop that
decodes a batch of lines (samtal.events.decode_batch), and the grouping, hashing and seam
finding of `samtal aggregate` (samtal.aggregate, samtal.offline).

It is optional: where no C compiler is at hand the build goes on without it, and samtal does
all of that in Python (the same answers; decoding a line, for one, takes about 1.6 times the
instructions)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "samtal._speedups",
            ["src/samtal/_speedups.c", "src/samtal/_speedups_events.c"],
            depends=["src/samtal/_speedups.h"],
            optional=True,
        )
    ],
)
