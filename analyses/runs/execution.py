"""Running one analysis in a worker: an orchestrator, the engine runs in a child process.

The worker process running this never imports TensorFlow (nor gradcam3d): the engine is an
exec'ed child managed by `analyses.worker.runner`. Every change of the row's run state goes
through `analyses.runs.state` (claim, heartbeat, fail, cancel, publish), each conditional on the
row still being THIS attempt. Results are written by the engine into the run's working folder,
renamed into MEDIA_ROOT/analyses/<code hex>/attempt-<n>/ when complete, uploaded to the media
store (analyses.storage: a no-op on one machine) and only then named by the row, so a partial
result is never visible; a worker only ever deletes the results of its own attempt. The inputs
come from the media store too: the worker may share no disk with the web servers.
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

from analyses import storage
from analyses.runs import state
from analyses.runs.archive import archive_storage_name, listed_result_names, local_members, zip_build_file
from analyses.runs.models import Analysis, AnalysisStatus
from analyses.runs.services import ATTEMPT_FOLDER_PREFIX, RESULTS_FOLDER, analysis_results_path
from analyses.runs.state import Attempt
from analyses.worker import runner
from analyses.worker.engine_client import video_limits

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0  # also how often a cancel request is noticed
PROGRESS_SAVE_SECONDS = 0.5  # progress rows are written at most this often (stage changes: always)
INTERNAL_ERROR_MESSAGE = "The analysis failed because of an internal error in the worker; it has been logged."
NOT_SAVED_MESSAGE = (
    "The analysis finished but its results could not be saved on the server; nothing was kept."
)
# Never trimmed from a worker's cache: engines' working folders and uploads being received.
CACHE_TRIM_SKIP = ("analyses/" + runner.WORK_FOLDER_NAME, "tmp")
NOT_A_NUMBER_MESSAGE = (
    "The analysis engine produced a result containing values that are not a number (NaN or infinity); "
    "nothing was saved."
)


class NotANumberError(ValueError):
    """The engine's manifest holds NaN or infinity (never stored: PostgreSQL's JSON refuses them)."""


class PublishError(Exception):
    """The finished results could not be uploaded to the media store (nothing of them is kept)."""


class InputMissing(Exception):
    """A stored input of the analysis ("model" or "video") is not in the media store."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def analysis_inputs_fetch(analysis: Analysis) -> dict[str, Path]:
    """{"model": path, "video": path}: this machine's complete copies of the analysis's stored
    inputs, downloaded from the media store unless already cached with the recorded size. A
    worker never assumes it shares a disk with the web server that received the upload."""
    paths = {}
    for what, row in (("model", analysis.classifier), ("video", analysis.video)):
        try:
            paths[what] = storage.media_fetch(name=row.file.name or "", size=row.size_bytes)
        except storage.MediaMissing:
            raise InputMissing(what) from None
    return paths


def worker_cache_trim() -> int:
    """Object store only: keep this worker machine's cache of inputs and results within
    MEDIA_CACHE_MB (least recently used copies go first); the number of files removed."""
    if not storage.store_is_remote():
        return 0
    try:
        return storage.media_cache_trim(
            max_bytes=int(settings.MEDIA_CACHE_MB) * 1024 * 1024, skip=CACHE_TRIM_SKIP
        )
    except OSError as problem:  # a full cache slows the next jobs down; it must not fail this one
        logger.warning("trimming the media cache failed: %s", problem)
        return 0


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
    """Rename the finished folder into this attempt's own results folder, upload it to the media
    store, and only then CAS running -> succeeded: the row never names a half-uploaded folder.

    The CAS requires the row to still be this attempt's and not cancel-requested. When the
    upload fails, or the CAS loses (or raises: a locked database, a value the database refuses),
    only this attempt's folder and objects are removed; those of an attempt that won never are.
    """
    fields = _result_fields(manifest=manifest, outcome=outcome)  # before anything becomes visible
    folder_name = f"{ATTEMPT_FOLDER_PREFIX}{attempt.number}"
    results_dir = f"{RESULTS_FOLDER}/{analysis.code.hex}/{folder_name}"
    results = analysis_results_path(analysis) / folder_name
    results.parent.mkdir(parents=True, exist_ok=True)
    if results.exists():  # this attempt's number is ours alone (claimed by compare-and-set)
        shutil.rmtree(results)
    out_dir.rename(results)
    try:
        _prebuild_zip(results_dir=results_dir, manifest=manifest)
        fields["results_bytes"] = _folder_bytes(results)  # counted in the owner's storage quota
        storage.media_publish_tree(prefix=results_dir)
    except Exception as problem:
        _remove_attempt(results_dir)
        raise PublishError(str(problem)) from problem
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
            _remove_attempt(results_dir)
        raise
    if not won:
        _remove_attempt(results_dir)
        return False
    _remove_other_attempts(analysis=analysis, attempt=attempt)
    # The bucket holds the results now; the web servers serve them from there, not from here.
    storage.media_drop_local_copy(names=[results_dir])
    return True


def _prebuild_zip(*, results_dir: str, manifest: dict[str, Any]) -> None:
    """With MEDIA_DELIVERY accel or presigned the web never streams a ZIP through Python: the
    worker writes it into the attempt's folder (uploaded with it). The engine's own file of that
    name, if it wrote one, is removed in any case: it must never pass for the platform's ZIP."""
    local = storage.media_local_path(archive_storage_name(results_dir))
    local.unlink(missing_ok=True)
    if storage.media_delivery_mode() == storage.DELIVERY_DJANGO:
        return
    members = local_members(
        results_dir=results_dir, names=listed_result_names(manifest), skip_unservable=True
    )
    zip_build_file(path=local, members=members)


def _remove_attempt(results_dir: str) -> None:
    """Remove one attempt's folder and its objects; a failure is logged (the folder is inside the
    analysis's own, removed with it), never raised over the error being handled."""
    try:
        storage.media_delete_prefix(prefix=results_dir)
    except Exception:  # noqa: BLE001 - cleanup of an attempt that is not published
        logger.exception("could not remove the unpublished results %s", results_dir)


def _remove_other_attempts(*, analysis: Analysis, attempt: Attempt) -> None:
    """Folders of earlier attempts that died between their upload and their commit: the row now
    names this attempt's folder, so nothing can serve them. Earlier attempts have lower numbers
    (claimed by compare-and-set); the bucket is not listed, the local folder is."""
    root = analysis_results_path(analysis)
    names = {f"{ATTEMPT_FOLDER_PREFIX}{number}" for number in range(1, attempt.number)}
    if root.is_dir():
        names.update(path.name for path in root.iterdir() if path.name.startswith(ATTEMPT_FOLDER_PREFIX))
    names.discard(f"{ATTEMPT_FOLDER_PREFIX}{attempt.number}")
    for name in sorted(names):
        _remove_attempt(f"{RESULTS_FOLDER}/{analysis.code.hex}/{name}")


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
    finally:
        worker_cache_trim()


def _run(attempt: Attempt) -> str:
    analysis_id = attempt.analysis_id
    analysis = Analysis.objects.select_related("classifier", "video").get(pk=analysis_id)
    reporter = RunReporter(attempt=attempt)
    reporter.save({"stage": "loading the model"})
    try:
        inputs = analysis_inputs_fetch(analysis)
    except InputMissing as missing:
        return _fail(attempt, f"The {missing.what} file of this analysis is missing from the server.")
    reporter.save({})  # the heartbeat: downloading large inputs may have taken a while
    work_dir = runner.work_root() / f"{analysis.code.hex}-{attempt.number}"
    with engine_run(
        inputs=inputs,
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
    inputs: dict[str, Path],
    work_dir: Path,
    params: dict[str, Any],
    on_event: Callable[[dict[str, Any]], None],
    should_cancel: Callable[[], bool],
) -> Iterator[tuple[runner.EngineOutcome, Path]]:
    """Run the engine once on the local copies of an analysis's model and video (`inputs`, from
    `analysis_inputs_fetch`) with `params`, writing into `work_dir`/out, and give (its outcome,
    that folder); nothing is published. On exit the engine is discarded and `work_dir` removed
    with whatever is still in it (the run publishes by renaming its output folder out first; a
    verification only reads it)."""
    shutil.rmtree(work_dir, ignore_errors=True)
    # The next spare starts only when this job's engine is done: on 2 cores its TensorFlow
    # import would otherwise slow this analysis down by 30-70 % (bench/latency.py).
    engine = runner.take_engine(work_dir=work_dir, start_next_spare=False)
    try:
        out_dir = engine.work_dir / "out"
        outcome = runner.run_engine_job(
            engine=engine,
            job={
                "model": str(inputs["model"]),
                "video": str(inputs["video"]),
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
    except (OSError, PublishError) as exc:
        logger.error("analysis %s: the results could not be saved: %s", analysis_id, exc)
        return _fail(attempt, NOT_SAVED_MESSAGE)
    if won:
        return AnalysisStatus.SUCCEEDED
    # Cancelled at the last moment: honour it (a no-op when the run was taken away).
    if state.analysis_finish_cancelled(attempt=attempt):
        return AnalysisStatus.CANCELLED
    return state.analysis_status_now(analysis_id=analysis_id)
