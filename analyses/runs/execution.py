"""Running one analysis in a worker: an orchestrator, the engine runs in a child process.

The worker process running this never imports TensorFlow (nor gradcam3d): the engine is an
exec'ed child managed by `analyses.worker.runner`. Every change of the row's run state goes
through `analyses.runs.state` (claim, heartbeat, fail, cancel, publish), each conditional on the
row still being THIS attempt. Results are written by the engine into the run's working folder
and renamed into MEDIA_ROOT/analyses/<code hex>/attempt-<n>/ only when complete, so a partial
result is never visible; a worker only ever deletes the results folder of its own attempt.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings

from analyses.runs import state
from analyses.runs.models import Analysis, AnalysisStatus
from analyses.runs.services import ATTEMPT_FOLDER_PREFIX, RESULTS_FOLDER, analysis_results_path
from analyses.runs.state import Attempt
from analyses.worker import runner
from analyses.worker.engine_client import video_limits

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0  # also how often a cancel request is noticed
PROGRESS_SAVE_SECONDS = 0.5  # progress rows are written at most this often (stage changes: always)
INTERNAL_ERROR_MESSAGE = "The analysis failed because of an internal error in the worker; it has been logged."
NOT_A_NUMBER_MESSAGE = (
    "The analysis engine produced a result containing values that are not a number (NaN or infinity); "
    "nothing was saved."
)


class NotANumberError(ValueError):
    """The engine's manifest holds NaN or infinity (never stored: PostgreSQL's JSON refuses them)."""


class RunReporter:
    """Saves the engine's progress and heartbeat on the row (throttled) and notices cancel requests.

    Every write is conditional on the row still being this attempt's `running` row and not
    cancel-requested: when it matches nothing, the run has been cancelled or taken away
    (reaped, maybe already re-run by another worker), and the engine stops.
    """

    def __init__(self, *, attempt: Attempt) -> None:
        self.attempt = attempt
        self.last_write = time.monotonic()
        self.stage = ""
        self.pending: dict[str, Any] = {}
        self.lost = False

    def save(self, fields: dict[str, Any]) -> None:
        updated = state.analysis_heartbeat(attempt=self.attempt, fields=fields)
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


def engine_job_params(analysis: Analysis) -> dict[str, Any]:
    """The engine's parameters: the stored ones plus what comes from the row and the classifier."""
    params = dict(analysis.params or {})
    params["expected_class"] = analysis.expected_class
    labels = [str(label or "") for label in (analysis.classifier.class_labels or [])]
    params["class_labels"] = labels if any(labels) else None
    params["limits"] = video_limits()
    return params


def load_manifest(*, manifest_path: Path | None, out_dir: Path) -> dict[str, Any]:
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


def _all_finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_all_finite(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return all(_all_finite(item) for item in value)
    return True


def _result_fields(*, manifest: dict[str, Any], outcome: runner.EngineOutcome) -> dict[str, Any]:
    """The row's result fields from the manifest; NotANumberError if any number is NaN or infinite."""
    prediction = manifest.get("prediction") or {}
    predicted = prediction.get("predicted_class")
    fields = {
        "predicted_class": predicted if isinstance(predicted, int) else None,
        "predictions": prediction,
        "timings": {**(manifest.get("timings") or {}), "peak_rss_mb": round(outcome.peak_rss_mb, 1)},
        "versions": manifest.get("engine") or {},
        "input_hashes": {
            name: (record or {}).get("sha256") for name, record in (manifest.get("inputs") or {}).items()
        },
        "manifest": manifest,
    }
    if not _all_finite(fields):
        raise NotANumberError("the manifest contains NaN or infinity")
    return fields


def _folder_bytes(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
        except OSError:
            continue
    return total


def _publish(
    *,
    attempt: Attempt,
    analysis: Analysis,
    out_dir: Path,
    manifest: dict[str, Any],
    outcome: runner.EngineOutcome,
) -> bool:
    """Rename the finished folder into this attempt's own results folder, then CAS running -> succeeded.

    The CAS requires the row to still be this attempt's and not cancel-requested. When it loses
    (or raises: a locked database, a value the database refuses) only this attempt's folder is
    removed; the folder of an attempt that won is never touched.
    """
    fields = _result_fields(manifest=manifest, outcome=outcome)  # before anything becomes visible
    folder_name = f"{ATTEMPT_FOLDER_PREFIX}{attempt.number}"
    results = analysis_results_path(analysis) / folder_name
    results.parent.mkdir(parents=True, exist_ok=True)
    if results.exists():  # this attempt's number is ours alone (claimed by compare-and-set)
        shutil.rmtree(results)
    out_dir.rename(results)
    results_dir = f"{RESULTS_FOLDER}/{analysis.code.hex}/{folder_name}"
    fields["results_bytes"] = _folder_bytes(results)  # counted in the owner's storage quota
    try:
        won = state.analysis_publish(attempt=attempt, results_dir=results_dir, fields=fields)
    except BaseException:
        # The update may still have been committed (a connection lost after the commit): remove
        # the folder only when the row certainly does not name it. When even that cannot be
        # read, the folder stays (inside the analysis's own folder, removed with it).
        try:
            published = state.analysis_is_published(analysis_id=attempt.analysis_id, results_dir=results_dir)
        except Exception:  # noqa: BLE001 - the original error is the one to report
            published = True
        if not published:
            shutil.rmtree(results, ignore_errors=True)
        raise
    if not won:
        shutil.rmtree(results, ignore_errors=True)
        return False
    # Folders of earlier attempts that died between their rename and their commit: the row now
    # names this attempt's folder, so nothing can serve them.
    for sibling in results.parent.iterdir():
        if sibling.name.startswith(ATTEMPT_FOLDER_PREFIX) and sibling.name != folder_name:
            shutil.rmtree(sibling, ignore_errors=True)
    return True


def analysis_run(*, analysis_id: int) -> str:
    """Run one analysis (the body of the django-q2 task). Returns the final status, or "skipped"
    when the row is not queued."""
    attempt = state.analysis_claim(analysis_id=analysis_id)
    if attempt is None:
        logger.info("analysis %s is not queued (cancelled, taken or gone): skipped", analysis_id)
        return "skipped"
    try:
        return _run(attempt)
    except Exception:  # noqa: BLE001 - the row must end in a final state, never `running`
        logger.exception("analysis %s failed inside the worker", analysis_id)
        state.analysis_fail(attempt=attempt, message=INTERNAL_ERROR_MESSAGE)
        return state.analysis_status_now(analysis_id=analysis_id)


def _run(attempt: Attempt) -> str:
    analysis_id = attempt.analysis_id
    analysis = Analysis.objects.select_related("classifier", "video").get(pk=analysis_id)
    model_path = Path(analysis.classifier.file.path)
    video_path = Path(analysis.video.file.path)
    for path, what in ((model_path, "model"), (video_path, "video")):
        if not path.is_file():
            return _fail(attempt, f"The {what} file of this analysis is missing from the server.")
    work_dir = runner.work_root() / f"{analysis.code.hex}-{attempt.number}"
    reporter = RunReporter(attempt=attempt)
    reporter.save({"stage": "loading the model"})
    with engine_run(
        analysis=analysis,
        work_dir=work_dir,
        params=engine_job_params(analysis),
        on_event=reporter.on_event,
        should_cancel=reporter.should_cancel,
    ) as (outcome, out_dir):
        if outcome.kind == "cancelled":
            if state.analysis_finish_cancelled(attempt=attempt):
                return AnalysisStatus.CANCELLED
            return state.analysis_status_now(analysis_id=analysis_id)  # taken away (reaped) while running
        if outcome.kind != "succeeded":
            return _fail(attempt, outcome.message)
        return _save_results(attempt=attempt, analysis=analysis, out_dir=out_dir, outcome=outcome)


@contextmanager
def engine_run(
    *,
    analysis: Analysis,
    work_dir: Path,
    params: dict[str, Any],
    on_event: Callable[[dict[str, Any]], None],
    should_cancel: Callable[[], bool],
) -> Iterator[tuple[runner.EngineOutcome, Path]]:
    """Run the engine once on the analysis's stored model and video with `params`, writing into
    `work_dir`/out, and give (its outcome, that folder); nothing is published. On exit the engine
    is discarded and `work_dir` removed with whatever is still in it (the run publishes by
    renaming its output folder out first; a verification only reads it)."""
    shutil.rmtree(work_dir, ignore_errors=True)
    # The next spare starts only when this job's engine is done: on 2 cores its TensorFlow
    # import would otherwise slow this analysis down by 30-70 % (bench/latency.py).
    engine = runner.take_engine(work_dir=work_dir, start_next_spare=False)
    try:
        out_dir = engine.work_dir / "out"
        outcome = runner.run_engine_job(
            engine=engine,
            job={
                "model": str(Path(analysis.classifier.file.path)),
                "video": str(Path(analysis.video.file.path)),
                "out": str(out_dir),
                "params": params,
            },
            timeout_seconds=float(settings.GRADCAM_ANALYSIS_TIMEOUT),
            memory_limit_mb=float(settings.GRADCAM_ANALYSIS_MEMORY_MB),
            on_event=on_event,
            should_cancel=should_cancel,
        )
        runner.start_spare()
        yield outcome, out_dir
    finally:
        runner.discard_engine(engine)


def _fail(attempt: Attempt, message: str) -> str:
    """Fail this attempt with `message` for the user; the row's status now (another may have won)."""
    state.analysis_fail(attempt=attempt, message=message)
    return state.analysis_status_now(analysis_id=attempt.analysis_id)


def _save_results(
    *, attempt: Attempt, analysis: Analysis, out_dir: Path, outcome: runner.EngineOutcome
) -> str:
    """A succeeded engine run: read its manifest and publish its folder; the final status."""
    analysis_id = attempt.analysis_id
    try:
        manifest = load_manifest(manifest_path=outcome.manifest_path, out_dir=out_dir)
    except (OSError, ValueError) as exc:
        logger.error("analysis %s: unusable manifest: %s", analysis_id, exc)
        return _fail(attempt, "The analysis engine finished without a readable result; nothing was saved.")
    try:
        won = _publish(
            attempt=attempt, analysis=analysis, out_dir=out_dir, manifest=manifest, outcome=outcome
        )
    except NotANumberError as exc:
        logger.error("analysis %s: %s", analysis_id, exc)
        return _fail(attempt, NOT_A_NUMBER_MESSAGE)
    except OSError as exc:
        logger.error("analysis %s: the results could not be moved into place: %s", analysis_id, exc)
        return _fail(
            attempt,
            "The analysis finished but its results could not be saved on the server; nothing was kept.",
        )
    if won:
        return AnalysisStatus.SUCCEEDED
    # Cancelled at the last moment: honour it (a no-op when the run was taken away).
    if state.analysis_finish_cancelled(attempt=attempt):
        return AnalysisStatus.CANCELLED
    return state.analysis_status_now(analysis_id=analysis_id)
