"""Reviewed defects of the worker: attempt ownership, publishing, the reaper, engine process control.

The task-level tests replace only the engine child (`runner.take_engine` / `run_engine_job`)
with scripted fakes; the runner-level tests run tiny fake engine executables (no TensorFlow).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.utils import timezone


@pytest.fixture
def queued(owner: Any, classifier: Any, video: Any) -> Any:
    from analyses.runs.services import analysis_create

    return analysis_create(user=owner, classifier=classifier, video=video, expected_class=None, params={})


@pytest.fixture
def engine_script(monkeypatch: pytest.MonkeyPatch) -> list[Callable[..., Any]]:
    """Each run_analysis_task pops the next scripted engine run: f(job=, on_event=, should_cancel=)."""
    from analyses.worker import runner

    behaviours: list[Callable[..., Any]] = []

    def take_engine(*, work_dir: Path, start_next_spare: bool = True) -> Any:
        work_dir.mkdir(parents=True)
        return SimpleNamespace(work_dir=work_dir, pid=0)

    def run_engine_job(
        *,
        engine: Any,
        job: dict,
        timeout_seconds: float,
        memory_limit_mb: float,
        on_event: Any,
        should_cancel: Any,
    ) -> Any:
        return behaviours.pop(0)(job=job, on_event=on_event, should_cancel=should_cancel)

    monkeypatch.setattr(runner, "take_engine", take_engine)
    monkeypatch.setattr(runner, "run_engine_job", run_engine_job)
    monkeypatch.setattr(runner, "start_spare", lambda: None)
    monkeypatch.setattr(
        runner, "discard_engine", lambda engine, **kwargs: shutil.rmtree(engine.work_dir, ignore_errors=True)
    )
    return behaviours


def write_result(job: dict, *, tag: str, extra: dict | None = None) -> Any:
    from analyses.worker.runner import EngineOutcome

    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.txt").write_text(tag)
    manifest = {
        "prediction": {"predicted_class": 1, "probabilities": [0.25, 0.75]},
        "files": [{"path": "result.txt"}],
        "tag": tag,
        **(extra or {}),
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    return EngineOutcome(kind="succeeded", exit_status=0, manifest_path=out / "manifest.json")


def result_files(media_root: Path, analysis: Any) -> list[Path]:
    folder = media_root / "analyses" / analysis.code.hex
    return sorted(path for path in folder.rglob("*") if path.is_file()) if folder.exists() else []


def _requeue_as_stale(analysis_id: int) -> None:
    from analyses.models import Analysis
    from analyses.runs.state import analysis_reap_stale

    Analysis.objects.filter(pk=analysis_id).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert analysis_reap_stale()["requeued"] == 1


# --------------------------------------------------------------------------- 1: attempt ownership
@pytest.mark.django_db
def test_a_reaped_attempt_that_finishes_late_never_deletes_or_replaces_the_next_attempts_results(
    queued: Any, engine_script: list, media_root: Path
) -> None:
    from analyses.models import Analysis
    from analyses.tasks import run_analysis_task

    def old_attempt(*, job: dict, on_event: Any, should_cancel: Any) -> Any:
        _requeue_as_stale(queued.pk)  # its worker looked dead, but it is still running
        assert run_analysis_task(queued.pk) == "succeeded"  # attempt 2 runs and publishes first
        on_event({"event": "progress", "stage": "old attempt still going", "fraction": 0.5})
        on_event({"event": "prediction", "predicted_class": 3, "probabilities": [0, 0, 0, 1]})
        return write_result(job, tag="old")

    engine_script.extend([old_attempt, lambda job, **kw: write_result(job, tag="new")])
    run_analysis_task(queued.pk)
    row = Analysis.objects.get(pk=queued.pk)
    assert (row.status, row.attempts, row.manifest["tag"], row.predicted_class) == ("succeeded", 2, "new", 1)
    assert row.stage == "done"
    assert (media_root / row.results_dir / "result.txt").read_text() == "new"
    assert [path.name for path in result_files(media_root, row)] == ["manifest.json", "result.txt"]


@pytest.mark.django_db
def test_a_reaped_attempt_cannot_heartbeat_or_fail_the_attempt_now_running(
    queued: Any, engine_script: list
) -> None:
    from django.db.models import F

    from analyses.models import Analysis
    from analyses.tasks import run_analysis_task
    from analyses.worker.runner import EngineOutcome

    second_heartbeat = timezone.now() - timedelta(seconds=5)

    def old_attempt(*, job: dict, on_event: Any, should_cancel: Any) -> Any:
        _requeue_as_stale(queued.pk)
        # Another worker claims attempt 2 and is running it.
        assert Analysis.objects.filter(pk=queued.pk, status="queued").update(
            status="running",
            attempts=F("attempts") + 1,
            worker_lease="elsewhere:1:1",
            heartbeat_at=second_heartbeat,
            stage="attempt 2 running",
        )
        on_event({"event": "progress", "stage": "old attempt", "fraction": 0.5})
        # The row is attempt 2's now: this attempt's writes match nothing, so it must stop.
        assert should_cancel() is True
        return EngineOutcome(kind="crashed", message="The old engine crashed.")

    engine_script.append(old_attempt)
    run_analysis_task(queued.pk)
    row = Analysis.objects.get(pk=queued.pk)
    assert (row.status, row.attempts, row.stage, row.error_message) == ("running", 2, "attempt 2 running", "")
    assert row.heartbeat_at == second_heartbeat


# --------------------------------------------------------------------------- 2: publishing safely
@pytest.mark.django_db
def test_a_failed_status_update_after_publishing_removes_the_published_folder(
    queued: Any, engine_script: list, media_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import OperationalError
    from django.db.models import QuerySet

    from analyses.models import Analysis
    from analyses.tasks import run_analysis_task

    original_update = QuerySet.update

    def update(self: QuerySet, **kwargs: Any) -> int:
        if kwargs.get("status") == "succeeded":
            raise OperationalError("database is locked")
        return original_update(self, **kwargs)

    monkeypatch.setattr(QuerySet, "update", update)
    engine_script.append(lambda job, **kw: write_result(job, tag="x"))
    assert run_analysis_task(queued.pk) == "failed"
    row = Analysis.objects.get(pk=queued.pk)
    assert row.status == "failed" and row.results_dir == ""
    assert result_files(media_root, row) == []


@pytest.mark.django_db
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_manifest_with_nan_or_infinity_fails_in_words_and_publishes_nothing(
    queued: Any, engine_script: list, media_root: Path, bad: float
) -> None:
    from analyses.models import Analysis
    from analyses.tasks import run_analysis_task

    engine_script.append(lambda job, **kw: write_result(job, tag="x", extra={"timings": {"total": bad}}))
    assert run_analysis_task(queued.pk) == "failed"
    row = Analysis.objects.get(pk=queued.pk)
    assert row.status == "failed" and "not a number" in row.error_message
    assert row.manifest == {} and result_files(media_root, row) == []


# --------------------------------------------------------------------------- 4: a late cancel
@pytest.mark.django_db
def test_a_cancel_requested_after_the_engine_finished_ends_cancelled_without_results(
    owner: Any, queued: Any, engine_script: list, media_root: Path
) -> None:
    from analyses.models import Analysis
    from analyses.runs.services import analysis_cancel
    from analyses.tasks import run_analysis_task

    def finished_then_cancelled(*, job: dict, **kwargs: Any) -> Any:
        outcome = write_result(job, tag="x")
        analysis_cancel(user=owner, analysis=Analysis.objects.get(pk=queued.pk))
        return outcome

    engine_script.append(finished_then_cancelled)
    assert run_analysis_task(queued.pk) == "cancelled"
    row = Analysis.objects.get(pk=queued.pk)
    assert (row.status, row.cancel_requested, row.results_dir) == ("cancelled", True, "")
    assert result_files(media_root, row) == []


# --------------------------------------------------------------------------- 3: lost queued rows
@pytest.mark.django_db
def test_reaper_enqueues_again_a_queued_analysis_whose_task_was_lost(
    queued: Any, owner: Any, classifier: Any, video: Any
) -> None:
    from django_q.models import OrmQ

    from analyses.models import Analysis
    from analyses.runs.services import analysis_create
    from analyses.runs.state import analysis_reap_stale

    # Enqueueing at commit failed (on_commit callbacks never ran here): no task exists.
    Analysis.objects.filter(pk=queued.pk).update(created_at=timezone.now() - timedelta(hours=1))
    fresh = analysis_create(user=owner, classifier=classifier, video=video, expected_class=None, params={})
    assert OrmQ.objects.count() == 0
    assert analysis_reap_stale()["enqueued_again"] == 1
    assert OrmQ.objects.count() == 1
    row = Analysis.objects.get(pk=queued.pk)
    assert row.status == "queued" and row.task_id == OrmQ.objects.get().task_id()
    assert Analysis.objects.get(pk=fresh.pk).task_id == ""  # too young: its enqueue may still be on its way
    # Its task is pending now: nothing more is queued.
    assert analysis_reap_stale()["enqueued_again"] == 0
    assert OrmQ.objects.count() == 1


@pytest.mark.django_db
def test_reaper_fails_in_words_a_lost_queued_analysis_without_attempts_left(queued: Any) -> None:
    from analyses.models import Analysis
    from analyses.runs.state import analysis_reap_stale

    Analysis.objects.filter(pk=queued.pk).update(
        created_at=timezone.now() - timedelta(hours=1), attempts=2, max_attempts=2
    )
    assert analysis_reap_stale()["failed"] == 1
    row = Analysis.objects.get(pk=queued.pk)
    assert row.status == "failed" and "never started" in row.error_message


# --------------------------------------------------------------------------- 5: leaked work folders
def _dead_lease() -> str:
    from analyses.worker.leases import current_worker_lease

    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return f"{current_worker_lease().split(':')[0]}:{int(finished.stdout)}:1"


@pytest.mark.django_db
def test_reaper_removes_work_folders_of_dead_engines_and_workers_only(media_root: Path) -> None:
    from analyses.reaper import reap_everything
    from analyses.worker import runner
    from analyses.worker.leases import current_worker_lease

    root = runner.work_root()
    old = time.time() - 3600
    folders = {
        name: root / name
        for name in ("spare-dead", "abc-1", "spare-live", "abc-2", "spare-new", "spare-nofile")
    }
    for folder in folders.values():
        (folder / "out").mkdir(parents=True)
    dead, alive = _dead_lease(), current_worker_lease()
    for name, owner in (
        ("spare-dead", {"worker": dead, "engine": dead}),
        ("abc-1", {"worker": dead, "engine": dead}),
        ("spare-live", {"worker": alive, "engine": dead}),
        ("abc-2", {"worker": dead, "engine": alive}),
        ("spare-new", {"worker": dead, "engine": dead}),
    ):
        (folders[name] / runner.OWNER_FILE_NAME).write_text(json.dumps(owner))
    for name, folder in folders.items():
        if name != "spare-new":
            os.utime(folder, (old, old))
    assert reap_everything()["work_folders_removed"] == 3
    assert sorted(path.name for path in root.iterdir()) == ["abc-2", "spare-live", "spare-new"]


# --------------------------------------------------------------------------- 6-8: engine processes
def _fake_engine(tmp_path: Path, settings: Any, body: str) -> None:
    script = tmp_path / "fake-engine"
    script.write_text(f"#!{sys.executable}\nimport json, os, sys, time\n{body}\n")
    script.chmod(0o755)
    settings.GRADCAM_ENGINE_PYTHON = str(script)


def _run_job(engine: Any, **overrides: Any) -> Any:
    from analyses.worker.runner import run_engine_job

    arguments = {
        "engine": engine,
        "job": {"out": "x"},
        "timeout_seconds": 30.0,
        "memory_limit_mb": 4096.0,
        "on_event": lambda message: None,
        "should_cancel": lambda: False,
        **overrides,
    }
    return run_engine_job(**arguments)


@pytest.mark.parametrize(
    ("body", "kind", "exit_status"),
    [
        (
            "print(json.dumps({'event': 'ready'}), flush=True)\nsys.stdin.readline()\nsys.exit(3)",
            "crashed",
            3,
        ),
        (
            "print(json.dumps({'event': 'ready'}), flush=True)\nsys.stdin.readline()\n"
            "print(json.dumps({'ok': False, 'code': 'bad_video', 'error': 'Refused.'}), flush=True)\nsys.exit(2)",
            "refused",
            2,
        ),
    ],
)
def test_the_engine_group_is_killed_before_the_engine_is_reaped(
    tmp_path: Path,
    settings: Any,
    media_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    body: str,
    kind: str,
    exit_status: int,
) -> None:
    from analyses.worker import runner

    _fake_engine(tmp_path, settings, body)
    engine = runner.start_engine(work_dir=tmp_path / "work")
    kills: list[bool] = []
    real_killpg = os.killpg

    def killpg(pgid: int, sig: int) -> None:
        if pgid == engine.pid:
            kills.append(engine.process.returncode is None)
        real_killpg(pgid, sig)

    monkeypatch.setattr(os, "killpg", killpg)
    time.sleep(0.5)  # the engine has exited (a zombie) before the runner looks
    outcome = _run_job(engine)
    assert (outcome.kind, outcome.exit_status) == (kind, exit_status)
    assert kills and all(kills), (
        "killpg ran after the engine's pid was released (it may belong to someone else)"
    )
    assert engine.process.returncode is not None  # reaped in the end: no zombie left


def test_an_engine_that_never_stops_writing_is_still_stopped_by_the_timeout(
    tmp_path: Path, settings: Any, media_root: Path
) -> None:
    from analyses.worker import runner

    _fake_engine(
        tmp_path,
        settings,
        (
            "line = json.dumps({'event': 'progress', 'stage': 's', 'fraction': 0.5}) + '\\n'\n"
            "while True:\n    sys.stdout.write(line * 200)\n    sys.stdout.flush()"
        ),
    )
    engine = runner.start_engine(work_dir=tmp_path / "work")
    result: dict[str, Any] = {}
    # Each event costs the worker a little time (a database write), so lines keep waiting.
    slow_event = lambda message: time.sleep(0.001)  # noqa: E731
    thread = threading.Thread(
        target=lambda: result.update(outcome=_run_job(engine, timeout_seconds=1.0, on_event=slow_event)),
        daemon=True,
    )
    thread.start()
    thread.join(30)
    if thread.is_alive():
        engine.kill()
        thread.join(10)
        pytest.fail("run_engine_job never left its read loop to check the timeout")
    assert result["outcome"].kind == "timeout"


@pytest.mark.parametrize("sandbox_mode", ["bwrap", "off"])
def test_the_engine_gets_the_parent_death_signal_with_or_without_the_sandbox(
    tmp_path: Path, settings: Any, media_root: Path, sandbox_mode: str
) -> None:
    from analyses.worker import runner, sandbox

    settings.GRADCAM_SANDBOX = sandbox_mode
    if sandbox_mode == "bwrap" and (problem := sandbox.sandbox_problem()) is not None:
        message = (
            f"the engine sandbox cannot run here ({problem}): install it with `apt-get install bubblewrap`"
        )
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    _fake_engine(
        tmp_path,
        settings,
        (
            "import ctypes\nvalue = ctypes.c_int(0)\nctypes.CDLL(None).prctl(2, ctypes.byref(value), 0, 0, 0)\n"
            "print(json.dumps({'event': 'pdeathsig', 'value': value.value, 'argv': sys.argv[1:]}), flush=True)\n"
            "sys.stdin.readline()"
        ),
    )
    engine = runner.start_engine(work_dir=tmp_path / "work")
    try:
        line = engine.lines.get(timeout=20)
    finally:
        engine.kill()
    message = json.loads(line)
    assert message["value"] == 9 and message["argv"] == ["-m", "gradcam3d", "worker"]
    owner = json.loads((tmp_path / "work" / runner.OWNER_FILE_NAME).read_text())
    assert owner["engine"].split(":")[1] == str(engine.pid)
