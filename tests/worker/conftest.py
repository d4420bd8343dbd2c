"""Fixtures for the worker tests: the demo data, library rows, and a REAL django-q2 cluster.

The cluster is `manage.py qcluster` started as a subprocess on the test database (a FILE, see
settings `DATABASES["default"]["TEST"]`) and the test's MEDIA_ROOT, in its own process group so
a test can SIGKILL all of it at once. Tests that use it need committed rows:
`@pytest.mark.django_db(transaction=True)`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.demo_cache import build_demo, demo_cache_dir

REPO = Path(__file__).resolve().parents[2]
DEMO_CACHE = demo_cache_dir()
ENGINE_TIMEOUT_SECONDS = 600
FINAL = ("succeeded", "failed", "cancelled")


def run_engine_cli(*arguments: str, timeout: float = ENGINE_TIMEOUT_SECONDS) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "gradcam3d", *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    if completed.returncode != 0:
        raise AssertionError(f"gradcam3d {arguments[0]} failed: {completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def demo() -> dict[str, Any]:
    """The demo model and videos (built once per source version, shared by every session)."""
    build_demo(out_dir=DEMO_CACHE)
    data = json.loads((DEMO_CACHE / "demo.json").read_text())
    data["model_path"] = DEMO_CACHE / data["model"]
    for video in data["videos"]:
        video["path"] = str(DEMO_CACHE / video["path"])
    data["inspection"] = run_engine_cli("inspect", str(data["model_path"]), timeout=120)
    return data


def demo_video_entry(demo: dict[str, Any], *, mislabelled: bool) -> dict[str, Any]:
    for video in demo["videos"]:
        if (video["labelled_class"] != video["true_class"]) == mislabelled:
            return video
    raise AssertionError(f"the demo has no {'mislabelled' if mislabelled else 'correctly labelled'} video")


def _copy_into_media(*, source: Path, media_root: Path, folder: str) -> str:
    relative = f"{folder}/{uuid.uuid4().hex}{source.suffix}"
    target = media_root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return relative


def make_classifier(
    *,
    owner: Any,
    model_path: Path,
    inspection: dict[str, Any],
    media_root: Path,
    labels: list[str] | None = None,
) -> Any:
    from analyses.models import Classifier

    return Classifier.objects.create(
        owner=owner,
        name=model_path.stem,
        file=_copy_into_media(source=model_path, media_root=media_root, folder="classifiers"),
        original_filename=model_path.name,
        file_format=inspection["format"],
        sha256=uuid.uuid4().hex,
        size_bytes=model_path.stat().st_size,
        input_shape=inspection["input_shape"],
        num_classes=inspection["num_classes"],
        conv3d_layers=inspection["conv3d_layers"],
        class_labels=labels or [],
        inspection=inspection,
    )


def make_video(*, owner: Any, video_path: Path, media_root: Path, expected_class: int | None = None) -> Any:
    from analyses.models import Video

    return Video.objects.create(
        owner=owner,
        name=video_path.stem,
        file=_copy_into_media(source=video_path, media_root=media_root, folder="videos"),
        original_filename=video_path.name,
        sha256=uuid.uuid4().hex,
        size_bytes=video_path.stat().st_size,
        container="mp4",
        codec="h264",
        expected_class=expected_class,
    )


@pytest.fixture(scope="module")
def module_media_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture
def media_root(settings: Any, module_media_root: Path) -> Path:
    settings.MEDIA_ROOT = module_media_root
    return module_media_root


@pytest.fixture
def demo_classifier(owner: Any, media_root: Path, demo: dict[str, Any]) -> Any:
    return make_classifier(
        owner=owner,
        model_path=demo["model_path"],
        inspection=demo["inspection"],
        media_root=media_root,
        labels=list(demo["class_names"]),
    )


@dataclass
class Cluster:
    process: subprocess.Popen[bytes]
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    def kill(self) -> None:
        """SIGKILL the whole cluster (sentinel, workers, monitor, pusher) at once."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


def session_database_url(settings_dict: dict[str, Any]) -> str:
    """The URL of the database this test session really uses (SQLite file or PostgreSQL)."""
    from urllib.parse import quote

    name = str(settings_dict["NAME"])
    if settings_dict["ENGINE"].endswith("sqlite3"):
        assert name and "memory" not in name, "the worker tests need a file database"
        return f"sqlite:///{name}"
    if settings_dict["ENGINE"].endswith("postgresql"):
        credentials = quote(settings_dict.get("USER") or "", safe="")
        if settings_dict.get("PASSWORD"):
            credentials += ":" + quote(settings_dict["PASSWORD"], safe="")
        host = settings_dict.get("HOST") or "127.0.0.1"
        port = settings_dict.get("PORT") or 5432
        return f"postgres://{credentials}@{host}:{port}/{name}"
    raise AssertionError(f"no worker-test support for {settings_dict['ENGINE']}")


@pytest.fixture
def start_cluster(media_root: Path, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Start `manage.py qcluster` on the test database; every cluster is stopped at teardown."""
    from django.db import connection

    started: list[Cluster] = []

    def start(**settings_env: str) -> Cluster:
        from django.conf import settings

        environment = {
            **{name: value for name, value in os.environ.items() if not name.startswith("PYTEST")},
            "DATABASE_URL": session_database_url(connection.settings_dict),
            "MEDIA_ROOT": str(media_root),
            "GRADCAM_ALLOW_DEV_SECRET": "1",
            "GRADCAM_WORKERS": "2",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            # The cluster's engines run as this session's do: sandboxed unless the session had to
            # switch the sandbox off (a developer machine without bubblewrap; off needs DEBUG=1).
            **({"GRADCAM_SANDBOX": "off", "DEBUG": "1"} if settings.GRADCAM_SANDBOX == "off" else {}),
            **settings_env,
        }
        log_path = tmp_path / f"qcluster-{len(started)}.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, str(REPO / "manage.py"), "qcluster"],
                cwd=REPO,
                env=environment,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        cluster = Cluster(process=process, log_path=log_path, extra_env=settings_env)
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.stop()


def wait_for(
    analysis: Any, *, condition: Callable[[Any], bool], timeout: float, cluster: Cluster | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        analysis.refresh_from_db()
        if condition(analysis):
            return analysis
        if cluster is not None and cluster.process.poll() is not None:
            raise AssertionError(f"the cluster died:\n{cluster.log()}")
        time.sleep(0.2)
    log = cluster.log() if cluster is not None else ""
    raise AssertionError(
        f"analysis {analysis.pk} still {analysis.status} ({analysis.stage}, {analysis.error_message!r}) "
        f"after {timeout} s\n{log}"
    )


def wait_final(analysis: Any, *, timeout: float = 120, cluster: Cluster | None = None) -> Any:
    return wait_for(analysis, condition=lambda row: row.status in FINAL, timeout=timeout, cluster=cluster)


# Library rows whose files are never read: for tests of the state machine and services.
PLACEHOLDER_LAYERS = ["c3d/conv1", "c3d/block/conv2"]
PLACEHOLDER_INSPECTION = {
    "format": "h5",
    "input_shape": [16, 32, 32, 3],
    "num_classes": 4,
    "conv3d_layers": PLACEHOLDER_LAYERS,
}


@pytest.fixture
def classifier(owner: Any, media_root: Path, tmp_path: Path) -> Any:
    model = tmp_path / "model.h5"
    model.write_bytes(b"not read by these tests")
    return make_classifier(
        owner=owner, model_path=model, inspection=PLACEHOLDER_INSPECTION, media_root=media_root
    )


@pytest.fixture
def video(owner: Any, media_root: Path, tmp_path: Path) -> Any:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not read by these tests")
    return make_video(owner=owner, video_path=clip, media_root=media_root)
