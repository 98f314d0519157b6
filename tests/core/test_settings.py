"""Settings come from SAMTAL_* variables, are typed, and every one has help text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from samtal.errors import UsageError
from samtal.settings import Settings


def test_defaults_and_environment() -> None:
    assert Settings.from_env({}) == Settings()
    assert Settings().retention_days == 92 and Settings().idle_close_hours == 12
    found = Settings.from_env(
        {
            "SAMTAL_RETENTION_DAYS": "0",
            "SAMTAL_IDLE_CLOSE_HOURS": "1.5",
            "SAMTAL_DATABASE_URL": "sqlite:////var/x.db",
            "OTHER": "1",
        }
    )
    assert (found.retention_days, found.idle_close_hours, found.database_url) == (
        0,
        1.5,
        "sqlite:////var/x.db",
    )
    assert Settings.from_env({}, database_url="sqlite:///y.db").database_url == "sqlite:///y.db"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SAMTAL_RETENTION_DAYS", "ninety"),
        ("SAMTAL_MAX_BODY_BYTES", "-1"),
        ("SAMTAL_WEBHOOK_RETRY_SECONDS", "5,soon"),
        ("SAMTAL_WEBHOOK_RETRY_SECONDS", "5,-1"),
        ("SAMTAL_RATE_LIMIT", "60/fortnight"),
        ("SAMTAL_RATE_LIMIT", "0/minute"),
        ("SAMTAL_LOG_FORMAT", "xml"),
        # Each of these started a server that then failed: every read a 500 (the first two),
        # a core kept busy (0), the duties stopped (nan), no batch taken (0 bytes), every open
        # call closed (0 hours), a retry that overflowed, or a traceback (Redis).
        ("SAMTAL_RETENTION_DAYS", "999999999"),
        ("SAMTAL_SETTLE_SECONDS", "99999999999999"),
        ("SAMTAL_DUTY_INTERVAL_SECONDS", "0"),
        ("SAMTAL_DUTY_INTERVAL_SECONDS", "nan"),
        ("SAMTAL_MAX_BODY_BYTES", "0"),
        ("SAMTAL_IDLE_CLOSE_HOURS", "0"),
        ("SAMTAL_IDLE_CLOSE_HOURS", "inf"),
        ("SAMTAL_MAX_FUTURE_SECONDS", "99999999999999"),
        ("SAMTAL_WEBHOOK_RETRY_SECONDS", "5,1e300"),
        ("SAMTAL_WEBHOOK_RETRY_SECONDS", "5,nan"),
        ("SAMTAL_REDIS_URL", "127.0.0.1:6379"),
    ],
)
def test_bad_values_are_named(name: str, value: str) -> None:
    with pytest.raises(UsageError, match=name):
        Settings.from_env({name: value})


def test_the_bounds_are_said_and_hold_at_their_ends() -> None:
    with pytest.raises(UsageError) as refused:
        Settings.from_env({"SAMTAL_RETENTION_DAYS": "36526"})
    assert str(refused.value) == (
        "SAMTAL_RETENTION_DAYS must be 0 or more and at most 36525, not 36526"
    )
    with pytest.raises(UsageError) as refused:
        Settings(duty_interval_seconds=0.0)
    assert str(refused.value) == (
        "SAMTAL_DUTY_INTERVAL_SECONDS must be more than 0 and at most 86400, not 0"
    )
    found = Settings.from_env(
        {
            "SAMTAL_RETENTION_DAYS": "36525",
            "SAMTAL_SETTLE_SECONDS": "3155760000",
            "SAMTAL_IDLE_CLOSE_HOURS": "0.0003",
            "SAMTAL_DUTY_INTERVAL_SECONDS": "0.02",
            "SAMTAL_REDIS_URL": "rediss://cache.example.com:6380/1",
        }
    )
    assert (found.retention_days, found.settle_seconds) == (36525, 3155760000)


def test_every_setting_has_help() -> None:
    described = Settings.describe()
    assert len(described) == 15
    assert all(
        name.startswith("SAMTAL_") and len(help_text) > 20
        for name, _default, help_text in described
    )


def test_the_webhook_schedule() -> None:
    assert Settings().webhook_retry_delays == (5, 300, 1800, 7200, 18000, 36000, 36000)
    found = Settings.from_env({"SAMTAL_WEBHOOK_RETRY_SECONDS": "0.1, 0.2"})
    assert found.webhook_retry_delays == (0.1, 0.2)


def test_the_readme_lists_every_setting_with_its_default() -> None:
    """The README's table of settings is what `Settings` knows: no setting missing, none
    extra, every default as it is."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = re.findall(r"^\| `(SAMTAL_[A-Z_]+)` \| ([^|]*) \|", readme, flags=re.M)
    documented = {name: default.strip().strip("`") for name, default in rows}
    known = {name: default for name, default, _ in Settings.describe()}
    shown = {name: ("(empty)" if default == "" else default) for name, default in known.items()}
    assert documented == shown
