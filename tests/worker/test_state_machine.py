"""The Analysis state machine, the services that drive it, and the reaper (no cluster needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from tests.worker.conftest import PLACEHOLDER_LAYERS, REPO

LAYERS = PLACEHOLDER_LAYERS


def _create(owner: Any, classifier: Any, video: Any, **overrides: Any) -> Any:
    from analyses.runs.services import analysis_create

    arguments = {
        "user": owner,
        "classifier": classifier,
        "video": video,
        "expected_class": None,
        "params": {},
    }
    return analysis_create(**{**arguments, **overrides})


def test_importing_every_app_module_never_imports_tensorflow() -> None:
    script = (
        "import os, sys, pkgutil, importlib, django\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'gradcam_site.settings')\n"
        "django.setup()\n"
        "names = []\n"
        "for package in ('accounts', 'analyses', 'gradcam_site'):\n"
        "    module = importlib.import_module(package)\n"
        "    names += [info.name for info in pkgutil.walk_packages(module.__path__, package + '.')]\n"
        "for name in names:\n"
        "    if name.endswith('.wsgi') or name.endswith('.asgi'): continue\n"
        "    importlib.import_module(name)\n"
        "assert 'analyses.tasks' in sys.modules and 'analyses.worker.runner' in sys.modules\n"
        "print(len(names), 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    environment = {**os.environ, "GRADCAM_ALLOW_DEV_SECRET": "1"}
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=environment, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    count, tensorflow_loaded, keras_loaded = completed.stdout.split()
    assert int(count) >= 10
    assert (tensorflow_loaded, keras_loaded) == ("False", "False")


@pytest.mark.django_db
def test_a_second_transition_from_the_same_state_loses(owner: Any, classifier: Any, video: Any) -> None:
    from analyses.runs.state import analysis_transition

    analysis = _create(owner, classifier, video)
    assert analysis_transition(analysis_id=analysis.pk, from_status="queued", to_status="running")
    assert not analysis_transition(analysis_id=analysis.pk, from_status="queued", to_status="running")
    assert not analysis_transition(analysis_id=analysis.pk, from_status="queued", to_status="cancelled")
    analysis.refresh_from_db()
    assert analysis.status == "running"


@pytest.mark.django_db
def test_run_task_skips_an_analysis_that_is_not_queued(owner: Any, classifier: Any, video: Any) -> None:
    from analyses.runs.services import analysis_cancel
    from analyses.tasks import run_analysis_task

    analysis = _create(owner, classifier, video)
    analysis_cancel(user=owner, analysis=analysis)
    assert run_analysis_task(analysis.pk) == "skipped"
    analysis.refresh_from_db()
    assert (analysis.status, analysis.attempts) == ("cancelled", 0)


@pytest.mark.django_db
def test_create_stores_normalised_defaults_audits_and_enqueues_on_commit(
    owner: Any, classifier: Any, video: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from django_q.models import OrmQ

    from audit.models import AuditEvent

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        analysis = _create(
            owner, classifier, video, expected_class="2", params={"layers": [LAYERS[1]], "alpha": "0.5"}
        )
        assert OrmQ.objects.count() == 0  # nothing is queued before the row is committed
    assert len(callbacks) == 1
    analysis.refresh_from_db()
    assert analysis.status == "queued" and analysis.expected_class == 2 and analysis.task_id
    assert OrmQ.objects.count() == 1
    assert analysis.params["layers"] == [LAYERS[1]]
    assert analysis.params["alpha"] == 0.5
    assert analysis.params["method"] == "gradcam" and analysis.params["bbox_threshold"] is None
    assert analysis.params["preprocess"]["frame_stride"] == 2
    assert AuditEvent.objects.filter(action="analysis.created", target_code=analysis.code).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"expected_class": 4}, "out of range: this model has 4 classes"),
        ({"expected_class": "cat"}, "must be a class number"),
        ({"params": {"layers": ["nope"]}}, "no Conv3D layer named nope"),
        ({"params": {"method": "magic"}}, "not a valid method"),
        ({"params": {"alpha": 3}}, "alpha must be between 0 and 1"),
        ({"params": {"colormap": "rainbow"}}, "not a valid colormap"),
        ({"params": {"preprocess": {"resize_mode": "zoom"}}}, "not a valid resize mode"),
        ({"params": {"bogus": 1}}, "Unknown analysis parameter"),
    ],
)
def test_create_refuses_bad_input_in_words(
    owner: Any, classifier: Any, video: Any, overrides: dict, words: str
) -> None:
    from analyses.models import Analysis
    from analyses.runs.params import AnalysisError

    with pytest.raises(AnalysisError, match=words):
        _create(owner, classifier, video, **overrides)
    assert Analysis.objects.count() == 0


@pytest.mark.django_db
def test_a_stranger_cannot_analyse_someone_elses_model(stranger: Any, classifier: Any, video: Any) -> None:
    from analyses.runs.params import AnalysisError

    with pytest.raises(AnalysisError, match="not available to you"):
        _create(stranger, classifier, video)


@pytest.mark.django_db
def test_rerun_links_to_the_original_and_changes_only_what_was_asked(
    owner: Any, classifier: Any, video: Any
) -> None:
    from analyses.runs.services import analysis_rerun

    original = _create(owner, classifier, video, expected_class=1, params={"colormap": "turbo"})
    rerun = analysis_rerun(user=owner, analysis=original, params_changes={"method": "gradcam++"})
    assert rerun.parent_id == original.pk and rerun.pk != original.pk
    assert rerun.params["method"] == "gradcam++" and rerun.params["colormap"] == "turbo"
    assert rerun.expected_class == 1 and rerun.status == "queued"


@pytest.mark.django_db
def test_cancel_queued_is_immediate_running_is_flagged_and_finished_is_refused(
    owner: Any, stranger: Any, classifier: Any, video: Any
) -> None:
    from analyses.runs.params import AnalysisError
    from analyses.runs.services import analysis_cancel
    from analyses.runs.state import analysis_transition

    queued = _create(owner, classifier, video)
    assert analysis_cancel(user=owner, analysis=queued).status == "cancelled"
    with pytest.raises(AnalysisError, match="already cancelled"):
        analysis_cancel(user=owner, analysis=queued)

    running = _create(owner, classifier, video)
    analysis_transition(analysis_id=running.pk, from_status="queued", to_status="running")
    with pytest.raises(AnalysisError):
        analysis_cancel(user=stranger, analysis=running)
    flagged = analysis_cancel(user=owner, analysis=running)
    assert (flagged.status, flagged.cancel_requested) == ("running", True)


@pytest.mark.django_db
def test_reaper_requeues_while_attempts_remain_then_fails_with_a_clear_message(
    owner: Any, classifier: Any, video: Any, settings: Any
) -> None:
    from analyses.models import Analysis
    from analyses.runs.state import analysis_reap_stale
    from analyses.worker.leases import current_worker_lease

    settings.GRADCAM_HEARTBEAT_STALE_SECONDS = 60
    old = timezone.now() - timedelta(seconds=61)
    stale = _create(owner, classifier, video)
    Analysis.objects.filter(pk=stale.pk).update(
        status="running", attempts=1, max_attempts=2, heartbeat_at=old
    )
    last_try = _create(owner, classifier, video)
    Analysis.objects.filter(pk=last_try.pk).update(
        status="running", attempts=2, max_attempts=2, heartbeat_at=old
    )
    alive = _create(owner, classifier, video)
    Analysis.objects.filter(pk=alive.pk).update(
        status="running", attempts=1, heartbeat_at=timezone.now(), worker_lease=current_worker_lease()
    )

    counts = analysis_reap_stale()
    assert (counts["requeued"], counts["failed"], counts["cancelled"]) == (1, 1, 0)
    for row in (stale, last_try, alive):
        row.refresh_from_db()
    assert stale.status == "queued"
    assert last_try.status == "failed" and "stopped responding" in last_try.error_message
    assert alive.status == "running"


@pytest.mark.django_db
def test_reaper_acts_at_once_when_the_workers_process_is_gone(
    owner: Any, classifier: Any, video: Any
) -> None:
    from analyses.models import Analysis
    from analyses.runs.state import analysis_reap_stale
    from analyses.worker.leases import current_worker_lease

    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    host = current_worker_lease().split(":")[0]
    dead_lease = f"{host}:{int(finished.stdout)}:1"
    orphan = _create(owner, classifier, video)
    Analysis.objects.filter(pk=orphan.pk).update(
        status="running", attempts=2, max_attempts=2, heartbeat_at=timezone.now(), worker_lease=dead_lease
    )
    assert analysis_reap_stale()["failed"] == 1
    orphan.refresh_from_db()
    assert orphan.status == "failed"


def test_process_tree_memory_is_measured_from_proc() -> None:
    from analyses.worker.runner import process_tree_rss_mb

    assert process_tree_rss_mb(os.getpid()) > 10
    assert process_tree_rss_mb(2**22 + 12345) == 0
