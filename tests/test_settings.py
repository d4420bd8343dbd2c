"""Settings come from the environment and refuse bad values loudly."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from gradcam_site.env import env_bool, env_float, env_int, env_list

ROOT = Path(__file__).resolve().parent.parent


def test_env_bool_accepts_the_usual_spellings(monkeypatch):
    for raw, expected in [("1", True), ("yes", True), ("ON", True), ("0", False), ("off", False), ("", False)]:
        monkeypatch.setenv("X_FLAG", raw)
        assert env_bool("X_FLAG", not expected) is expected


def test_env_bool_refuses_anything_else(monkeypatch):
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG='maybe' is not a boolean"):
        env_bool("X_FLAG", False)


def test_env_int_and_float_refuse_garbage_and_values_below_minimum(monkeypatch):
    monkeypatch.setenv("X_INT", "12MB")
    with pytest.raises(ImproperlyConfigured, match="not an integer"):
        env_int("X_INT", 1)
    monkeypatch.setenv("X_INT", "0")
    with pytest.raises(ImproperlyConfigured, match="below the minimum"):
        env_int("X_INT", 1, minimum=1)
    monkeypatch.setenv("X_FLOAT", "fast")
    with pytest.raises(ImproperlyConfigured, match="not a number"):
        env_float("X_FLOAT", 1.0)
    monkeypatch.setenv("X_LIST", " a, b ,,c ")
    assert env_list("X_LIST", []) == ["a", "b", "c"]


def test_env_float_refuses_infinity_and_nan(monkeypatch):
    for raw in ("inf", "-inf", "Infinity", "nan", " NaN "):
        monkeypatch.setenv("GRADCAM_TRANSCODE_TIMEOUT", raw)
        with pytest.raises(ImproperlyConfigured, match="is not a finite number"):
            env_float("GRADCAM_TRANSCODE_TIMEOUT", 900.0, minimum=1.0)
    monkeypatch.setenv("GRADCAM_TRANSCODE_TIMEOUT", "1e3")
    assert env_float("GRADCAM_TRANSCODE_TIMEOUT", 900.0, minimum=1.0) == 1000.0


def _settings_in_fresh_process(*, preamble: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in {"DATABASE_URL", "SECRET_KEY", "DEBUG", "GRADCAM_ALLOW_DEV_SECRET"}}
    clean.update(env)
    clean["DJANGO_SETTINGS_MODULE"] = "gradcam_site.settings"
    return subprocess.run(
        [sys.executable, "-c", preamble + "import django; django.setup(); from django.conf import settings; print(settings.DATABASES['default']['ENGINE'])"],
        cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60,
    )


def test_a_bad_database_url_stops_start_up_with_a_clear_message():
    result = _settings_in_fresh_process(DEBUG="1", DATABASE_URL="nonsense://x")
    assert result.returncode != 0
    assert "DATABASE_URL='nonsense://x' is not a database URL" in result.stderr


def test_production_without_secret_key_refuses_to_start():
    result = _settings_in_fresh_process(DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_database_url_selects_postgresql():
    result = _settings_in_fresh_process(DEBUG="1", DATABASE_URL="postgres://u:p@127.0.0.1:5432/db")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "django.db.backends.postgresql"


def test_importing_pytest_does_not_unlock_the_dev_secret_key():
    result = _settings_in_fresh_process(preamble="import pytest; ", DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_dev_secret_key_needs_an_explicit_flag():
    allowed = _settings_in_fresh_process(DEBUG="0", GRADCAM_ALLOW_DEV_SECRET="1")
    assert allowed.returncode == 0, allowed.stderr
    refused = _settings_in_fresh_process(DEBUG="0", GRADCAM_ALLOW_DEV_SECRET="0")
    assert refused.returncode != 0 and "SECRET_KEY is not set" in refused.stderr
