"""The run state of worker jobs on uploaded files: inspecting a model, probing and transcoding a
video, building a preview.

The upload request only stores the file and a row whose `status` is `processing`; a django-q2
worker parses the untrusted file later, in a sandboxed child process. Every change of state is
a compare-and-set on the row, as for analyses:
- queued: processing, no lease;
- claimed: processing, `processing_lease` names the worker process (`processing_claim`);
- done: ready (`processing_finish`) or refused (`processing_fail`), only by the lease holder.
The reaper (`processing_reap`, run with the analyses' reaper every minute) gives a job whose
worker died one more attempt, and re-enqueues a queued job whose task the broker lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from analyses.library.models import Classifier, Preview, ProcessedUpload, ProcessingStatus, Video
from analyses.worker.leases import current_worker_lease, worker_lease_is_dead
from analyses.worker.queue import pending_broker_tasks, task_enqueue, task_is_pending

logger = logging.getLogger(__name__)

MAX_PROCESSING_ATTEMPTS = 2
# A claimed job whose worker is on another machine is given up after its child's own time
# limit plus this margin (the child is killed at its limit, so the job cannot be alive then).
_CLAIM_MARGIN_SECONDS = 120


@dataclass(frozen=True)
class JobKind:
    model: type[ProcessedUpload]
    task: str  # dotted path of the django-q2 task, which takes the row's pk
    timeout_setting: str  # the setting bounding the job's child process, in seconds
    what: str  # for messages: "the model", "the video", "the preview"


JOB_KINDS: dict[type[ProcessedUpload], JobKind] = {
    Classifier: JobKind(
        Classifier, "analyses.tasks.process_classifier_task", "GRADCAM_INSPECT_TIMEOUT", "the model"
    ),
    Video: JobKind(Video, "analyses.tasks.process_video_task", "GRADCAM_TRANSCODE_TIMEOUT", "the video"),
    Preview: JobKind(
        Preview, "analyses.tasks.build_preview_task", "GRADCAM_TRANSCODE_TIMEOUT", "the preview"
    ),
}


def _task_name(obj_or_model: ProcessedUpload | type[ProcessedUpload], pk: int) -> str:
    model = obj_or_model if isinstance(obj_or_model, type) else type(obj_or_model)
    return f"{model._meta.model_name}-{pk}"


def _enqueue_now(model: type[ProcessedUpload], pk: int) -> bool:
    """Queue the job (called on commit); a broker failure leaves the row for the reaper."""
    task_id = task_enqueue(
        function=JOB_KINDS[model].task, argument=pk, task_name=_task_name(model, pk), group="uploads"
    )
    if task_id is None:
        return False
    model.objects.filter(pk=pk).update(processing_task_id=task_id)
    return True


def processing_enqueue(obj: ProcessedUpload) -> None:
    """Queue the worker job of a `processing` row once the current transaction commits."""
    model, pk = type(obj), obj.pk
    transaction.on_commit(lambda: _enqueue_now(model, pk))


def processing_claim(*, model: type[ProcessedUpload], pk: int) -> str | None:
    """Claim a queued job for this worker process; returns the lease, or None if it is not ours."""
    lease = current_worker_lease()
    won = model.objects.filter(pk=pk, status=ProcessingStatus.PROCESSING, processing_lease="").update(
        processing_lease=lease,
        processing_started_at=timezone.now(),
        processing_attempts=F("processing_attempts") + 1,
    )
    return lease if won else None


def processing_finish(*, obj: ProcessedUpload, lease: str, fields: dict[str, Any]) -> bool:
    """processing -> ready with `fields`, if the job is still ours (not deleted, not reaped)."""
    return bool(
        type(obj)
        .objects.filter(pk=obj.pk, status=ProcessingStatus.PROCESSING, processing_lease=lease)
        .update(
            status=ProcessingStatus.READY,
            status_message="",
            processing_lease="",
            processing_finished_at=timezone.now(),
            **fields,
        )
    )


def processing_fail(
    *, obj: ProcessedUpload, lease: str, message: str, fields: dict[str, Any] | None = None
) -> bool:
    """processing -> failed (refused) with a sentence for the owner, if the job is still ours."""
    return bool(
        type(obj)
        .objects.filter(pk=obj.pk, status=ProcessingStatus.PROCESSING, processing_lease=lease)
        .update(
            status=ProcessingStatus.FAILED,
            status_message=message,
            processing_lease="",
            processing_finished_at=timezone.now(),
            **(fields or {}),
        )
    )


def _claim_is_dead(row: Any, *, kind: JobKind, now: datetime) -> bool:
    limit = float(getattr(settings, kind.timeout_setting)) + _CLAIM_MARGIN_SECONDS
    too_old = row.processing_started_at is None or row.processing_started_at < now - timedelta(seconds=limit)
    return too_old or worker_lease_is_dead(row.processing_lease)


def _reap_claimed(
    kind: JobKind, *, now: datetime, on_given_up: Callable[[Any], None], counts: dict[str, int]
) -> None:
    claimed = kind.model.objects.filter(status=ProcessingStatus.PROCESSING).exclude(processing_lease="")
    for row in claimed.only("pk", "processing_lease", "processing_started_at", "processing_attempts"):
        if not _claim_is_dead(row, kind=kind, now=now):
            continue
        guard = kind.model.objects.filter(
            pk=row.pk, status=ProcessingStatus.PROCESSING, processing_lease=row.processing_lease
        )
        if row.processing_attempts < MAX_PROCESSING_ATTEMPTS:
            with transaction.atomic():
                if guard.update(processing_lease="", processing_started_at=None):
                    processing_enqueue(row)
                    counts["requeued"] += 1
            continue
        message = (
            f"The worker processing {kind.what} stopped (attempt {row.processing_attempts} of "
            f"{MAX_PROCESSING_ATTEMPTS}), so it was given up. Upload it again to retry."
        )
        if guard.update(
            status=ProcessingStatus.FAILED,
            status_message=message,
            processing_lease="",
            processing_finished_at=now,
        ):
            counts["failed"] += 1
            on_given_up(row)


def _reap_lost(kind: JobKind, *, now: datetime, pending: Any, counts: dict[str, int]) -> None:
    lost_before = now - timedelta(seconds=settings.GRADCAM_HEARTBEAT_STALE_SECONDS)
    queued = kind.model.objects.filter(
        status=ProcessingStatus.PROCESSING, processing_lease="", created_at__lt=lost_before
    ).only("pk", "processing_task_id")
    for row in queued:
        if not task_is_pending(
            task_id=row.processing_task_id, task_name=_task_name(kind.model, row.pk), pending=pending
        ):
            if _enqueue_now(kind.model, row.pk):
                logger.warning(
                    "%s %s was processing without a pending task: queued again",
                    kind.model._meta.model_name,
                    row.pk,
                )
                counts["enqueued_again"] += 1


def processing_reap(
    *, now: datetime | None = None, on_given_up: Callable[[Any], None] = lambda row: None
) -> dict[str, int]:
    """Retry or give up jobs whose worker died; re-enqueue queued jobs whose task was lost."""
    now = now or timezone.now()
    counts = {"requeued": 0, "failed": 0, "enqueued_again": 0}
    pending = None
    for kind in JOB_KINDS.values():
        _reap_claimed(kind, now=now, on_given_up=on_given_up, counts=counts)
        if kind.model.objects.filter(status=ProcessingStatus.PROCESSING, processing_lease="").exists():
            pending = pending if pending is not None else pending_broker_tasks()
            _reap_lost(kind, now=now, pending=pending, counts=counts)
    return counts
