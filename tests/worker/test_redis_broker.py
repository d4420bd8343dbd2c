"""The django-q2 Redis broker (REDIS_URL) with a REAL redis-server started by this module on a
loopback port, without persistence (`--save "" --appendonly no`), so a restart loses the queue
exactly as a production Redis without persistence would.

Without redis-server these tests skip, except in CI (CI=true) where they fail and say why.
The test process is switched to the Redis broker by the `redis_broker` fixture; clusters get it
through REDIS_URL, as a worker machine would.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from tests.worker.conftest import demo_video_entry, make_video, wait_final, wait_for

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
PORTS = range(6390, 6400)  # this suite's range: other sessions on the machine use others


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    for port in PORTS:
        if _port_is_free(port):
            return port
    raise AssertionError(f"no free loopback port in {PORTS.start}-{PORTS.stop - 1} for redis-server")


@dataclass
class RedisServer:
    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> None:
        arguments = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 - the server keeps writing to it
        self.process = subprocess.Popen(
            [REDIS_SERVER, *arguments, "--dir", str(self.folder)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.05)
        raise AssertionError(
            f"redis-server did not start:\n{(self.folder / 'redis.log').read_text()[-2000:]}"
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        """A restart without persistence: everything in Redis, the queue included, is gone."""
        self.stop()
        self.start()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if not os.access(REDIS_SERVER, os.X_OK):
        message = "redis-server is not installed (Debian: apt-get install redis-server)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{message}: CI must run the Redis broker tests", pytrace=False)
        pytest.skip(message)
    server = RedisServer(port=_free_port(), folder=tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_broker(redis_server: RedisServer, settings: Any, monkeypatch: pytest.MonkeyPatch) -> RedisServer:
    """This test process on the Redis broker, the queue empty. django-q2 reads Q_CLUSTER once, at
    import, into `Conf`: that is patched too, as REDIS_URL would have set it at start."""
    from django_q.conf import Conf

    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()
    redis_server.client().flushall()
    settings.Q_CLUSTER = {
        **{key: value for key, value in settings.Q_CLUSTER.items() if key != "orm"},
        "redis": redis_server.url,
    }
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", redis_server.url)
    return redis_server


def _queue_key() -> str:
    from django_q.brokers import get_broker

    return str(get_broker().list_key)


def _create(owner: Any, classifier: Any, video: Any) -> Any:
    """A queued analysis whose task is enqueued on commit, as a request would leave it."""
    from analyses.runs.services import analysis_create

    return analysis_create(user=owner, classifier=classifier, video=video, expected_class=None, params={})


def _make_old(analysis: Any) -> None:
    from analyses.models import Analysis

    Analysis.objects.filter(pk=analysis.pk).update(created_at=timezone.now() - timedelta(hours=1))


def _task_results(name: str, *, count: int, timeout: float = 20) -> list[Any]:
    """The results django-q2 saved for tasks named `name`, once `count` of them are saved (the
    monitor saves a result after the row already says final)."""
    from django_q.models import Task

    deadline = time.monotonic() + timeout
    results: list[Any] = []
    while time.monotonic() < deadline:
        results = [task.result for task in Task.objects.filter(name=name).order_by("started")]
        if len(results) >= count:
            return results
        time.sleep(0.2)
    return results


# --------------------------------------------------------------------------- listing the queue
@pytest.mark.django_db(transaction=True)
def test_pending_broker_tasks_lists_the_redis_queue_and_ignores_entries_that_are_not_our_tasks(
    redis_broker: RedisServer, owner: Any, classifier: Any, video: Any
) -> None:
    from django_q import core_signing

    from analyses.models import Analysis
    from analyses.worker.queue import pending_broker_tasks

    first = _create(owner, classifier, video)
    second = _create(owner, classifier, video)
    client = redis_broker.client()
    client.rpush(_queue_key(), b"not a task", core_signing.dumps({"id": "x", "name": "y"}, key="another key"))
    assert client.llen(_queue_key()) == 4

    ids, names = pending_broker_tasks()
    task_ids = {Analysis.objects.get(pk=row.pk).task_id for row in (first, second)}
    assert "" not in task_ids and task_ids <= ids and len(ids) == 2
    assert {f"analysis-{first.pk}", f"analysis-{second.pk}"} == names

    # Redis restarted without persistence: nothing is pending any more.
    redis_broker.restart()
    assert pending_broker_tasks() == (set(), set())


@pytest.mark.django_db(transaction=True)
def test_a_task_a_busy_cluster_prefetched_is_copied_at_most_once_per_grace_period(
    redis_broker: RedisServer, owner: Any, classifier: Any, video: Any, settings: Any
) -> None:
    """A pusher BLPOPs tasks into its cluster's local queue: out of the list, not started."""
    from analyses.runs.state import analysis_reap_stale

    settings.GRADCAM_HEARTBEAT_STALE_SECONDS = 1
    analysis = _create(owner, classifier, video)
    _make_old(analysis)
    client = redis_broker.client()
    copies = 0
    for _ in range(2):
        assert client.lpop(_queue_key())  # a live, busy cluster took it
        assert analysis_reap_stale()["enqueued_again"] == 0  # enqueued less than the grace ago
        time.sleep(1.2)
        assert analysis_reap_stale()["enqueued_again"] == 1
        assert analysis_reap_stale()["enqueued_again"] == 0  # the copy is in the list now
        copies += 1
        assert client.llen(_queue_key()) == 1
    assert copies == 2  # one copy per grace period elapsed, not one per reaper run


@pytest.mark.django_db(transaction=True)
def test_with_redis_unreachable_the_reaper_logs_and_leaves_lost_rows_queued(
    redis_broker: RedisServer,
    owner: Any,
    classifier: Any,
    video: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from analyses.models import Analysis
    from analyses.reaper import reap_everything

    analysis = _create(owner, classifier, video)
    _make_old(analysis)
    redis_broker.stop()
    caplog.set_level(logging.WARNING, logger="analyses.worker.queue")
    counts = reap_everything()  # every job kind's reaper lists the queue: none may raise
    assert counts["enqueued_again"] == 0 and counts["failed"] == 0
    assert Analysis.objects.get(pk=analysis.pk).status == "queued"
    assert "cannot list the Redis queue now" in caplog.text
    redis_broker.start()  # back, empty: the row is found lost and queued again
    assert reap_everything()["enqueued_again"] == 1
    assert redis_broker.client().llen(_queue_key()) == 1


@pytest.mark.django_db(transaction=True)
def test_an_upload_job_whose_task_redis_lost_is_enqueued_again_once(
    redis_broker: RedisServer, video: Any
) -> None:
    """Uploads and previews (processing_reap), differences and verifications list the queue
    through the same helpers: one job kind stands for them here."""
    from analyses.library.processing import processing_reap
    from analyses.models import ProcessingStatus, Video
    from analyses.worker.queue import pending_broker_tasks

    Video.objects.filter(pk=video.pk).update(
        status=ProcessingStatus.PROCESSING,
        processing_lease="",
        created_at=timezone.now() - timedelta(hours=1),
    )
    assert processing_reap()["enqueued_again"] == 1
    assert processing_reap()["enqueued_again"] == 0
    assert redis_broker.client().llen(_queue_key()) == 1
    _, names = pending_broker_tasks()
    assert f"video-{video.pk}" in names


# --------------------------------------------------------------------------- with a real cluster
@pytest.mark.slow
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_an_analysis_whose_task_a_redis_restart_lost_is_enqueued_again_and_run_exactly_once(
    redis_broker: RedisServer,
    owner: Any,
    demo: dict[str, Any],
    demo_classifier: Any,
    media_root: Path,
    start_cluster: Any,
) -> None:
    from analyses.runs.state import analysis_reap_stale
    from analyses.worker.queue import pending_broker_tasks

    entry = demo_video_entry(demo, mislabelled=False)
    video = make_video(owner=owner, video_path=Path(entry["path"]), media_root=media_root)
    analysis = _create(owner, demo_classifier, video)
    assert redis_broker.client().llen(_queue_key()) == 1
    redis_broker.restart()
    assert pending_broker_tasks() == (set(), set())

    _make_old(analysis)  # the grace (GRADCAM_HEARTBEAT_STALE_SECONDS) is over
    assert analysis_reap_stale()["enqueued_again"] == 1
    assert analysis_reap_stale()["enqueued_again"] == 0
    cluster = start_cluster(REDIS_URL=redis_broker.url)  # its workers also reap as they start
    wait_final(analysis, timeout=300, cluster=cluster)
    assert (analysis.status, analysis.attempts, analysis.error_message) == ("succeeded", 1, "")
    assert _task_results(f"analysis-{analysis.pk}", count=1) == ["succeeded"]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_duplicate_task_for_an_analysis_already_claimed_is_skipped_by_the_cluster(
    redis_broker: RedisServer, owner: Any, classifier: Any, video: Any, start_cluster: Any
) -> None:
    from analyses.models import Analysis
    from analyses.runs.state import _enqueue, analysis_claim

    analysis = _create(owner, classifier, video)
    redis_broker.client().delete(_queue_key())  # the original task is elsewhere (a busy cluster)
    attempt = analysis_claim(analysis_id=analysis.pk)  # ...or already running
    assert attempt is not None
    assert _enqueue(analysis.pk)  # the reaper's copy
    cluster = start_cluster(REDIS_URL=redis_broker.url)
    results = _task_results(f"analysis-{analysis.pk}", count=1, timeout=90)
    assert results == ["skipped"], cluster.log()
    row = Analysis.objects.get(pk=analysis.pk)
    assert (row.status, row.attempts, row.worker_lease) == ("running", 1, attempt.lease)


@pytest.mark.slow
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_redis_restart_while_a_cluster_runs_leaves_the_cluster_working(
    redis_broker: RedisServer,
    owner: Any,
    demo: dict[str, Any],
    demo_classifier: Any,
    media_root: Path,
    start_cluster: Any,
) -> None:
    """django-q2's pusher exits on a broker error (after 10 s) and the sentinel starts a new one
    with a new connection: the cluster survives a Redis restart without a supervisor."""
    entry = demo_video_entry(demo, mislabelled=False)
    video = make_video(owner=owner, video_path=Path(entry["path"]), media_root=media_root)
    cluster = start_cluster(REDIS_URL=redis_broker.url)
    during = _create(owner, demo_classifier, video)
    wait_for(during, condition=lambda row: row.status == "running", timeout=120, cluster=cluster)
    redis_broker.restart()
    wait_final(during, timeout=300, cluster=cluster)
    after = _create(owner, demo_classifier, video)  # queued on the new, empty Redis
    wait_final(after, timeout=300, cluster=cluster)
    assert (during.status, during.attempts) == ("succeeded", 1)
    assert (after.status, after.attempts) == ("succeeded", 1)
    assert cluster.process.poll() is None, cluster.log()
    # The restart did reach the cluster: its pusher's connection broke and a new pusher took over.
    assert "reincarnated pusher" in cluster.log_path.read_text(errors="replace"), cluster.log()
