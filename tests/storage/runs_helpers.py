"""Analyses on several machines, for the tests of tests/storage: the library rows' files are in
the bucket only (the web's MEDIA_ROOT cache holds nothing), and a worker runs with a MEDIA_ROOT
of its own, so it shares nothing with the web server but the database, the broker and the bucket.

`run_as_worker(settings, root)` runs the queued tasks in this process as a worker machine would
(the real task functions, the real sandboxed engine child) with MEDIA_ROOT pointed at the worker
machine's own folder; `start_bucket_cluster(...)` starts a real `manage.py qcluster` instead.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from analyses import storage
from tests.jobs import run_queued_tasks
from tests.object_store import ObjectStore, bucket_environment
from tests.worker.conftest import (
    REPO,
    Cluster,
    demo_video_entry,
    make_classifier,
    make_video,
    session_database_url,
)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def published_library(*, owner: Any, demo: dict[str, Any], settings: Any) -> dict[str, Any]:
    """The demo model and a correctly labelled demo clip, uploaded to the bucket as the web
    server's upload flow leaves them: stored there, no copy left in the web's cache."""
    web_root = Path(settings.MEDIA_ROOT)
    entry = demo_video_entry(demo, mislabelled=False)
    classifier = make_classifier(
        owner=owner,
        model_path=Path(demo["model_path"]),
        inspection=demo["inspection"],
        media_root=web_root,
        labels=list(demo["class_names"]),
    )
    video = make_video(owner=owner, video_path=Path(entry["path"]), media_root=web_root)
    for row in (classifier, video):
        storage.media_publish_file(name=row.file.name)
        storage.media_drop_local_copy(names=[row.file.name])
    return {"classifier": classifier, "video": video, "entry": entry}


def analysis_queue(*, owner: Any, library: dict[str, Any], layers: int = 1) -> Any:
    """A queued analysis of the published library (its last `layers` layers: quick)."""
    from analyses.runs.services import analysis_create

    selected = library["classifier"].conv3d_layers[-layers:]
    return analysis_create(
        user=owner,
        classifier=library["classifier"],
        video=library["video"],
        expected_class=library["entry"]["labelled_class"],
        params={"layers": selected},
    )


@contextmanager
def worker_machine(settings: Any, root: Path) -> Iterator[Path]:
    """MEDIA_ROOT is `root` (the worker machine's own cache and scratch) inside the block, and
    the web server's again after it."""
    web_root = settings.MEDIA_ROOT
    root.mkdir(parents=True, exist_ok=True)
    settings.MEDIA_ROOT = str(root)
    try:
        yield root
    finally:
        settings.MEDIA_ROOT = web_root


def run_as_worker(settings: Any, root: Path) -> list[Any]:
    """Run every queued task as the worker machine whose MEDIA_ROOT is `root`."""
    with worker_machine(settings, root):
        return run_queued_tasks()


def start_bucket_cluster(*, store: ObjectStore, bucket: str, worker_root: Path, log_path: Path) -> Cluster:
    """A real django-q2 cluster on the test database and the bucket, with its own MEDIA_ROOT."""
    from django.conf import settings
    from django.db import connection

    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith("PYTEST")},
        "DATABASE_URL": session_database_url(connection.settings_dict),
        "MEDIA_ROOT": str(worker_root),
        "GRADCAM_ALLOW_DEV_SECRET": "1",
        "GRADCAM_WORKERS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **({"GRADCAM_SANDBOX": "off", "DEBUG": "1"} if settings.GRADCAM_SANDBOX == "off" else {}),
        **bucket_environment(store=store, bucket=bucket),
    }
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "manage.py"), "qcluster"],
            cwd=REPO,
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Cluster(process=process, log_path=log_path)
