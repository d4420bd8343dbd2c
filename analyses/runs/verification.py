"""Verifying a past analysis: the request (bounded), the run state of a `Verification` row, its
reads, and its reaper. The worker's part (re-run and comparison) is `analyses.runs.verifying`.

Anyone who may see an analysis may verify it: a verification changes nothing in the analysis
(its re-run goes into a scratch folder that is deleted afterwards). It still costs a worker a
full engine run, so it is bounded: one active verification per analysis (a database constraint,
so two racing requests cannot both pass) and VERIFICATIONS_ACTIVE_PER_USER per user.

Every change of a row's status is a compare-and-set, and a worker's writes are conditional on
the row still naming its lease, as for analyses (analyses.runs.state). A verification is never
retried: when its worker dies, the reaper fails it and the user may verify again.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from analyses.access import get_for_user
from analyses.runs.models import (
    ACTIVE_VERIFICATION_STATUSES,
    Analysis,
    AnalysisStatus,
    Verification,
    VerificationStatus,
)
from analyses.runs.selectors import analyses_visible_to
from analyses.worker.leases import current_worker_lease, worker_lease_is_dead
from analyses.worker.queue import pending_broker_tasks, task_enqueue, task_is_pending
from audit.log import audit_log

logger = logging.getLogger(__name__)

TASK_FUNCTION = "analyses.tasks.verify_analysis_task"
VERIFICATIONS_ACTIVE_PER_USER = 2
RECENT_VERIFICATIONS_SHOWN = 5
WORKER_DIED_MESSAGE = (
    "The worker running this verification stopped responding, so it was given up. "
    "Nothing was changed; verify again to retry."
)


class VerificationError(Exception):
    """A request that cannot be honoured; `message` is a sentence for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------- reads
def verifications_recent(
    *, analysis: Analysis, limit: int = RECENT_VERIFICATIONS_SHOWN
) -> list[Verification]:
    """The latest verifications of an analysis, newest first (the caller may see the analysis)."""
    return list(analysis.verifications.select_related("requested_by").order_by("-created_at")[:limit])


def verification_of_analysis(*, analysis: Analysis, code: Any) -> Verification | None:
    """The verification `code` of this analysis, or None (the caller may see the analysis)."""
    return analysis.verifications.filter(code=code).first()


def verification_get_for_user(*, code: Any, user: Any) -> Verification:
    """The verification with this code, of an analysis the user may see (404 otherwise: a
    verification is visible exactly when its analysis is)."""
    queryset = Verification.objects.select_related("analysis__classifier", "requested_by").filter(
        analysis__in=analyses_visible_to(user=user).values("pk")
    )
    return get_for_user(queryset, code=code, user=user, for_write=False)


def _active(queryset: QuerySet[Verification]) -> QuerySet[Verification]:
    return queryset.filter(status__in=ACTIVE_VERIFICATION_STATUSES)


# --------------------------------------------------------------------------- request
def verification_request(*, user: Any, analysis: Analysis) -> Verification:
    """Queue a verification of `analysis` for `user` (who may see it: the view looked it up)."""
    if analysis.status != AnalysisStatus.SUCCEEDED or not analysis.manifest or not analysis.results_dir:
        raise VerificationError("Only a finished analysis with results can be verified.")
    if _active(Verification.objects.filter(analysis=analysis)).exists():
        raise VerificationError(
            "This analysis is already being verified: wait for that verdict, it appears on this page."
        )
    active = _active(Verification.objects.filter(requested_by=user)).count()
    if active >= VERIFICATIONS_ACTIVE_PER_USER:
        raise VerificationError(
            f"You already have {active} verifications queued or running, the most allowed at once "
            f"({VERIFICATIONS_ACTIVE_PER_USER}): wait until one finishes, then try again."
        )
    try:
        with transaction.atomic():
            verification = Verification.objects.create(
                analysis=analysis, requested_by=user, status=VerificationStatus.QUEUED, stage="queued"
            )
            audit_log(
                actor=user,
                action="analysis.verify_requested",
                target=analysis,
                data={"verification": str(verification.code)},
            )
    except IntegrityError:  # another request for this analysis won the race
        raise VerificationError(
            "This analysis is already being verified: wait for that verdict, it appears on this page."
        ) from None
    verification_enqueue_on_commit(verification_id=verification.pk)
    return verification


def _task_name(verification_id: int) -> str:
    return f"verification-{verification_id}"


def _enqueue(verification_id: int) -> bool:
    task_id = task_enqueue(
        function=TASK_FUNCTION,
        argument=verification_id,
        task_name=_task_name(verification_id),
        group="verifications",
    )
    if task_id is None:
        return False  # the reaper enqueues it again
    Verification.objects.filter(pk=verification_id).update(task_id=task_id)
    return True


def verification_enqueue_on_commit(*, verification_id: int) -> None:
    transaction.on_commit(lambda: _enqueue(verification_id))


# --------------------------------------------------------------------------- the worker's run state
def verification_claim(*, verification_id: int) -> str | None:
    """queued -> running for this worker process; its lease, or None when it is not queued."""
    lease = current_worker_lease()
    now = timezone.now()
    won = Verification.objects.filter(pk=verification_id, status=VerificationStatus.QUEUED).update(
        status=VerificationStatus.RUNNING,
        worker_lease=lease,
        started_at=now,
        heartbeat_at=now,
        stage="starting",
        progress=0.0,
    )
    return lease if won else None


def _running(*, verification_id: int, lease: str) -> QuerySet[Verification]:
    return Verification.objects.filter(
        pk=verification_id, status=VerificationStatus.RUNNING, worker_lease=lease
    )


def verification_heartbeat(*, verification_id: int, lease: str, fields: dict[str, Any]) -> bool:
    """Save progress (and the heartbeat); False when the row is no longer this worker's."""
    return bool(
        _running(verification_id=verification_id, lease=lease).update(heartbeat_at=timezone.now(), **fields)
    )


def verification_fail(*, verification_id: int, lease: str, message: str) -> bool:
    return bool(
        _running(verification_id=verification_id, lease=lease).update(
            status=VerificationStatus.FAILED,
            stage="failed",
            error_message=message,
            finished_at=timezone.now(),
        )
    )


def verification_finish(*, verification_id: int, lease: str, verdict: dict[str, Any]) -> bool:
    """running -> finished with its verdict, recorded in the audit trail in the same transaction."""
    with transaction.atomic():
        won = _running(verification_id=verification_id, lease=lease).update(
            status=VerificationStatus.FINISHED,
            stage="done",
            progress=1.0,
            verdict=verdict,
            finished_at=timezone.now(),
        )
        if not won:
            return False
        verification = Verification.objects.select_related("analysis", "requested_by").get(pk=verification_id)
        audit_log(
            actor=verification.requested_by,
            action="analysis.verified",
            target=verification.analysis,
            data={"verification": str(verification.code), **verdict},
        )
    return True


# --------------------------------------------------------------------------- the reaper
def verifications_reap(*, now: datetime | None = None) -> dict[str, int]:
    """Fail running verifications whose worker died; enqueue again queued ones whose task was lost."""
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=settings.GRADCAM_HEARTBEAT_STALE_SECONDS)
    counts = {"failed": 0, "enqueued_again": 0}
    running = Verification.objects.filter(status=VerificationStatus.RUNNING)
    for row in running.only("pk", "heartbeat_at", "started_at", "worker_lease"):
        last_sign_of_life = row.heartbeat_at or row.started_at
        stale = last_sign_of_life is None or last_sign_of_life < stale_before
        if not stale and not (row.worker_lease and worker_lease_is_dead(row.worker_lease)):
            continue
        won = Verification.objects.filter(
            pk=row.pk, status=VerificationStatus.RUNNING, heartbeat_at=row.heartbeat_at
        ).update(
            status=VerificationStatus.FAILED,
            stage="failed",
            error_message=WORKER_DIED_MESSAGE,
            finished_at=now,
        )
        if won:
            counts["failed"] += 1
            logger.warning("reaped verification %s (heartbeat %s)", row.pk, row.heartbeat_at)
    lost = list(
        Verification.objects.filter(status=VerificationStatus.QUEUED, created_at__lt=stale_before).only(
            "pk", "task_id"
        )
    )
    if lost:
        pending = pending_broker_tasks()
        for row in lost:
            if not task_is_pending(
                task_id=row.task_id, task_name=_task_name(row.pk), pending=pending
            ) and _enqueue(row.pk):
                logger.warning("verification %s was queued without a pending task: queued again", row.pk)
                counts["enqueued_again"] += 1
    return counts
