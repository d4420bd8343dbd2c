"""Settings come from the environment and refuse bad values loudly."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from gradcam_site.env import env_bool, env_float, env_header, env_header_value, env_int, env_list
from tests.pytest_dev_secret import TEST_ENVIRONMENT

ROOT = Path(__file__).resolve().parent.parent


def test_env_bool_accepts_the_usual_spellings(monkeypatch):
    for raw, expected in [
        ("1", True),
        ("yes", True),
        ("ON", True),
        ("0", False),
        ("off", False),
        ("", False),
    ]:
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


def test_header_settings_become_request_meta_keys(monkeypatch):
    monkeypatch.setenv("X_PROXY_SSL", " X-Forwarded-Proto:  https ")
    assert env_header_value("X_PROXY_SSL") == ("HTTP_X_FORWARDED_PROTO", "https")
    monkeypatch.setenv("X_CLIENT_IP", "x-real-ip")
    assert env_header("X_CLIENT_IP") == "HTTP_X_REAL_IP"
    monkeypatch.setenv("X_CLIENT_IP", "")
    assert env_header("X_CLIENT_IP") is None
    monkeypatch.delenv("X_PROXY_SSL")
    assert env_header_value("X_PROXY_SSL") is None
    for raw in ("X-Forwarded-Proto", "X-Forwarded-Proto:", "X Forwarded Proto: https"):
        monkeypatch.setenv("X_PROXY_SSL", raw)
        with pytest.raises(ImproperlyConfigured, match="X_PROXY_SSL="):
            env_header_value("X_PROXY_SSL")


def _settings_in_fresh_process(*, preamble: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "SECRET_KEY", "DEBUG", *TEST_ENVIRONMENT}
    }
    clean.update(env)
    clean["DJANGO_SETTINGS_MODULE"] = "gradcam_site.settings"
    return subprocess.run(
        [
            sys.executable,
            "-c",
            preamble
            + "import django; django.setup(); from django.conf import settings; print(settings.DATABASES['default']['ENGINE'])",
        ],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
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


# --------------------------------------------------------------------------- production
def _documented_production_environment() -> dict[str, str]:
    """The variables of the README's production block (Configuration > Production), with a
    freshly generated SECRET_KEY in place of its placeholder."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"### Production\n.*?```sh\n(.*?)```", readme, re.S)
    assert block, "README.md has no ### Production section with a sh block"
    documented = {}
    for line in block.group(1).splitlines():
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            documented[match.group(1)] = match.group(2).strip().strip('"')
    assert documented["SECRET_KEY"].startswith("<"), "the README shows a placeholder, not a key"
    documented["SECRET_KEY"] = secrets.token_urlsafe(50)
    return documented


def _in_production(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run in a process that sees only the documented variables (and what Python needs)."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        **_documented_production_environment(),
        **extra,
    }
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_passes_with_no_warning_under_the_documented_production_settings():
    result = _in_production("manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


_SHOW_SECURITY = (
    "import django, json; django.setup(); from django.conf import settings as s; print(json.dumps({n: getattr(s, n) for n in ("
    "'DEBUG', 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_SSL_REDIRECT', 'SECURE_HSTS_SECONDS', "
    "'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SECURE_HSTS_PRELOAD', 'SECURE_PROXY_SSL_HEADER', 'SECURE_REFERRER_POLICY', "
    "'SECURE_CROSS_ORIGIN_OPENER_POLICY', 'X_FRAME_OPTIONS', 'CONTENT_SECURITY_POLICY', 'GRADCAM_CLIENT_IP_HEADER')}))"
)


def test_production_defaults_are_https_only_and_each_is_overridable():
    env = {
        "DJANGO_SETTINGS_MODULE": "gradcam_site.settings",
        "SECURE_PROXY_SSL_HEADER": "",
        "GRADCAM_CLIENT_IP_HEADER": "",
    }
    result = _in_production("-c", _SHOW_SECURITY, **env)
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["DEBUG"] is False
    assert values["SESSION_COOKIE_SECURE"] and values["CSRF_COOKIE_SECURE"] and values["SECURE_SSL_REDIRECT"]
    assert values["SECURE_HSTS_SECONDS"] >= 31536000
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] and values["SECURE_HSTS_PRELOAD"]
    assert values["SECURE_PROXY_SSL_HEADER"] is None and values["GRADCAM_CLIENT_IP_HEADER"] is None
    assert values["SECURE_REFERRER_POLICY"] == values["SECURE_CROSS_ORIGIN_OPENER_POLICY"] == "same-origin"
    assert values["X_FRAME_OPTIONS"] == "DENY"
    assert "'unsafe-inline'" not in values["CONTENT_SECURITY_POLICY"]
    assert "script-src 'self'" in values["CONTENT_SECURITY_POLICY"]

    overrides = {
        "SECURE_SSL_REDIRECT": "0",
        "SECURE_HSTS_SECONDS": "3600",
        "SESSION_COOKIE_SECURE": "off",
        "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto: https",
    }
    overridden = _in_production("-c", _SHOW_SECURITY, **{**env, **overrides})
    assert overridden.returncode == 0, overridden.stderr
    values = json.loads(overridden.stdout.strip().splitlines()[-1])
    assert values["SECURE_SSL_REDIRECT"] is False and values["SECURE_HSTS_SECONDS"] == 3600
    assert values["SESSION_COOKIE_SECURE"] is False and values["CSRF_COOKIE_SECURE"] is True
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_debug_mode_keeps_plain_http_for_local_development():
    debug = subprocess.run(
        [sys.executable, "-c", _SHOW_SECURITY],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/tmp"),
            "DEBUG": "1",
            "DJANGO_SETTINGS_MODULE": "gradcam_site.settings",
        },
    )
    assert debug.returncode == 0, debug.stderr
    values = json.loads(debug.stdout.strip().splitlines()[-1])
    assert not values["SECURE_SSL_REDIRECT"] and values["SECURE_HSTS_SECONDS"] == 0
    assert not values["SESSION_COOKIE_SECURE"] and not values["CSRF_COOKIE_SECURE"]


def test_a_bad_proxy_header_stops_start_up_with_a_clear_message():
    result = _in_production(
        "-c", _SHOW_SECURITY, DJANGO_SETTINGS_MODULE="gradcam_site.settings", SECURE_PROXY_SSL_HEADER="https"
    )
    assert result.returncode != 0
    assert "SECURE_PROXY_SSL_HEADER='https' is not of the form 'Header-Name: value'" in result.stderr
