"""How messages quote what a user gave: URLs without their passwords."""

from __future__ import annotations

import pytest

from samtal.errors import without_password


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://bob:s3cret@127.0.0.1:1/x", "postgresql://bob:***@127.0.0.1:1/x"),
        ("postgresql://bob:s3/cret@host/x", "postgresql://bob:***@host/x"),  # `/` not escaped
        ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("nats://a:p1@h1:4222,nats://b:p2@h2:4222", "nats://a:***@h1:4222,nats://b:***@h2:4222"),
        # Nothing to hide: as it is.
        ("postgresql://bob@host/db", "postgresql://bob@host/db"),
        ("https://example.test:8443/in", "https://example.test:8443/in"),
        ("sqlite:////var/lib/samtal.db", "sqlite:////var/lib/samtal.db"),
    ],
)
def test_a_url_is_quoted_without_its_password(url: str, shown: str) -> None:
    assert without_password(url) == shown
