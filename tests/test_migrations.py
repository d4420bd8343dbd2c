"""Migrations match the models and apply to an empty database."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
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


def test_migration_0002_keeps_usernames_and_makes_the_audit_trail_append_only(tmp_path):
    """On a database holding events written before it, 0002 copies each actor's username onto
    the event and installs the triggers; reversing it removes them again."""
    database = tmp_path / "audit.sqlite3"
    env = {**os.environ, "DEBUG": "1", "DATABASE_URL": f"sqlite:///{database}"}
    before = _manage("migrate", "analyses", "0001_initial", "--noinput", env=env)
    assert before.returncode == 0, before.stdout + before.stderr
    with sqlite3.connect(database) as db:
        db.execute(
            "INSERT INTO accounts_user (id, password, is_superuser, username, first_name, last_name, email, "
            "is_staff, is_active, date_joined, code) VALUES (7, '!', 0, 'alice', '', '', '', 0, 1, "
            "'2024-01-01 00:00:00', ?)",
            [uuid.uuid4().hex],
        )
        for actor in (7, None):
            db.execute(
                "INSERT INTO analyses_auditevent (code, created_at, action, target_type, data, actor_id) "
                "VALUES (?, '2024-01-02 00:00:00', 'team.created', '', '{}', ?)",
                [uuid.uuid4().hex, actor],
            )
    applied = _manage("migrate", "analyses", "0002_audit_append_only", "--noinput", env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT actor_id, actor_username FROM analyses_auditevent ORDER BY id").fetchall()
        assert rows == [(7, "alice"), (None, "")]
        for statement in (
            "UPDATE analyses_auditevent SET actor_username = 'mallory'",
            "DELETE FROM analyses_auditevent",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                db.execute(statement)
    reverted = _manage("migrate", "analyses", "0001_initial", "--noinput", env=env)
    assert reverted.returncode == 0, reverted.stdout + reverted.stderr
    with sqlite3.connect(database) as db:
        assert db.execute("DELETE FROM analyses_auditevent").rowcount == 2


def test_moving_the_audit_trail_to_its_own_app_keeps_its_rows_triggers_and_permissions(tmp_path):
    """A database migrated before the audit app existed keeps every event, the append-only
    triggers and the admin content type (so permissions granted on it) after audit 0001 and
    analyses 0004, which move AuditEvent between the apps' states without touching its table."""
    database = tmp_path / "audit-move.sqlite3"
    env = {**os.environ, "DEBUG": "1", "DATABASE_URL": f"sqlite:///{database}"}
    before = _manage("migrate", "analyses", "0003_uploads_processed_by_workers", "--noinput", env=env)
    assert before.returncode == 0, before.stdout + before.stderr
    codes = [uuid.uuid4().hex, uuid.uuid4().hex]
    with sqlite3.connect(database) as db:
        assert not db.execute("SELECT 1 FROM django_migrations WHERE app = 'audit'").fetchall()
        db.execute(
            "INSERT INTO accounts_user (id, password, is_superuser, username, first_name, last_name, email, "
            "is_staff, is_active, date_joined, code) VALUES (7, '!', 0, 'alice', '', '', '', 0, 1, "
            "'2024-01-01 00:00:00', ?)",
            [uuid.uuid4().hex],
        )
        for code, actor in zip(codes, (7, None)):
            db.execute(
                "INSERT INTO analyses_auditevent (code, created_at, actor_username, action, target_type, data, actor_id) "
                "VALUES (?, '2024-01-02 00:00:00', ?, 'team.created', '', '{}', ?)",
                [code, "alice" if actor else "", actor],
            )
        # Created by `migrate` for the model as it was then, in the analyses app.
        content_type_id = db.execute(
            "SELECT id FROM django_content_type WHERE app_label = 'analyses' AND model = 'auditevent'"
        ).fetchone()[0]
    moved = _manage("migrate", "--noinput", env=env)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert "Applying audit.0001_initial" in moved.stdout and "Applying analyses.0004" in moved.stdout
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT code, actor_id, actor_username FROM analyses_auditevent ORDER BY id"
        ).fetchall()
        assert rows == [(codes[0], 7, "alice"), (codes[1], None, "")]
        for statement in (
            "UPDATE analyses_auditevent SET action = 'team.forged'",
            "DELETE FROM analyses_auditevent",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                db.execute(statement)
        content_types = db.execute(
            "SELECT id, app_label FROM django_content_type WHERE model = 'auditevent'"
        ).fetchall()
        assert content_types == [(content_type_id, "audit")]
    read = _manage(
        "shell",
        "-c",
        "from audit.models import AuditEvent; print(sorted(AuditEvent.objects.values_list('actor_username', flat=True)))",
        env=env,
    )
    assert read.returncode == 0 and read.stdout.strip().splitlines()[-1] == "['', 'alice']", (
        read.stdout + read.stderr
    )
