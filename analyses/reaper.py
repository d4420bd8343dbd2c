"""The reaper: everything done every minute (and by each worker as it starts) to recover from
workers that died and tasks the broker lost. It sits above the contexts and calls each one.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from analyses.compare.services import differences_reap
from analyses.library.processing import processing_reap
from analyses.runs.execution import worker_cache_trim
from analyses.runs.previews import previews_sweep
from analyses.runs.state import analysis_reap_stale
from analyses.runs.verification import verifications_reap
from analyses.worker import runner, sandbox

logger = logging.getLogger(__name__)

REAPER_FUNCTION = "analyses.tasks.reap_stale_analyses_task"
REAPER_SCHEDULE_NAME = "gradcam: reap stale analyses"


def reap_everything() -> dict[str, int]:
    """Runs and verifications whose worker died, lost tasks, upload and preview jobs, stale folders."""
    counts = analysis_reap_stale()
    counts["work_folders_removed"] = runner.work_folders_sweep()
    for key, value in processing_reap().items():
        counts[f"uploads_{key}"] = value
    counts["preview_folders_removed"] = previews_sweep()
    for key, value in differences_reap().items():
        counts[f"differences_{key}"] = value
    for key, value in verifications_reap().items():
        counts[f"verifications_{key}"] = value
    return counts


def reaper_schedule_ensure() -> None:
    """One django-q2 Schedule running the reaper every minute (idempotent, duplicates removed)."""
    from django_q.models import Schedule

    schedules = Schedule.objects.filter(name=REAPER_SCHEDULE_NAME).order_by("pk")
    first = schedules.first()
    if first is None:
        Schedule.objects.create(
            name=REAPER_SCHEDULE_NAME,
            func=REAPER_FUNCTION,
            schedule_type=Schedule.MINUTES,
            minutes=1,
            repeats=-1,
        )
        first = schedules.first()
    if first is not None:
        # Two workers starting together may both have created one.
        Schedule.objects.filter(name=REAPER_SCHEDULE_NAME).exclude(pk=first.pk).delete()


def connect_worker_signals() -> None:
    """Schedule the reaper, reap dead runs and start a spare engine as each django-q2 worker starts.

    Call from `AnalysesConfig.ready()`; the receivers only act inside qcluster worker processes.
    """
    from django_q.signals import post_spawn

    post_spawn.connect(_on_worker_spawn, dispatch_uid="analyses.reaper.worker_spawn")


def _on_worker_spawn(sender: Any = None, proc_name: str = "", **kwargs: Any) -> None:
    try:
        sandbox.require_working_sandbox()
    except ImproperlyConfigured as problem:
        # The worker still runs so that the reaper keeps runs honest, but every engine child it
        # starts fails with this message (the sandbox refuses to start it): say why, loudly.
        logger.critical("engine children cannot start in this worker: %s", problem)
    try:
        reaper_schedule_ensure()
        reap_everything()
    except Exception:  # noqa: BLE001 - a worker must start even if the database is unavailable now
        logger.exception("reaping stale analyses at worker start failed")
    # A worker machine's cache of the object store (inputs, results) may have grown past
    # MEDIA_CACHE_MB while no worker ran; a no-op on one machine.
    worker_cache_trim()
    runner.start_spare()
