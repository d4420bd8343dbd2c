"""Migrations match the models and apply to an empty database."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_models_have_no_changes_missing_from_migrations(tmp_path):
    env = {**os.environ, "DEBUG": "1", "DATABASE_URL": f"sqlite:///{tmp_path / 'check.sqlite3'}"}
    result = _manage("makemigrations", "--check", "--dry-run", env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_migrations_apply_to_an_empty_database(tmp_path):
    env = {**os.environ, "DEBUG": "1"}
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    # On PostgreSQL (CI) this applies to the configured database, which the test run created
    # and which pytest's own test database lives beside: migrate is idempotent there.
    result = _manage("migrate", "--noinput", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Applying analyses.0001_initial" in result.stdout or "No migrations to apply" in result.stdout
