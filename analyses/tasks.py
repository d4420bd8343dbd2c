"""django-q2 tasks. `run_analysis_task` is an orchestrator: the engine runs in a child process.

The worker process running these never imports TensorFlow (nor gradcam3d): the engine is an
exec'ed child managed by `analyses.runner`. The task owns the Analysis row's state machine:
queued -> running by compare-and-set with the attempt counter incremented before any heavy work,
a heartbeat while the engine runs, and running -> succeeded / failed / cancelled at the end.
Results are written by the engine into the run's working folder and renamed into
MEDIA_ROOT/analyses/<code hex>/ only when complete, so a partial result is never visible.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from analyses import runner
from analyses.models import Analysis, AnalysisStatus
from analyses.services.analysis import (
    RESULTS_FOLDER,
    analysis_reap_stale,
    analysis_results_path,
    analysis_transition,
    current_worker_lease,
)

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0  # also how often a cancel request is noticed
PROGRESS_SAVE_SECONDS = 0.5  # progress rows are written at most this often (stage changes: always)
INTERNAL_ERROR_MESSAGE = "The analysis failed because of an internal error in the worker; it has been logged."


class RunReporter:
    """Saves the engine's progress and heartbeat on the row (throttled) and notices cancel requests.

    Every write is conditional on the row still being `running` and not cancel-requested: when
    it matches nothing, the run has been cancelled or taken away (reaped), and the engine stops.
    """

    def __init__(self, *, analysis_id: int) -> None:
        self.analysis_id = analysis_id
        self.last_write = time.monotonic()
        self.stage = ""
        self.pending: dict[str, Any] = {}
        self.lost = False

    def save(self, fields: dict[str, Any]) -> None:
        updated = Analysis.objects.filter(
            pk=self.analysis_id, status=AnalysisStatus.RUNNING, cancel_requested=False
        ).update(heartbeat_at=timezone.now(), **fields)
        self.last_write = time.monotonic()
        self.pending = {}
        if not updated:
            self.lost = True

    def on_event(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        if event == "progress":
            stage = " ".join(str(message.get("stage") or "").split())[:100]
            try:
                fraction = min(max(float(message.get("fraction") or 0.0), 0.0), 1.0)
            except (TypeError, ValueError):
                fraction = 0.0
            # 100 % is kept for "saved and visible", after the results are renamed into place.
            self.pending.update(stage=stage, progress=round(min(fraction, 0.99), 4))
            if stage != self.stage or time.monotonic() - self.last_write >= PROGRESS_SAVE_SECONDS:
                self.stage = stage
                self.save(self.pending)
        elif event == "prediction":
            predicted = message.get("predicted_class")
            probabilities = message.get("probabilities")
            fields: dict[str, Any] = {**self.pending}
            if isinstance(predicted, int):
                fields["predicted_class"] = predicted
            if isinstance(probabilities, list):
                fields["predictions"] = {"probabilities": probabilities, "predicted_class": predicted}
            self.save(fields)

    def should_cancel(self) -> bool:
        if time.monotonic() - self.last_write >= HEARTBEAT_SECONDS:
            self.save(self.pending)
        return self.lost


def _fail(analysis_id: int, message: str, *, stage: str = "failed") -> bool:
    return analysis_transition(
        analysis_id=analysis_id, from_status=AnalysisStatus.RUNNING, to_status=AnalysisStatus.FAILED,
        finished_at=timezone.now(), stage=stage, error_message=message,
    )


def _finish_cancelled(analysis_id: int) -> bool:
    return analysis_transition(
        analysis_id=analysis_id, from_status=AnalysisStatus.RUNNING, to_status=AnalysisStatus.CANCELLED,
        finished_at=timezone.now(), stage="cancelled", error_message="Cancelled by the user.",
    )


def engine_job_params(analysis: Analysis) -> dict[str, Any]:
    """The engine's parameters: the stored ones plus what comes from the row and the classifier."""
    params = dict(analysis.params or {})
    params["expected_class"] = analysis.expected_class
    labels = [str(label or "") for label in (analysis.classifier.class_labels or [])]
    params["class_labels"] = labels if any(labels) else None
    params["limits"] = {
        "max_bytes": settings.GRADCAM_MAX_VIDEO_BYTES,
        "max_seconds": settings.GRADCAM_MAX_VIDEO_SECONDS,
        "max_pixels": settings.GRADCAM_MAX_VIDEO_PIXELS,
        "max_frames": settings.GRADCAM_MAX_VIDEO_FRAMES,
    }
    return params


def _load_manifest(*, manifest_path: Path | None, out_dir: Path) -> dict[str, Any]:
    if manifest_path is None:
        manifest_path = out_dir / "manifest.json"
    manifest_path = manifest_path.resolve()
    if manifest_path.parent != out_dir.resolve():
        raise ValueError(f"engine reported a manifest outside its output folder: {manifest_path}")
    with open(manifest_path, encoding="utf-8") as manifest_file:
        manifest = json.load(manifest_file)
    if not isinstance(manifest, dict):
        raise ValueError("manifest is not a JSON object")
    return manifest


def _publish(*, analysis: Analysis, out_dir: Path, manifest: dict[str, Any], outcome: runner.EngineOutcome) -> bool:
    """Rename the finished folder into place, then CAS running -> succeeded; undo on a lost race."""
    results = analysis_results_path(analysis)
    results.parent.mkdir(parents=True, exist_ok=True)
    if results.exists():  # left by an attempt that died between rename and commit
        shutil.rmtree(results)
    out_dir.rename(results)
    prediction = manifest.get("prediction") or {}
    predicted = prediction.get("predicted_class")
    won = analysis_transition(
        analysis_id=analysis.pk, from_status=AnalysisStatus.RUNNING, to_status=AnalysisStatus.SUCCEEDED,
        cancel_requested=False,
        finished_at=timezone.now(), heartbeat_at=timezone.now(), stage="done", progress=1.0,
        results_dir=f"{RESULTS_FOLDER}/{analysis.code.hex}",
        predicted_class=predicted if isinstance(predicted, int) else None,
        predictions=prediction,
        timings={**(manifest.get("timings") or {}), "peak_rss_mb": round(outcome.peak_rss_mb, 1)},
        versions=manifest.get("engine") or {},
        input_hashes={name: (record or {}).get("sha256") for name, record in (manifest.get("inputs") or {}).items()},
        manifest=manifest,
        error_message="",
    )
    if not won:
        shutil.rmtree(results, ignore_errors=True)
    return won


def run_analysis_task(analysis_id: int) -> str:
    """Run one analysis (a django-q2 task). Returns the final status, or "skipped" when not queued."""
    now = timezone.now()
    won = Analysis.objects.filter(
        pk=analysis_id, status=AnalysisStatus.QUEUED, cancel_requested=False
    ).update(
        status=AnalysisStatus.RUNNING, attempts=F("attempts") + 1, started_at=now, heartbeat_at=now,
        finished_at=None, stage="starting the engine", progress=0.0, worker_lease=current_worker_lease(),
        error_message="",
    )
    if not won:
        logger.info("analysis %s is not queued (cancelled, taken or gone): skipped", analysis_id)
        return "skipped"
    try:
        return _run(analysis_id)
    except Exception:  # noqa: BLE001 - the row must end in a final state, never `running`
        logger.exception("analysis %s failed inside the worker", analysis_id)
        _fail(analysis_id, INTERNAL_ERROR_MESSAGE)
        return AnalysisStatus.FAILED


def _run(analysis_id: int) -> str:
    analysis = Analysis.objects.select_related("classifier", "video").get(pk=analysis_id)
    model_path = Path(analysis.classifier.file.path)
    video_path = Path(analysis.video.file.path)
    for path, what in ((model_path, "model"), (video_path, "video")):
        if not path.is_file():
            _fail(analysis_id, f"The {what} file of this analysis is missing from the server.")
            return AnalysisStatus.FAILED
    work_dir = runner.work_root() / f"{analysis.code.hex}-{analysis.attempts}"
    shutil.rmtree(work_dir, ignore_errors=True)
    # The next spare starts only when this job's engine is done: on 2 cores its TensorFlow
    # import would otherwise slow this analysis down by 30-70 % (bench/latency.py).
    engine = runner.take_engine(work_dir=work_dir, start_next_spare=False)
    try:
        out_dir = engine.work_dir / "out"
        reporter = RunReporter(analysis_id=analysis_id)
        reporter.save({"stage": "loading the model"})
        outcome = runner.run_engine_job(
            engine=engine,
            job={"model": str(model_path), "video": str(video_path), "out": str(out_dir),
                 "params": engine_job_params(analysis)},
            timeout_seconds=float(settings.GRADCAM_ANALYSIS_TIMEOUT),
            memory_limit_mb=float(settings.GRADCAM_ANALYSIS_MEMORY_MB),
            on_event=reporter.on_event,
            should_cancel=reporter.should_cancel,
        )
        runner.start_spare()
        if outcome.kind == "cancelled":
            if _finish_cancelled(analysis_id):
                return AnalysisStatus.CANCELLED
            analysis.refresh_from_db(fields=["status"])
            return str(analysis.status)  # taken away (reaped) while running
        if outcome.kind != "succeeded":
            _fail(analysis_id, outcome.message)
            return AnalysisStatus.FAILED
        try:
            manifest = _load_manifest(manifest_path=outcome.manifest_path, out_dir=out_dir)
        except (OSError, ValueError) as exc:
            logger.error("analysis %s: unusable manifest: %s", analysis_id, exc)
            _fail(analysis_id, "The analysis engine finished without a readable result; nothing was saved.")
            return AnalysisStatus.FAILED
        if _publish(analysis=analysis, out_dir=out_dir, manifest=manifest, outcome=outcome):
            return AnalysisStatus.SUCCEEDED
        # Cancelled at the last moment: honour it.
        if _finish_cancelled(analysis_id):
            return AnalysisStatus.CANCELLED
        analysis.refresh_from_db(fields=["status"])
        return str(analysis.status)
    finally:
        runner.discard_engine(engine)


def reap_stale_analyses_task() -> dict[str, int]:
    """Scheduled every minute (analyses.services.analysis.reaper_schedule_ensure)."""
    return analysis_reap_stale()
