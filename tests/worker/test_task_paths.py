"""django-q2 stores each task's dotted function path in the queued row and in the reaper's
Schedule: every path the code enqueues must name a function, and keep naming it across
releases (a task queued before an upgrade runs after it)."""

from __future__ import annotations

import pydoc


def test_every_enqueued_task_path_names_a_function() -> None:
    from analyses.library.processing import JOB_KINDS
    from analyses.reaper import REAPER_FUNCTION
    from analyses.runs.state import TASK_FUNCTION
    from analyses.runs.verification import TASK_FUNCTION as VERIFY_FUNCTION

    paths = {TASK_FUNCTION, VERIFY_FUNCTION, REAPER_FUNCTION, *(kind.task for kind in JOB_KINDS.values())}
    assert paths == {
        "analyses.tasks.run_analysis_task",
        "analyses.tasks.reap_stale_analyses_task",
        "analyses.tasks.process_classifier_task",
        "analyses.tasks.process_video_task",
        "analyses.tasks.build_preview_task",
        "analyses.tasks.verify_analysis_task",
    }
    for path in paths:
        assert callable(pydoc.locate(path)), path
