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
    ],
)
def test_bad_values_are_named(name: str, value: str) -> None:
    with pytest.raises(UsageError, match=name):
        Settings.from_env({name: value})


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
