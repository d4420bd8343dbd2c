"""Writes of comparisons (save, delete) and the difference row's worker job.

The difference job's run state is a compare-and-set on its row, like an analysis's:
queued (no lease) -> running (`lease` names the worker process) -> ready | failed, only by the
lease holder. `differences_reap` (called by the reaper every minute) retries a job whose worker
died (up to `max_attempts`) and re-enqueues a queued one whose task the broker lost.
"""

from __future__ import annotations

import logging
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from analyses import storage
from analyses.compare.models import (
    MAX_COLUMNS,
    MIN_COLUMNS,
    Comparison,
    ComparisonColumn,
    ComparisonDifference,
    DifferenceStatus,
)
from analyses.compare.selectors import Column, ComparisonError
from analyses.files import clean_result_name, resolve_result_path
from analyses.worker import engine_client
from analyses.worker.leases import current_worker_lease, worker_lease_is_dead
from analyses.worker.queue import pending_broker_tasks, task_enqueue, task_is_pending
from audit.log import audit_log

logger = logging.getLogger(__name__)

DIFFERENCE_TASK = "analyses.tasks.build_difference_task"
DIFFERENCE_FOLDER = "differences"
MAX_TITLE_CHARS = 200
_CLAIM_MARGIN_SECONDS = 120


def difference_timeout_seconds() -> float:
    return 2.0 * float(settings.GRADCAM_PROBE_TIMEOUT)


# --------------------------------------------------------------------------- comparisons
def comparison_create(*, user: Any, title: str, columns: list[Column]) -> Comparison:
    """Save the (already authorised) columns under a title; the owner is `user`."""
    title = " ".join(str(title or "").split())
    if not title:
        raise ComparisonError("Give the comparison a title to save it.")
    if len(title) > MAX_TITLE_CHARS:
        raise ComparisonError(f"The title is longer than {MAX_TITLE_CHARS} characters.")
    if not MIN_COLUMNS <= len(columns) <= MAX_COLUMNS:
        raise ComparisonError(f"A comparison shows {MIN_COLUMNS} to {MAX_COLUMNS} columns.")
    with transaction.atomic():
        comparison = Comparison.objects.create(owner=user, title=title)
        ComparisonColumn.objects.bulk_create(
            ComparisonColumn(
                comparison=comparison,
                position=position,
                analysis=column.analysis,
                layer_name=column.layer_name,
                class_index=column.class_index,
            )
            for position, column in enumerate(columns)
        )
        audit_log(
            actor=user,
            action="comparison.created",
            target=comparison,
            data={"title": title, "analyses": [str(column.analysis.code) for column in columns]},
        )
    return comparison


def comparison_delete(*, user: Any, comparison: Comparison) -> None:
    """Only its owner deletes a comparison (the analyses stay)."""
    if comparison.owner_id != getattr(user, "pk", None):
        from django.core.exceptions import PermissionDenied

        raise PermissionDenied("Only the owner of a comparison can delete it.")
    with transaction.atomic():
        audit_log(
            actor=user,
            action="comparison.deleted",
            target=comparison,
            data={"title": comparison.title, "code": str(comparison.code)},
        )
        comparison.delete()


# --------------------------------------------------------------------------- difference: eligibility
def _input_frames(column: Column) -> tuple[list[int], list[int]]:
    manifest = column.analysis.manifest or {}
    shape = [int(side) for side in ((manifest.get("model") or {}).get("input_shape") or [])[:3]]
    indices = [int(index) for index in ((manifest.get("preprocess") or {}).get("source_frame_indices") or [])]
    return shape, indices


def _raw_maps_path(column: Column) -> str | None:
    for layer in (column.analysis.manifest or {}).get("layers") or []:
        if isinstance(layer, dict) and layer.get("name") == column.layer_name:
            return clean_result_name((layer.get("raw_maps") or {}).get("path"))
    return None


def _map_key(column: Column) -> str | None:
    """`upsampled_class<k>` when the layer's raw maps hold class k (predicted, or expected when
    the prediction was wrong)."""
    if column.map_class is None:
        return None
    for layer in (column.analysis.manifest or {}).get("layers") or []:
        if isinstance(layer, dict) and layer.get("name") == column.layer_name:
            keys = ((layer.get("raw_maps") or {}).get("keys") or {}).get(str(column.map_class)) or {}
            key = keys.get("upsampled") if isinstance(keys, dict) else None
            return key if key == f"upsampled_class{int(column.map_class)}" else None
    return None


def difference_unavailable_reason(*, column_a: Column, column_b: Column) -> str | None:
    """Why two columns have no difference row (a sentence), or None when they have one: they must
    explain the same video, from the same sampled frames, with maps of the same shape."""
    if not (column_a.ready and column_b.ready):
        return "Both analyses must have finished."
    if column_a.analysis.video_id != column_b.analysis.video_id:
        return "They explain different videos."
    shape_a, frames_a = _input_frames(column_a)
    shape_b, frames_b = _input_frames(column_b)
    if shape_a != shape_b or not shape_a:
        return "Their maps have different sizes (different model inputs)."
    if frames_a != frames_b:
        return "They were computed on different frames of the video (other preprocessing)."
    if _raw_maps_path(column_a) is None or _raw_maps_path(column_b) is None:
        return "The raw maps of a layer are missing."
    if _map_key(column_a) is None or _map_key(column_b) is None:
        return "The map of the chosen class is not among the layer's raw maps."
    return None


# --------------------------------------------------------------------------- difference: requests
def _enqueue_now(difference_id: int) -> bool:
    task_id = task_enqueue(
        function=DIFFERENCE_TASK,
        argument=difference_id,
        task_name=f"difference-{difference_id}",
        group="differences",
    )
    if task_id is None:
        return False
    ComparisonDifference.objects.filter(pk=difference_id).update(task_id=task_id)
    return True


def _enqueue_on_commit(difference_id: int) -> None:
    transaction.on_commit(lambda: _enqueue_now(difference_id))


def difference_request(*, user: Any, column_a: Column, column_b: Column) -> ComparisonDifference:
    """The difference of two authorised columns: the stored one, or a new queued job. A failed
    one is queued again (its failure may have been a busy server)."""
    reason = difference_unavailable_reason(column_a=column_a, column_b=column_b)
    if reason is not None:
        raise ComparisonError(f"No difference for these columns: {reason}")
    pair = {
        "analysis_a": column_a.analysis,
        "layer_a": column_a.layer_name,
        "class_a": column_a.map_class,
        "analysis_b": column_b.analysis,
        "layer_b": column_b.layer_name,
        "class_b": column_b.map_class,
    }
    with transaction.atomic():
        difference = ComparisonDifference.objects.select_for_update().filter(**pair).first()
        if difference is None:
            try:
                with transaction.atomic():
                    difference = ComparisonDifference.objects.create(requested_by=user, **pair)
            except IntegrityError:  # a concurrent request created it
                return ComparisonDifference.objects.get(**pair)
            _enqueue_on_commit(difference.pk)
            return difference
        if difference.status == DifferenceStatus.FAILED:
            ComparisonDifference.objects.filter(pk=difference.pk, status=DifferenceStatus.FAILED).update(
                status=DifferenceStatus.QUEUED, message="", attempts=0, progress=0.0, lease=""
            )
            _enqueue_on_commit(difference.pk)
            difference.refresh_from_db()
    return difference


# --------------------------------------------------------------------------- difference: the job
def difference_folder(difference: ComparisonDifference) -> str:
    """Its storage name (relative to MEDIA_ROOT, and the bucket's key prefix)."""
    return f"{DIFFERENCE_FOLDER}/{difference.code.hex}"


def _claim(difference_id: int) -> str | None:
    lease = current_worker_lease()
    won = ComparisonDifference.objects.filter(
        pk=difference_id, status=DifferenceStatus.QUEUED, lease=""
    ).update(
        status=DifferenceStatus.RUNNING,
        lease=lease,
        started_at=timezone.now(),
        progress=0.1,
        attempts=F("attempts") + 1,
    )
    return lease if won else None


def _end(difference: ComparisonDifference, *, lease: str, **fields: Any) -> bool:
    return bool(
        ComparisonDifference.objects.filter(
            pk=difference.pk, status=DifferenceStatus.RUNNING, lease=lease
        ).update(lease="", finished_at=timezone.now(), **fields)
    )


def _checked_result(raw: dict[str, Any], *, folder: Path) -> dict[str, Any]:
    """Only what the page needs, typed and bounded: the child's output is not trusted, and each
    file it names must be a clean name of a regular file in its folder."""
    frames = [str(name) for name in list(raw.get("frames") or [])[:4096]]
    for name in [*frames, str(raw.get("legend") or "")]:
        if clean_result_name(name) is None or not name.endswith(".png"):
            raise ValueError(f"unexpected file name {name!r}")
        resolve_result_path(results_dir=str(folder.relative_to(Path(settings.MEDIA_ROOT))), name=name)
    return {
        "shape": [int(side) for side in list(raw.get("shape") or [])[:3]],
        "frames": frames,
        "legend": str(raw["legend"]),
        "mean_abs_per_frame": [float(value) for value in list(raw.get("mean_abs_per_frame") or [])[:4096]],
        "max_abs_per_frame": [float(value) for value in list(raw.get("max_abs_per_frame") or [])[:4096]],
        "mean_abs": float(raw.get("mean_abs") or 0.0),
        "max_abs": float(raw.get("max_abs") or 0.0),
    }


def _published_maps(column: Column) -> Path:
    """This machine's copy of a column's published raw maps: on the local disk the file itself
    (checked like the file view does); from the object store a download into the cache (the
    analysis may have run on another machine). MediaMissing (an OSError) when it is not stored."""
    name = _raw_maps_path(column) or ""
    results_dir = column.analysis.results_dir
    if not storage.store_is_remote():
        return resolve_result_path(results_dir=results_dir, name=name)
    recorded = [
        record.get("bytes")
        for record in (column.analysis.manifest or {}).get("files") or []
        if isinstance(record, dict) and record.get("path") == name
    ]
    size = recorded[0] if recorded and isinstance(recorded[0], int) else None
    return storage.media_fetch(name=f"{results_dir}/{name}", size=size)


def _engine_inputs(difference: ComparisonDifference) -> dict[str, Any]:
    a = Column(analysis=difference.analysis_a, layer_name=difference.layer_a, class_index=difference.class_a)
    b = Column(analysis=difference.analysis_b, layer_name=difference.layer_b, class_index=difference.class_b)
    reason = difference_unavailable_reason(column_a=a, column_b=b)
    if reason is not None:
        raise ComparisonError(f"No difference for these columns: {reason}")
    paths = {side: _published_maps(column) for side, column in (("a", a), ("b", b))}
    return {
        "a_npz": paths["a"],
        "a_key": _map_key(a) or "",
        "b_npz": paths["b"],
        "b_key": _map_key(b) or "",
    }


def difference_build(*, difference_id: int) -> str:
    """The worker's job: the engine computes the difference in a sandboxed child into
    MEDIA_ROOT/differences/<code hex>/, which is uploaded to the media store before the row says
    READY (a half-uploaded difference is never shown). Returns the final status, or "skipped"."""
    lease = _claim(difference_id)
    if lease is None:
        return "skipped"
    difference = ComparisonDifference.objects.select_related("analysis_a", "analysis_b").get(pk=difference_id)
    prefix = difference_folder(difference)
    folder = storage.media_local_path(prefix)
    try:
        # Also what an earlier attempt (a worker that died) may have uploaded.
        storage.media_delete_prefix(prefix=prefix)
        inputs = _engine_inputs(difference)
        raw = engine_client.difference_maps(
            **inputs,
            out_dir=folder,
            label_a="column A",
            label_b="the other column",
            timeout_seconds=difference_timeout_seconds(),
        )
        result = _checked_result(raw, folder=folder)
        storage.media_publish_tree(prefix=prefix)
    except (engine_client.EngineError, ComparisonError) as exc:
        return _build_failed(difference, lease=lease, message=exc.message)
    except Exception as exc:  # noqa: BLE001 - untrusted output, inputs gone, or not uploaded: fail the row, say so
        logger.error(
            "difference %s: unusable engine output or inputs, or not uploaded: %s", difference_id, exc
        )
        return _build_failed(
            difference, lease=lease, message="The difference could not be computed from these results."
        )
    if _end(
        difference,
        lease=lease,
        status=DifferenceStatus.READY,
        progress=1.0,
        message="",
        result=result,
        results_dir=prefix,
    ):
        # The store holds it now; web servers serve it from there.
        storage.media_drop_local_copy(names=[prefix])
        return DifferenceStatus.READY
    _remove_folder(prefix)
    return "gone"


def _build_failed(difference: ComparisonDifference, *, lease: str, message: str) -> str:
    _remove_folder(difference_folder(difference))
    _end(difference, lease=lease, status=DifferenceStatus.FAILED, message=message, progress=1.0)
    return DifferenceStatus.FAILED


def _remove_folder(prefix: str) -> None:
    """Remove an unpublished difference folder and its objects (a failure is logged: the sweep
    and the next attempt remove it too)."""
    try:
        storage.media_delete_prefix(prefix=prefix)
    except Exception:  # noqa: BLE001 - cleanup of a folder no row names
        logger.exception("could not remove the unpublished difference %s", prefix)


def difference_prefixes_of(*, analysis_id: int) -> list[str]:
    """The folders of every difference computed from the analysis `analysis_id`: their rows go
    with it (cascade), so whoever deletes it removes these too."""
    rows = ComparisonDifference.objects.filter(Q(analysis_a_id=analysis_id) | Q(analysis_b_id=analysis_id))
    return [f"{DIFFERENCE_FOLDER}/{code.hex}" for code in rows.values_list("code", flat=True)]


def differences_delete_folders(*, prefixes: list[str]) -> None:
    """Remove difference folders (objects and local copies) whose rows were deleted."""
    for prefix in prefixes:
        _remove_folder(prefix)


# --------------------------------------------------------------------------- difference: reaping
def _running_is_dead(row: ComparisonDifference, *, now: datetime) -> bool:
    limit = difference_timeout_seconds() + _CLAIM_MARGIN_SECONDS
    too_old = row.started_at is None or row.started_at < now - timedelta(seconds=limit)
    return too_old or worker_lease_is_dead(row.lease)


def differences_reap(*, now: datetime | None = None) -> dict[str, int]:
    """Retry (or fail) jobs whose worker died; re-enqueue queued jobs whose task was lost."""
    now = now or timezone.now()
    counts = {"requeued": 0, "failed": 0, "enqueued_again": 0}
    for row in ComparisonDifference.objects.filter(status=DifferenceStatus.RUNNING).only(
        "pk", "lease", "started_at", "attempts", "max_attempts"
    ):
        if not _running_is_dead(row, now=now):
            continue
        guard = ComparisonDifference.objects.filter(
            pk=row.pk, status=DifferenceStatus.RUNNING, lease=row.lease
        )
        if row.attempts < row.max_attempts:
            with transaction.atomic():
                if guard.update(status=DifferenceStatus.QUEUED, lease="", started_at=None):
                    _enqueue_on_commit(row.pk)
                    counts["requeued"] += 1
        elif guard.update(
            status=DifferenceStatus.FAILED,
            lease="",
            finished_at=now,
            message=f"The worker stopped {row.attempts} times while computing this difference; reload to try again.",
        ):
            counts["failed"] += 1
    lost_before = now - timedelta(seconds=settings.GRADCAM_HEARTBEAT_STALE_SECONDS)
    queued = ComparisonDifference.objects.filter(status=DifferenceStatus.QUEUED, created_at__lt=lost_before)
    if queued.exists():
        pending = pending_broker_tasks()
        for row in queued.only("pk", "task_id"):
            if not task_is_pending(task_id=row.task_id, task_name=f"difference-{row.pk}", pending=pending):
                if _enqueue_now(row.pk):
                    counts["enqueued_again"] += 1
    counts["folders_removed"] = _sweep_folders(now=now)
    return counts


def _sweep_folders(*, now: datetime) -> int:
    """Remove difference folders whose row is gone (an analysis was deleted) or never finished."""
    root = Path(settings.MEDIA_ROOT) / DIFFERENCE_FOLDER
    if not root.is_dir():
        return 0
    live = {code.hex for code in ComparisonDifference.objects.values_list("code", flat=True)}
    young = (now - timedelta(seconds=difference_timeout_seconds() + _CLAIM_MARGIN_SECONDS)).timestamp()
    removed = 0
    for folder in (path for path in root.iterdir() if path.is_dir() and not path.is_symlink()):
        if folder.name not in live and folder.stat().st_mtime < young:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed
