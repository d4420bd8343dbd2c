"""One entry point for everything the reaper does every minute (and each worker at start-up)."""
from __future__ import annotations

from analyses.services.analysis import analysis_reap_stale
from analyses.services.preview import previews_sweep
from analyses.services.processing import processing_reap


def reap_everything() -> dict[str, int]:
    """Runs whose worker died, lost tasks, upload and preview jobs, stale folders."""
    counts = analysis_reap_stale()
    for key, value in processing_reap().items():
        counts[f"uploads_{key}"] = value
    counts["preview_folders_removed"] = previews_sweep()
    return counts
