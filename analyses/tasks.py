"""The django-q2 tasks: take a row's id and call the context that owns the job.

Their dotted paths (`analyses.tasks.<name>`) are stored in every queued task and in the
reaper's Schedule row, so they are kept as they were when the code behind them moved into
the contexts: a task queued before an upgrade runs after it. This module sits above the
contexts (it imports them; nothing imports it): `analyses.runs.state`,
`analyses.library.processing` and `analyses.reaper` name these functions by path only.
"""

from __future__ import annotations

from analyses.compare.services import difference_build
from analyses.library import services as library_services
from analyses.reaper import reap_everything
from analyses.runs.execution import analysis_run
from analyses.runs.previews import preview_build
from analyses.runs.verifying import verification_run


def run_analysis_task(analysis_id: int) -> str:
    """Run one analysis. Returns the final status, or "skipped" when not queued."""
    return analysis_run(analysis_id=analysis_id)


def reap_stale_analyses_task() -> dict[str, int]:
    """Scheduled every minute (analyses.reaper.reaper_schedule_ensure)."""
    return reap_everything()


def process_classifier_task(classifier_id: int) -> str:
    """Inspect an uploaded model (queued by the upload)."""
    return library_services.classifier_process(classifier_id=classifier_id)


def process_video_task(video_id: int) -> str:
    """Probe and transcode an uploaded video (queued by the upload)."""
    return library_services.video_process(video_id=video_id)


def build_preview_task(preview_id: int) -> str:
    """Decode the frames of a preview (queued by the analysis form)."""
    return preview_build(preview_id=preview_id)


def build_difference_task(difference_id: int) -> str:
    """Compute a comparison's difference row (queued by the comparison page)."""
    return difference_build(difference_id=difference_id)


def verify_analysis_task(verification_id: int) -> str:
    """Re-run a past analysis into a scratch folder and compare its maps (queued by Verify)."""
    return verification_run(verification_id=verification_id)
