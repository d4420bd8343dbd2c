"""audit 0002 on a database with events: each event on a classifier, video or analysis that
still exists gets its owner, events on deleted objects and on teams get none, no row is lost
or otherwise changed, and the append-only triggers are there afterwards (and after reversing).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

_MAKE_OBJECTS = """
from django.contrib.auth import get_user_model
from tests.web.history_factories import make_classifier, make_video
alice = get_user_model().objects.create_user(username="alice", password="x")
classifier = make_classifier(owner=alice, name="Net", labels=["a", "b"])
video = make_video(owner=alice, name="clip")
print(alice.pk, classifier.code.hex, video.code.hex)
"""


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def _triggers(db: sqlite3.Connection) -> set[str]:
    rows = db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'analyses_auditevent'"
    )
    return {row[0] for row in rows}


def test_audit_0002_names_the_owners_of_existing_objects_and_keeps_the_trail_append_only(
    tmp_path: Path,
) -> None:
    database = tmp_path / "audit-owner.sqlite3"
    env = {**os.environ, "DEBUG": "1", "DATABASE_URL": f"sqlite:///{database}"}
    for app, migration in (("analyses", "0006_history_columns_filled"), ("audit", "0001_initial")):
        step = _manage("migrate", app, migration, "--noinput", env=env)
        assert step.returncode == 0, step.stdout + step.stderr
    made = _manage("shell", "-c", _MAKE_OBJECTS, env=env)
    assert made.returncode == 0, made.stdout + made.stderr
    alice_id, classifier_code, video_code = made.stdout.split()[-3:]
    deleted_code = uuid.uuid4().hex
    events = [
        (uuid.uuid4().hex, "classifier.created", "classifier", classifier_code),
        (uuid.uuid4().hex, "video.created", "video", video_code),
        (uuid.uuid4().hex, "analysis.deleted", "analysis", deleted_code),
        (uuid.uuid4().hex, "team.created", "team", None),
    ]
    with sqlite3.connect(database) as db:
        for code, action, target_type, target_code in events:
            db.execute(
                "INSERT INTO analyses_auditevent (code, created_at, actor_username, action, target_type, "
                "target_code, data, actor_id) VALUES (?, '2026-01-02 00:00:00', 'alice', ?, ?, ?, '{}', ?)",
                [code, action, target_type, target_code, int(alice_id)],
            )
        assert len(_triggers(db)) == 2
    migrated = _manage("migrate", "audit", "0002", "--noinput", env=env)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT code, action, actor_username, subject_owner_id, subject_owner_username "
            "FROM analyses_auditevent ORDER BY id"
        ).fetchall()
        assert rows == [
            (events[0][0], "classifier.created", "alice", int(alice_id), "alice"),
            (events[1][0], "video.created", "alice", int(alice_id), "alice"),
            (events[2][0], "analysis.deleted", "alice", None, ""),
            (events[3][0], "team.created", "alice", None, ""),
        ]
        assert len(_triggers(db)) == 2
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("UPDATE analyses_auditevent SET subject_owner_username = 'mallory'")
    reversed_ = _manage("migrate", "audit", "0001", "--noinput", env=env)
    assert reversed_.returncode == 0, reversed_.stdout + reversed_.stderr
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM analyses_auditevent").fetchone()[0] == 4
        assert len(_triggers(db)) == 2
