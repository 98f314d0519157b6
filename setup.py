"""The one thing pyproject.toml cannot say yet without an experimental table: samtal's C
extension, the events.md instant parser (src/samtal/_instant.c, used by samtal.times).

It is optional: where no C compiler is at hand the build goes on without it, and samtal
parses instants in Python (the same answers, 0.6 us an event slower)."""

from setuptools import Extension, setup

setup(
    ext_modules=[Extension("samtal._instant", ["src/samtal/_instant.c"], optional=True)],
)
