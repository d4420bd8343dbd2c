"""The run state of an analysis, in one place: every change of an `Analysis` row's status.

queued -> running -> succeeded / failed / cancelled, and back to queued when a run's worker
died while attempts remain. Every change is a compare-and-set (`filter(pk=, status=expected,
...).update(...)`): of two processes racing to move a row out of the same state exactly one
wins, so a re-delivered task, a cancel and the reaper can never both act on the same run.

A worker's writes are also conditional on the row still being ITS attempt (`Attempt`: the
row's `worker_lease` and `attempts`): a worker whose run was reaped and handed to another
attempt while it was in fact still alive can no longer heartbeat, fail, cancel or finish it.

The django-q2 task (`analyses.tasks.run_analysis_task`, named by its dotted path) is enqueued on
`transaction.on_commit`, so a worker never looks for a row that is not committed yet.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import BooleanField, Case, F, QuerySet, Value, When
from django.utils import timezone

from analyses.runs.models import Analysis, AnalysisStatus
from analyses.worker.leases import current_worker_lease, worker_lease_is_dead
from analyses.worker.queue import pending_broker_tasks, task_enqueue, task_is_pending

logger = logging.getLogger(__name__)

TASK_FUNCTION = "analyses.tasks.run_analysis_task"
CANCELLED_MESSAGE = "Cancelled by the user."


@dataclass(frozen=True)
class Attempt:
    """One attempt at running an analysis: the row is ours only while it still names this attempt."""

    analysis_id: int
    lease: str
    number: int

    @property
    def where(self) -> dict[str, Any]:
        return {"worker_lease": self.lease, "attempts": self.number}

    def running_rows(self) -> QuerySet[Analysis]:
        return Analysis.objects.filter(pk=self.analysis_id, status=AnalysisStatus.RUNNING, **self.where)


def analysis_transition(
    *, analysis_id: int, from_status: str, to_status: str, where: dict[str, Any] | None = None, **fields: Any
) -> bool:
    """Compare-and-set the status; returns whether this caller won.

    `where` adds conditions to the compare (a worker passes its `worker_lease` and `attempts`, so
    it can only move the row while the row is still its own attempt); `fields` are written.
    """
    return bool(
        Analysis.objects.filter(pk=analysis_id, status=from_status, **(where or {})).update(
            status=to_status, **fields
        )
    )


# --------------------------------------------------------------------------- queue
def analysis_task_name(*, analysis_id: int) -> str:
    return f"analysis-{analysis_id}"


def _enqueue(analysis_id: int) -> bool:
    """Queue the task (called on commit). A broker failure is logged and leaves the row queued:
    the reaper queues it again later (`analysis_reap_stale`)."""
    task_id = task_enqueue(
        function=TASK_FUNCTION,
        argument=analysis_id,
        task_name=analysis_task_name(analysis_id=analysis_id),
        group="analyses",
    )
    if task_id is None:
        return False
    Analysis.objects.filter(pk=analysis_id).update(task_id=task_id)
    return True


def analysis_enqueue_on_commit(*, analysis_id: int) -> None:
    """Queue the run of a queued row once the current transaction commits."""
    transaction.on_commit(lambda: _enqueue(analysis_id))


# --------------------------------------------------------------------------- the worker's attempt
def analysis_claim(*, analysis_id: int) -> Attempt | None:
    """queued -> running for this worker process, the attempt counter incremented before any
    heavy work; None when the row is not queued (cancelled, taken by another worker, gone)."""
    now = timezone.now()
    lease = current_worker_lease()
    won = Analysis.objects.filter(
        pk=analysis_id, status=AnalysisStatus.QUEUED, cancel_requested=False
    ).update(
        status=AnalysisStatus.RUNNING,
        attempts=F("attempts") + 1,
        started_at=now,
        heartbeat_at=now,
        finished_at=None,
        stage="starting the engine",
        progress=0.0,
        worker_lease=lease,
        error_message="",
    )
    if not won:
        return None
    # This process runs one task at a time, so a running row with its lease is the one just claimed.
    number = (
        Analysis.objects.filter(pk=analysis_id, status=AnalysisStatus.RUNNING, worker_lease=lease)
        .values_list("attempts", flat=True)
        .first()
    )
    return None if number is None else Attempt(analysis_id=analysis_id, lease=lease, number=number)


def analysis_heartbeat(*, attempt: Attempt, fields: dict[str, Any]) -> bool:
    """Save progress (`fields`) and the heartbeat while the row is still this attempt's running,
    not cancel-requested row; False means the run was cancelled or taken away."""
    return bool(
        attempt.running_rows().filter(cancel_requested=False).update(heartbeat_at=timezone.now(), **fields)
    )


def analysis_fail(*, attempt: Attempt, message: str, stage: str = "failed") -> bool:
    return analysis_transition(
        analysis_id=attempt.analysis_id,
        from_status=AnalysisStatus.RUNNING,
        to_status=AnalysisStatus.FAILED,
        where=attempt.where,
        finished_at=timezone.now(),
        stage=stage,
        error_message=message,
    )


def analysis_finish_cancelled(*, attempt: Attempt) -> bool:
    """running -> cancelled, when a cancel was requested of this attempt."""
    return analysis_transition(
        analysis_id=attempt.analysis_id,
        from_status=AnalysisStatus.RUNNING,
        to_status=AnalysisStatus.CANCELLED,
        where={**attempt.where, "cancel_requested": True},
        finished_at=timezone.now(),
        stage="cancelled",
        error_message=CANCELLED_MESSAGE,
    )


def prediction_confidence(*, predictions: Any, predicted_class: Any) -> float | None:
    """The predicted class's probability from a `predictions` record, or None when it has none."""
    if not isinstance(predictions, dict) or not isinstance(predicted_class, int) or predicted_class < 0:
        return None
    probabilities = predictions.get("probabilities")
    if not isinstance(probabilities, list) or predicted_class >= len(probabilities):
        return None
    value = probabilities[predicted_class]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _is_correct(predicted_class: Any) -> Any:
    """is_correct as an SQL expression over the row's own expected class (fixed at creation)."""
    if not isinstance(predicted_class, int):
        return Value(None, output_field=BooleanField())
    return Case(
        When(expected_class__isnull=True, then=Value(None)),
        When(expected_class=predicted_class, then=Value(True)),
        default=Value(False),
        output_field=BooleanField(),
    )


def analysis_publish(*, attempt: Attempt, results_dir: str, fields: dict[str, Any]) -> bool:
    """running -> succeeded with the results, unless cancelled or no longer this attempt's.

    Also writes the columns the history filters and sorts on: `confidence` and `is_correct`."""
    now = timezone.now()
    predicted = fields.get("predicted_class")
    fields = {
        **fields,
        "confidence": prediction_confidence(predictions=fields.get("predictions"), predicted_class=predicted),
        "is_correct": _is_correct(predicted),
    }
    return analysis_transition(
        analysis_id=attempt.analysis_id,
        from_status=AnalysisStatus.RUNNING,
        to_status=AnalysisStatus.SUCCEEDED,
        where={**attempt.where, "cancel_requested": False},
        finished_at=now,
        heartbeat_at=now,
        stage="done",
        progress=1.0,
        results_dir=results_dir,
        error_message="",
        **fields,
    )


def analysis_is_published(*, analysis_id: int, results_dir: str) -> bool:
    return Analysis.objects.filter(
        pk=analysis_id, status=AnalysisStatus.SUCCEEDED, results_dir=results_dir
    ).exists()


def analysis_status_now(*, analysis_id: int) -> str:
    status = Analysis.objects.filter(pk=analysis_id).values_list("status", flat=True).first()
    return str(status or "deleted")


# --------------------------------------------------------------------------- the user's requests
def analysis_cancel_request(*, analysis_id: int) -> str:
    """Queued: cancelled now ("queued"). Running: flagged; the worker kills the engine and
    marks it cancelled ("running"). Otherwise nothing changes ("")."""
    if analysis_transition(
        analysis_id=analysis_id,
        from_status=AnalysisStatus.QUEUED,
        to_status=AnalysisStatus.CANCELLED,
        cancel_requested=True,
        finished_at=timezone.now(),
        stage="cancelled",
        error_message=CANCELLED_MESSAGE,
    ):
        return "queued"
    if Analysis.objects.filter(pk=analysis_id, status=AnalysisStatus.RUNNING).update(cancel_requested=True):
        return "running"
    return ""


def analysis_withdraw_queued(*, analysis_id: int) -> bool:
    """queued -> cancelled before a delete, so no worker starts the run being deleted."""
    return analysis_transition(
        analysis_id=analysis_id,
        from_status=AnalysisStatus.QUEUED,
        to_status=AnalysisStatus.CANCELLED,
        cancel_requested=True,
        finished_at=timezone.now(),
    )


# --------------------------------------------------------------------------- the reaper
def _reap_running(analysis: Analysis, *, now: datetime) -> str:
    """Finish cancelling, re-queue or fail one running row whose worker died; which one it was
    ("cancelled", "requeued", "failed"), or "" when another process changed the row first."""
    # The compare-and-set also checks the heartbeat did not move since we read it.
    still_dead = Analysis.objects.filter(
        pk=analysis.pk, status=AnalysisStatus.RUNNING, heartbeat_at=analysis.heartbeat_at
    )
    if analysis.cancel_requested:
        won = still_dead.update(
            status=AnalysisStatus.CANCELLED,
            finished_at=now,
            stage="cancelled",
            error_message=CANCELLED_MESSAGE,
        )
        return "cancelled" if won else ""
    if analysis.attempts < analysis.max_attempts:
        with transaction.atomic():
            won = still_dead.update(
                status=AnalysisStatus.QUEUED,
                stage="queued again: the worker running it stopped",
                progress=0.0,
                worker_lease="",
                heartbeat_at=None,
            )
            if won:
                analysis_enqueue_on_commit(analysis_id=analysis.pk)
        return "requeued" if won else ""
    won = still_dead.update(
        status=AnalysisStatus.FAILED,
        finished_at=now,
        stage="failed",
        error_message=(
            f"The worker running this analysis stopped responding (attempt {analysis.attempts} of "
            f"{analysis.max_attempts}), so it was stopped. Re-run it to try again."
        ),
    )
    return "failed" if won else ""


def _reap_lost_queued(*, now: datetime, counts: dict[str, int]) -> None:
    """Queued rows whose task is gone (enqueueing failed at commit, the ORM queue row was deleted,
    Redis lost its list or a SIGKILLed cluster its prefetched tasks): queue them again, or fail
    them in words when no attempt is left."""
    lost_before = now - timedelta(seconds=settings.GRADCAM_HEARTBEAT_STALE_SECONDS)
    candidates = list(
        Analysis.objects.filter(
            status=AnalysisStatus.QUEUED, cancel_requested=False, created_at__lt=lost_before
        )
        .exclude(started_at__gte=lost_before)
        .only("pk", "task_id", "attempts", "max_attempts")
    )
    if not candidates:
        return
    pending = pending_broker_tasks()
    for analysis in candidates:
        task_name = analysis_task_name(analysis_id=analysis.pk)
        if task_is_pending(task_id=analysis.task_id, task_name=task_name, pending=pending):
            continue
        if analysis.attempts >= analysis.max_attempts:
            won = Analysis.objects.filter(
                pk=analysis.pk, status=AnalysisStatus.QUEUED, cancel_requested=False
            ).update(
                status=AnalysisStatus.FAILED,
                finished_at=now,
                stage="failed",
                error_message=(
                    f"This analysis was queued but never started: its task was lost after attempt "
                    f"{analysis.attempts} of {analysis.max_attempts}. Re-run it to try again."
                ),
            )
            counts["failed"] += won
        elif _enqueue(analysis.pk):
            logger.warning("analysis %s was queued without a pending task: queued again", analysis.pk)
            counts["enqueued_again"] += 1


def analysis_reap_stale(*, now: datetime | None = None) -> dict[str, int]:
    """Fail, re-queue or finish cancelling runs whose worker died; re-enqueue lost queued rows.

    A running row is dead when its heartbeat is older than GRADCAM_HEARTBEAT_STALE_SECONDS or
    its worker process (same host) is gone. While attempts remain it goes back to the queue,
    otherwise it fails with a message saying what happened. A queued row older than that with
    no pending django-q2 task is enqueued again (a duplicate task is harmless: the queued ->
    running compare-and-set lets only one run it). With the Redis broker "pending" means in the
    Redis list or enqueued within the grace, because a task a busy live cluster has prefetched is
    in neither the list nor started: such a row gets at most one more copy per grace period
    (`analyses.worker.queue._remember_redis_enqueue`). When the broker cannot be listed (Redis
    down) nothing is re-enqueued this run and the rows stay queued for the next one.
    """
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=settings.GRADCAM_HEARTBEAT_STALE_SECONDS)
    counts = {"requeued": 0, "failed": 0, "cancelled": 0, "enqueued_again": 0}
    running = Analysis.objects.filter(status=AnalysisStatus.RUNNING)
    for analysis in running.only(
        "pk", "heartbeat_at", "started_at", "worker_lease", "attempts", "max_attempts", "cancel_requested"
    ):
        last_sign_of_life = analysis.heartbeat_at or analysis.started_at
        stale = last_sign_of_life is None or last_sign_of_life < stale_before
        if not stale and not (analysis.worker_lease and worker_lease_is_dead(analysis.worker_lease)):
            continue
        outcome = _reap_running(analysis, now=now)
        if outcome:
            counts[outcome] += 1
            logger.warning("reaped analysis %s (heartbeat %s)", analysis.pk, analysis.heartbeat_at)
    _reap_lost_queued(now=now, counts=counts)
    return counts
